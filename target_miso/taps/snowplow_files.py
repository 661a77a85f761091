"""tap-snowplow-files: read Snowplow's enriched TSV files (the S3 loader's output) as a Singer stream.

Snowplow's S3 loader writes gzip files of headerless, tab-separated lines with JSON inside
some fields and no quoting; none of the CSV or JSON taps reads that correctly (see
docs/s3.md). This tap emits one stream, ``atomic-events``, whose records carry the 131
enriched fields by name, as text (empty fields as null), plus ``_sdc_source_file``. The
Snowplow preset of target-miso reads them as its "TSV-shaped" layout.

``path`` is a local directory or glob (``output/demo/*.gz``) or ``s3://bucket/prefix``.
Files are read in key order, which for the S3 loader (keys carry the time they were
written) is the order they were written. The bookmark is the key of the last file read;
the next run starts again at that file (it may have been read only partly when a run
stopped) and the target's event id dedupe drops what was already sent.
"""

from __future__ import annotations

import glob
import gzip
import io
import typing as t
from pathlib import Path

from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from target_miso.samples import ENRICHED_TSV_COLUMNS

STREAM_NAME = "atomic-events"
SOURCE_FILE = "_sdc_source_file"


class MalformedLineError(ValueError):
    """A line that is not an enriched event: names the file and line number."""


class SnowplowFilesStream(Stream):
    """Every event line of every file, in file key order."""

    name = STREAM_NAME
    primary_keys = ("event_id",)
    replication_key = SOURCE_FILE
    is_sorted = True
    schema = th.PropertiesList(
        *(th.Property(column, th.StringType) for column in ENRICHED_TSV_COLUMNS),
        th.Property(SOURCE_FILE, th.StringType),
    ).to_dict()

    def get_records(self, context: dict | None) -> t.Iterable[dict[str, t.Any]]:
        """Yield the events of each file from the bookmark on.

        Args:
            context: Unused (one partition).

        Yields:
            One record per line.
        """
        start = self.get_starting_replication_key_value(context) or ""
        for key, opener in self._files():
            if key < start:
                continue
            with opener() as raw:
                yield from self._events(key, raw)

    def _events(self, key: str, raw: t.IO[bytes]) -> t.Iterator[dict[str, t.Any]]:
        head = raw.read(2)
        stream: t.IO[bytes] = io.BufferedReader(_Prefixed(head, raw))  # type: ignore[arg-type]
        if head == b"\x1f\x8b":  # gzip, whatever the file is called
            stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
        expected = len(ENRICHED_TSV_COLUMNS)
        for number, line in enumerate(io.TextIOWrapper(stream, encoding="utf-8", newline="\n"), 1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            if len(fields) != expected:
                msg = f"{key}, line {number}: {len(fields)} tab-separated fields, expected {expected} (enriched TSV)"
                raise MalformedLineError(msg)
            record: dict[str, t.Any] = {
                column: value or None for column, value in zip(ENRICHED_TSV_COLUMNS, fields)
            }
            record[SOURCE_FILE] = key
            yield record

    def _files(self) -> list[tuple[str, t.Callable[[], t.ContextManager[t.IO[bytes]]]]]:
        path = str(self.config["path"])
        if path.startswith("s3://"):
            return self._s3_files(path)
        local = path.removeprefix("file://")
        if Path(local).is_dir():
            local = str(Path(local) / "**" / "*")
        files = sorted(Path(found) for found in glob.glob(local, recursive=True))
        return [(str(file), (lambda file=file: file.open("rb"))) for file in files if file.is_file()]

    def _s3_files(self, url: str) -> list[tuple[str, t.Callable[[], t.ContextManager[t.IO[bytes]]]]]:
        try:
            import boto3  # noqa: PLC0415 - only the S3 path needs it
        except ImportError:
            msg = "reading s3:// paths needs boto3: install target-miso[s3]"
            raise RuntimeError(msg) from None
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=self.config.get("endpoint_url") or None)
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]

        def opener(key: str) -> t.Callable[[], t.ContextManager[t.IO[bytes]]]:
            return lambda: _closing(client.get_object(Bucket=bucket, Key=key)["Body"])

        return [(f"s3://{bucket}/{key}", opener(key)) for key in sorted(keys)]


class _Prefixed(io.RawIOBase):
    """A raw stream that gives back bytes already read before the rest (to sniff gzip)."""

    def __init__(self, head: bytes, rest: t.IO[bytes]) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: t.Any) -> int:
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size], self._head = self._head[:size], self._head[size:]
            return size
        chunk = self._rest.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class _closing:  # noqa: N801 - used like contextlib.closing
    def __init__(self, body: t.Any) -> None:
        self.body = body

    def __enter__(self) -> t.Any:
        return self.body

    def __exit__(self, *exc_info: object) -> None:
        self.body.close()


class TapSnowplowFiles(Tap):
    """Snowplow enriched TSV files, local or on S3."""

    name = "tap-snowplow-files"
    package_name = "target-miso"  # the distribution that ships it (for --version)
    config_jsonschema = th.PropertiesList(
        th.Property("path", th.StringType, required=True,
                    description="A directory, a glob (`data/*.gz`) or `s3://bucket/prefix` of enriched TSV files."),
        th.Property("endpoint_url", th.StringType,
                    description="S3-compatible endpoint (MinIO, moto, ...); AWS_ENDPOINT_URL also works."),
    ).to_dict()  # fmt: skip

    def discover_streams(self) -> list[Stream]:
        """The one stream."""
        return [SnowplowFilesStream(self)]


if __name__ == "__main__":
    TapSnowplowFiles.cli()
