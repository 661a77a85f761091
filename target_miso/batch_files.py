"""The records of a Singer BATCH message, read from the files its manifest names.

Taps built on singer-sdk can hand large extracts over as files (``batch_config``): a BATCH
message names the stream, the encoding and the files. Each record is handed to the sink one
at a time, exactly as a RECORD is, so mapping, validation, delivery and STATE keep the same
guarantees; a file is streamed, never loaded whole. ``s3://`` files are read with boto3 (the
``s3`` extra, configured by the standard AWS environment), other storages through the SDK's
fsspec. An encoding or a file that cannot be read ends the run with a ``BatchFileError`` (and
no STATE past the BATCH), never a skip.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import tempfile
import typing as t
import zlib

import orjson
from singer_sdk.helpers._batch import BaseBatchFileEncoding, StorageTarget

from target_miso import s3
from target_miso.reader import might_hold_big_int

#: Compression values that mean "none" in a BATCH message's encoding.
_UNCOMPRESSED = frozenset({None, "", "none"})


class BatchFileError(Exception):
    """A BATCH message whose files cannot be read: the run stops without STATE past it."""


def batch_encoding(stream: str, encoding: object) -> BaseBatchFileEncoding:
    """Read a BATCH message's ``encoding``, refusing what this target cannot read.

    Args:
        stream: The stream, for the message.
        encoding: The ``encoding`` object of the message.

    Returns:
        The encoding.

    Raises:
        BatchFileError: If it is not ``jsonl`` (plain or gzip) or ``parquet``.

    """
    try:
        parsed = BaseBatchFileEncoding.from_dict(t.cast("dict", encoding))
    except (TypeError, ValueError, KeyError, AttributeError):
        parsed = None
    fmt = getattr(parsed, "format", None)
    compression = getattr(parsed, "compression", None)
    readable = fmt == "jsonl" and compression in {*_UNCOMPRESSED, "gzip"}
    readable = readable or (fmt == "parquet" and compression in _UNCOMPRESSED)
    if parsed is None or not readable:
        msg = (
            f"stream '{stream}': a BATCH message with encoding {encoding!r} cannot be read "
            "(target-miso reads jsonl, jsonl with gzip, and parquet); set the tap's "
            "batch_config encoding to one of them"
        )
        raise BatchFileError(msg)
    return parsed


def batch_records(
    stream: str,
    encoding: BaseBatchFileEncoding,
    files: t.Sequence[str],
    storage: StorageTarget | None = None,
) -> t.Iterator[dict[str, t.Any]]:
    """Yield the records of every file of a BATCH message, in order.

    Args:
        stream: The stream, for messages.
        encoding: What ``batch_encoding`` returned.
        files: The manifest: file URLs (``file://...``, ``s3://...``) or paths.
        storage: The sink's batch storage, if the target is configured with one.

    Yields:
        Each record as a dict.

    Raises:
        BatchFileError: If a file cannot be opened or read, or holds a line that is not a
            JSON object.

    """
    for url in files:
        try:
            with _open(url, storage) as raw:
                if encoding.format == "parquet":
                    yield from _parquet_records(stream, raw)
                    continue
                lines = gzip.GzipFile(fileobj=raw) if encoding.compression == "gzip" else raw
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        yield _record(stream, url, number, line)
        except s3.Boto3MissingError as error:
            msg = f"stream '{stream}': BATCH file {url} cannot be read: {error}"
            raise BatchFileError(msg) from None
        except (OSError, EOFError, zlib.error) as error:
            msg = f"stream '{stream}': BATCH file {url} cannot be read ({error})"
            raise BatchFileError(msg) from None
        except ImportError as error:
            # fsspec names the package its storage needs (gcsfs, adlfs, ...): not installed
            # with target-miso; local files need none, s3:// URLs need boto3 (above).
            msg = (
                f"stream '{stream}': BATCH file {url} cannot be read: its storage needs a "
                f"package target-miso does not install ({error}); install it next to "
                "target-miso, or have the tap write its batch files to a local directory"
            )
            raise BatchFileError(msg) from None


def _open(url: str, storage: StorageTarget | None) -> t.ContextManager[t.IO[bytes]]:
    if storage is None and url.startswith("s3://"):
        return s3.open_object(url)  # boto3 (the `s3` extra) rather than fsspec's s3fs
    head, tail = StorageTarget.split_url(url)
    return (storage or StorageTarget.from_url(head)).open(tail, mode="rb")


def _record(stream: str, url: str, number: int, line: bytes) -> dict[str, t.Any]:
    # As the reader does: orjson, or the standard library where orjson is not exact.
    try:
        if might_hold_big_int(line):
            record = json.loads(line)
        else:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                record = json.loads(line)
    except (ValueError, RecursionError) as error:
        problem = type(error).__name__
        msg = f"stream '{stream}': line {number} of BATCH file {url} is not valid JSON ({problem})"
        raise BatchFileError(msg) from None
    if not isinstance(record, dict):
        msg = f"stream '{stream}': line {number} of BATCH file {url} is not a JSON object"
        raise BatchFileError(msg)
    return record


def _parquet_records(stream: str, raw: t.IO[bytes]) -> t.Iterator[dict[str, t.Any]]:
    if importlib.util.find_spec("pyarrow") is None:
        msg = (
            f"stream '{stream}': a parquet BATCH file needs pyarrow "
            "(pip install 'target-miso[parquet]')"
        )
        raise BatchFileError(msg)
    import pyarrow.parquet as pq  # noqa: PLC0415 - optional, imported only when needed

    if raw.seekable():
        for batch in pq.ParquetFile(raw).iter_batches():
            yield from batch.to_pylist()
        return
    # pyarrow reads a parquet file from its end (the footer) and needs to seek: a stream, such
    # as an S3 response body, is spooled to a temporary file on disk first, never to memory.
    with tempfile.TemporaryFile() as spooled:
        shutil.copyfileobj(raw, spooled, 1 << 20)
        spooled.seek(0)
        yield from _parquet_records(stream, spooled)
