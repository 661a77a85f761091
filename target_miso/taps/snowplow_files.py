"""tap-snowplow-files: Snowplow's enriched TSV files (the S3 loader's output) as a Singer stream.

Snowplow's S3 loader writes gzip files of headerless, tab-separated lines with JSON inside
some fields and no quoting; none of the CSV or JSON taps reads that correctly (see
docs/s3.md). This tap emits one stream, ``atomic-events``, whose records carry the 131
enriched fields by name, as text (empty fields as null), plus where each line came from
(``_sdc_source_file``, ``_sdc_source_lineno``, ``_sdc_source_last_modified``). The Snowplow
preset of target-miso reads them as its "TSV-shaped" layout.

``path`` is a local directory or glob (``output/demo/*.gz``) or ``s3://bucket/prefix``.

Incremental by file: files are read in order of (last-modified time, key) and every record
carries its position, ``<last modified>|<key>|<line number>`` (``end`` on a file's last
line). That position is the bookmark, so the next run skips the files already read, resumes
inside a file a stopped run left half read, and reads nothing twice. Files younger than
``settle_seconds`` are left for the next run: an upload that began earlier (an object's
date can be its upload's start) but finishes later must not land behind the bookmark.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import gzip
import io
import time
import typing as t
from pathlib import Path

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from target_miso import s3
from target_miso.samples import ENRICHED_TSV_COLUMNS
from target_miso.taps.singer_output import FastSingerWriter

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

STREAM_NAME = "atomic-events"
SOURCE_FILE = "_sdc_source_file"
SOURCE_LINE = "_sdc_source_lineno"
SOURCE_MODIFIED = "_sdc_source_last_modified"
POSITION = "_sdc_source_position"
#: Marks a file's last event in its position: sorts after every zero-padded line number.
END_OF_FILE = "end"
FIELD_COUNT = len(ENRICHED_TSV_COLUMNS)
GZIP_MAGIC = b"\x1f\x8b"


class MalformedFileError(ValueError):
    """A file or line that is not enriched TSV: the message names the file and line number."""


#: The older name, kept for callers that catch it.
MalformedLineError = MalformedFileError


class SourceFile(t.NamedTuple):
    """One file to read: where it is, when it was last written, how to open it."""

    key: str
    last_modified: dt.datetime
    open: Callable[[], t.ContextManager[t.IO[bytes]]]

    @property
    def position_prefix(self) -> str:
        """``<last modified>|<key>|``: files are read in the string order of this prefix.

        Sorting on the very string the bookmark holds keeps the two orders identical (a
        tuple order would put ``part-1`` before ``part-10`` where the strings do not).
        """
        return f"{_iso(self.last_modified)}|{self.key}|"


class Bookmark(t.NamedTuple):
    """Where the previous run stopped: a file's position prefix and the last line it sent."""

    prefix: str
    line: int | None  # None: the whole file was sent

    @classmethod
    def parse(cls, value: str | None) -> Bookmark | None:
        """Read a position written by this tap.

        Args:
            value: The bookmark (``<last modified>|<key>|<line or end>``), or None.

        Returns:
            The bookmark, or None when there is none.

        Raises:
            ValueError: The value is not a position of this tap (an older state).

        """
        if not value:
            return None
        prefix, separator, line = value.rpartition("|")
        if not separator or "|" not in prefix or not (line == END_OF_FILE or line.isdigit()):
            msg = (
                f"bookmark {value!r} of stream {STREAM_NAME} is not a tap-snowplow-files position "
                "(<last modified>|<key>|<line>); clear the state to read every file again"
            )
            raise ValueError(msg)
        return cls(prefix + "|", None if line == END_OF_FILE else int(line))


class SnowplowFilesStream(Stream):
    """Every event line of every file, in (last modified, key) order."""

    name = STREAM_NAME
    primary_keys = ("event_id",)
    replication_key = POSITION
    is_sorted = True
    # Records are built with the schema's exact types (text, null, one integer), so the SDK's
    # per-value conformance pass would change nothing; skipping it makes the tap ~5x faster.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    schema = th.PropertiesList(
        *(th.Property(column, th.StringType) for column in ENRICHED_TSV_COLUMNS),
        th.Property(SOURCE_FILE, th.StringType, description="The file's path or s3:// URL."),
        th.Property(SOURCE_LINE, th.IntegerType, description="The line's number in the file."),
        th.Property(SOURCE_MODIFIED, th.DateTimeType, description="The file's last-modified time."),
        th.Property(
            POSITION, th.StringType, description="The bookmark: <last modified>|<key>|<line>."
        ),
    ).to_dict()

    def get_records(self, context: t.Mapping[str, t.Any] | None) -> Iterable[dict[str, t.Any]]:
        """Yield the events of every file after the bookmark.

        Args:
            context: Unused (one partition).

        Yields:
            One record per event line.

        """
        bookmark = Bookmark.parse(self.get_starting_replication_key_value(context))
        settle = float(self.config.get("settle_seconds", 0))
        newest_allowed = dt.datetime.fromtimestamp(time.time() - settle, dt.timezone.utc)
        files = sorted(self._list_files(), key=lambda file: file.position_prefix)
        ready = [file for file in files if file.last_modified <= newest_allowed]
        todo = [
            file for file in ready if bookmark is None or file.position_prefix >= bookmark.prefix
        ]
        if bookmark is not None and todo and todo[0].position_prefix == bookmark.prefix:
            if bookmark.line is None:
                todo.pop(0)  # sent in full last time
        self.logger.info(
            "%d files to read, %d read by earlier runs, %d younger than settle_seconds=%s "
            "left for the next run",
            len(todo),
            len(ready) - len(todo),
            len(files) - len(ready),
            settle,
        )
        for file in todo:
            skip = bookmark.line if bookmark and file.position_prefix == bookmark.prefix else 0
            with file.open() as raw:
                yield from self._events(file, raw, skip_through=skip or 0)

    def _events(
        self, file: SourceFile, raw: t.IO[bytes], skip_through: int
    ) -> Iterator[dict[str, t.Any]]:
        """Parse one file's lines, one line behind so the last event can carry ``end``."""
        prefix, modified = file.position_prefix, _iso(file.last_modified)
        held: dict[str, t.Any] | None = None
        for number, fields in _tsv_lines(file.key, raw):
            if number <= skip_through:
                continue
            if held is not None:
                yield held
            held = dict(zip(ENRICHED_TSV_COLUMNS, [value or None for value in fields], strict=True))
            held[SOURCE_FILE], held[SOURCE_LINE], held[SOURCE_MODIFIED] = file.key, number, modified
            held[POSITION] = f"{prefix}{number:010d}"
        if held is not None:
            held[POSITION] = prefix + END_OF_FILE
            yield held

    def _list_files(self) -> list[SourceFile]:
        path = str(self.config["path"])
        if path.startswith("s3://"):
            return _s3_files(path, self.config.get("endpoint_url"))
        return _local_files(path.removeprefix("file://"))


def _tsv_lines(key: str, raw: t.IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    """Split a file (gzip or plain, told apart by its first bytes) into numbered lines of fields.

    Raises:
        MalformedFileError: A line without 131 fields, bytes that are not UTF-8, or a
            damaged or cut-off gzip file, named by file and line number.

    """
    head = raw.read(2)
    stream: t.IO[bytes] = io.BufferedReader(_Prefixed(head, raw), buffer_size=1 << 20)
    if head == GZIP_MAGIC:  # whatever the file is called
        stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
    number = 0
    try:
        for number, line in enumerate(stream, 1):  # number is also read by the except clauses
            fields = line.rstrip(b"\r\n").decode("utf-8").split("\t")
            if len(fields) == FIELD_COUNT:
                yield number, fields
            elif fields != [""]:  # blank lines carry no event
                msg = (
                    f"{key}, line {number}: {len(fields)} tab-separated fields, "
                    f"expected {FIELD_COUNT} (enriched TSV)"
                )
                raise MalformedFileError(msg)
    except UnicodeDecodeError as error:
        msg = f"{key}, line {number}: not UTF-8 ({error.reason} at byte {error.start})"
        raise MalformedFileError(msg) from None
    except (EOFError, gzip.BadGzipFile, OSError) as error:
        msg = f"{key}, after line {number}: damaged or cut-off gzip file ({error})"
        raise MalformedFileError(msg) from None


def _opener(file: Path) -> Callable[[], t.IO[bytes]]:
    return lambda: file.open("rb")


def _local_files(pattern: str) -> list[SourceFile]:
    if Path(pattern).is_dir():
        pattern = str(Path(pattern) / "**" / "*")
    found = (Path(name) for name in glob.glob(pattern, recursive=True))
    return [
        SourceFile(str(file), _from_ns(file.stat().st_mtime_ns), _opener(file))
        for file in found
        if file.is_file()
    ]


def _s3_files(url: str, endpoint_url: str | None) -> list[SourceFile]:
    bucket, prefix = s3.split_url(url)
    client = s3.client(endpoint_url)

    def opener(key: str) -> Callable[[], t.ContextManager[t.IO[bytes]]]:
        return lambda: contextlib.closing(client.get_object(Bucket=bucket, Key=key)["Body"])

    return [
        SourceFile(f"s3://{bucket}/{item['Key']}", item["LastModified"], opener(item["Key"]))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    ]


def _from_ns(nanoseconds: int) -> dt.datetime:
    seconds, rest = divmod(nanoseconds, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).replace(microsecond=rest // 1000)


def _iso(moment: dt.datetime) -> str:
    """Format a time at fixed width, so that positions sort as text."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


class TapSnowplowFiles(Tap):
    """Snowplow enriched TSV files, local or on S3."""

    name = "tap-snowplow-files"
    package_name = "target-miso"  # the distribution that ships it (for --version)
    message_writer_class = FastSingerWriter
    config_jsonschema = th.PropertiesList(
        th.Property(
            "path",
            th.StringType,
            required=True,
            title="Files",
            description="A directory, a glob (`data/**/*.gz`) or `s3://bucket/prefix` of "
            "enriched TSV files.",
        ),
        th.Property(
            "endpoint_url",
            th.StringType,
            title="S3 endpoint URL",
            description="S3-compatible endpoint (MinIO, moto, ...); unset, boto3 reads "
            "AWS_ENDPOINT_URL.",
        ),
        th.Property(
            "settle_seconds",
            th.NumberType,
            default=300,
            title="Settle time (seconds)",
            description="Leave files modified less than this long ago for the next run, so that "
            "an upload still in flight can never land behind the bookmark.",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        """Return the one stream.

        Returns:
            ``atomic-events``.

        """
        return [SnowplowFilesStream(self)]


if __name__ == "__main__":
    TapSnowplowFiles.cli()
