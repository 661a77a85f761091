"""Print the columns a stream's mapping reads, for the tap's select list (column pruning).

Usage::

    python -m target_miso.columns --config config.json --stream NAME [--select]
        [--table-columns FILE]

The stream's entry in ``mappings`` is found as the target finds it (its exact name, else the
first glob) and built with its options; what it reads is printed one per line: columns by
name, then globs for families of columns (Snowflake's and BigQuery's one column per
schema). ``--select`` prints them as Meltano ``select:`` entries (``- <stream>.<column>``).
``--table-columns`` (a file, ``-`` for stdin) takes the table's own column names, one per
line, and prints those the mapping reads, in the table's order: for taps that need names,
not globs (tap-bigquery's ``columns``). With Meltano, ``meltano config target-miso`` prints
the config (``--config -`` reads it from stdin).

Every preset lists its columns (docs/mappings.md#selecting-only-the-columns-a-mapping-reads):
a custom mapping whose expression uses ``record`` as a whole (``record.keys()``) prints ``*``
(select every column) and says which setting; a Segment table without interactions
(``tracks``, ``identifies``...) prints nothing. Exit status: 0, or 2 when the config or the
mapping settings are wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import typing as t
from pathlib import Path

from target_miso.mappings import MappingConfigError, build_mapping
from target_miso.mappings.declarative.preset import CustomMapping
from target_miso.mappings.snowplow.preset import SnowplowMapping

if t.TYPE_CHECKING:
    from target_miso.mappings import Mapping


def stream_columns(mappings: dict[str, t.Any], stream: str) -> tuple[list[str], str | None]:
    """Return what a stream's mapping reads, and a note for the reader.

    The mapping is built in a scratch directory, its event-id store there too: printing
    columns never opens (or creates) the stores a pipeline uses.

    Args:
        mappings: The target's ``mappings`` setting.
        stream: The Singer stream name.

    Returns:
        Column names and globs (``["*"]``: every column), and a note or None.

    Raises:
        MappingConfigError: If the stream's options are wrong.

    """
    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="target-miso-columns-") as scratch:
        isolated = {
            key: _isolated(value, scratch) if isinstance(value, dict) else value
            for key, value in mappings.items()
        }
        os.chdir(scratch)  # relative store paths (the preset's default) land there too
        try:
            mapping = build_mapping(stream, isolated)
        finally:
            os.chdir(here)
        try:
            return _described(mapping)
        finally:
            mapping.close()


def _isolated(options: dict[str, t.Any], scratch: str) -> dict[str, t.Any]:
    # The Snowplow preset's event-id store and the custom preset's key store; a value that
    # is not a path stays, for the preset to refuse.
    stores = {"dedupe_store": "ids.sqlite", "dedup_store": "keys.sqlite"}
    return {
        key: os.path.join(scratch, stores[key])
        if key in stores and isinstance(value, str) and value.strip()
        else value
        for key, value in options.items()
    }


def _described(mapping: Mapping) -> tuple[list[str], str | None]:
    columns = mapping.columns()
    if columns is None:
        why = f"the {mapping.preset} preset does not list its columns"
        if isinstance(mapping, CustomMapping) and mapping.unlisted:
            why = f"{mapping.unlisted}, so any column may be read"
        return ["*"], f"{why}: select every column"
    if not list(columns):
        return [], f"the {mapping.preset} preset maps no row of this stream and reads no column"
    if isinstance(mapping, SnowplowMapping) and mapping.payload_column is not None:
        inner = ", ".join(mapping.row_columns().names)
        return list(columns), f"the JSON text in {mapping.payload_column!r} must hold {inner}"
    return list(columns), None


def table_columns(columns: list[str], available: t.Iterable[str]) -> list[str]:
    """Return the table's columns the mapping reads, in the table's order.

    Args:
        columns: From ``stream_columns`` (names and globs).
        available: The table's column names.

    Returns:
        The matching names.

    """
    from target_miso.mappings.base import Columns  # noqa: PLC0415 - only for this option

    if columns == ["*"]:
        return list(available)
    names = tuple(column for column in columns if not _is_glob(column))
    reads = Columns(names, tuple(column for column in columns if _is_glob(column)))
    return [column for column in available if reads.matches(column)]


def _is_glob(column: str) -> bool:
    return any(character in column for character in "*?[")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m target_miso.columns",
        description="Print the columns a stream's mapping reads (for the tap's select list).",
    )
    parser.add_argument("--config", required=True, help="the target's config JSON (- : stdin)")
    parser.add_argument("--stream", required=True, help="the stream, as the tap names it")
    parser.add_argument(
        "--select", action="store_true", help="print Meltano select entries: - <stream>.<column>"
    )
    parser.add_argument(
        "--table-columns",
        metavar="FILE",
        help="the table's column names, one per line (- : stdin); print those read",
    )
    return parser


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    return Path(path).read_text(encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Print the columns.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    """
    args = _parser().parse_args(argv)
    if args.config == "-" and args.table_columns == "-":
        print("--config and --table-columns cannot both read stdin", file=sys.stderr)
        return 2
    try:
        config = json.loads(_read(args.config))
        available = _read(args.table_columns).split() if args.table_columns else None
    except (OSError, json.JSONDecodeError) as error:
        print(f"cannot read the input: {error}", file=sys.stderr)
        return 2
    mappings = config.get("mappings") if isinstance(config, dict) else None
    try:
        columns, note = stream_columns(mappings or {}, args.stream)
    except MappingConfigError as error:
        print(f"mapping settings are wrong: {error}", file=sys.stderr)
        return 2
    if available is not None:
        columns = table_columns(columns, available)
    for column in columns:
        print(f"- {args.stream}.{column}" if args.select else column)
    if note:
        print(note, file=sys.stderr)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
