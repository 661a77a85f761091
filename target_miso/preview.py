"""Preview a mapping: run records through it and show the interactions, without calling Miso.

Usage::

    python -m target_miso.preview --config config.json [--stream NAME] [--input FILE]
        [--output FILE] [--rejects FILE] [--limit N]

The input (a file, or stdin when absent or ``-``) is either Singer messages, as a tap writes
them (``tap-postgres | python -m target_miso.preview --config config.json``), or a JSON
Lines sample of plain records, which needs ``--stream`` to pick the mapping. Each mapped and
valid interaction is written as ``{"stream": ..., "interaction": {...}}``, and each record of
a catalog stream (``kind: products|users``) as ``{"stream": ..., "product": {...}}`` or
``{"stream": ..., "user": {...}}``; each record set aside as ``{"stream", "stage",
"reasons", "record", "interaction"}``, the shape of the target's rejects file. The checks are
the target's, NaN and Infinity included. Both go to stdout unless ``--output``/``--rejects``
name files. A summary (counts and skip reasons) goes to stderr. Exit status: 0, or 2 when
the mapping settings are wrong, or 1 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import collections
import decimal
import json
import sys
import typing as t
from pathlib import Path

from target_miso.catalog.mapping import CatalogMapping, CatalogOptions, stream_kind
from target_miso.catalog.schema import CatalogValidator
from target_miso.mappings import (
    MappingConfigError,
    MappingError,
    build_mapping,
    check_mappings,
)
from target_miso.mappings import options_for as mapping_options
from target_miso.miso.schema import InteractionValidator
from target_miso.run.rejects import entry_line
from target_miso.sinks import unsendable

if t.TYPE_CHECKING:
    from target_miso.mappings import Mapping

_SINGER_TYPES = frozenset({"SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH"})


class InputError(ValueError):
    """A line of the input is not JSON or not a record."""


class CatalogPreview:
    """A catalog stream's mapping and checks, as the target's catalog sink runs them."""

    def __init__(self, stream: str, mappings: dict[str, t.Any]) -> None:
        """Read the stream's options.

        Args:
            stream: The stream.
            mappings: The ``mappings`` setting.

        """
        path, options = mapping_options(stream, mappings)
        self.options = CatalogOptions(options, path)
        self.mapping = CatalogMapping(self.options, stream)
        self.validator = CatalogValidator(self.options.kind)
        self.preset = f"catalog {self.options.kind}"
        self.skipped: collections.Counter[str] = collections.Counter()


class Preview:
    """Feed records through the configured mappings and write what comes out."""

    def __init__(
        self,
        mappings: dict[str, t.Any],
        output: t.TextIO,
        rejects: t.TextIO,
        stream: str | None = None,
    ) -> None:
        """Prepare the run.

        Args:
            mappings: The target's ``mappings`` setting.
            output: Where interactions go.
            rejects: Where set-aside records go.
            stream: Only this stream (required for plain JSON Lines input).

        """
        self.mappings_setting = mappings
        self.output = output
        self.rejects = rejects
        self.stream = stream
        self.validator = InteractionValidator()
        self.mappings: dict[str, Mapping | CatalogPreview] = {}
        self.counts: collections.Counter[str] = collections.Counter()

    def mapping(self, stream: str, schema: dict[str, t.Any] | None) -> Mapping | CatalogPreview:
        """Return the stream's mapping, creating it as the target does.

        Args:
            stream: The stream name.
            schema: Its schema, when one was seen.

        Returns:
            The mapping (a catalog stream's: its ``CatalogPreview``).

        """
        mapping = self.mappings.get(stream)
        if mapping is None:
            path, options = mapping_options(stream, self.mappings_setting)
            if stream_kind(options, path) != "interactions":
                mapping = CatalogPreview(stream, self.mappings_setting)
                if schema is not None:
                    mapping.mapping.bind_schema(schema)
            else:
                mapping = build_mapping(stream, self.mappings_setting, schema)
            self.mappings[stream] = mapping
        elif schema is not None:
            target = mapping.mapping if isinstance(mapping, CatalogPreview) else mapping
            target.bind_schema(schema)
        return mapping

    def feed_line(self, line: str, number: int) -> None:
        """Handle one input line.

        Args:
            line: The line (a Singer message or a plain record).
            number: Its line number, for errors.

        Raises:
            InputError: If the line is not a JSON object, or a plain record has no stream.

        """
        if not line.strip():
            return
        try:
            message = json.loads(line, parse_float=decimal.Decimal)
        except json.JSONDecodeError as error:
            msg = f"line {number}: not JSON ({error.msg})"
            raise InputError(msg) from None
        if not isinstance(message, dict):
            msg = f"line {number}: expected a JSON object"
            raise InputError(msg)
        kind = message.get("type")
        if kind in _SINGER_TYPES and ("stream" in message or kind == "STATE"):
            self._singer(message)
            return
        if self.stream is None:
            msg = f"line {number}: a plain record (not a Singer message) needs --stream"
            raise InputError(msg)
        self.record(self.stream, message, schema_from=message)

    def _singer(self, message: dict[str, t.Any]) -> None:
        kind = message["type"]
        stream = message.get("stream")
        if self.stream is not None and stream is not None and stream != self.stream:
            return
        if kind == "SCHEMA":
            self.mapping(message["stream"], message.get("schema") or {})
        elif kind == "RECORD":
            self.record(message["stream"], message.get("record") or {})
        elif kind == "STATE":
            self.flush()

    def record(
        self,
        stream: str,
        record: dict[str, t.Any],
        schema_from: dict[str, t.Any] | None = None,
    ) -> None:
        """Map one record and write the outcome.

        Args:
            stream: Its stream.
            record: The record.
            schema_from: For plain input: a record whose keys stand for the schema (only
                used to recognise the preset when the stream has no ``preset``).

        """
        if stream not in self.mappings and schema_from is not None:
            schema: dict[str, t.Any] = {"properties": {key: {} for key in schema_from}}
            mapping = self.mapping(stream, schema)
        else:
            mapping = self.mapping(stream, None)
        self.counts["records in"] += 1
        if isinstance(mapping, CatalogPreview):
            self._catalog_record(stream, mapping, record)
            return
        try:
            interactions = mapping.map(record)
        except MappingError as error:
            self._reject(stream, "mapping", error.reasons, record, None)
            return
        for interaction in interactions:
            self._interaction(stream, interaction, record)

    def _catalog_record(self, stream: str, catalog: CatalogPreview, record: dict) -> None:
        try:
            mapped = catalog.mapping.map(record)
        except MappingError as error:
            self._reject(stream, "mapping", error.reasons, record, None)
            return
        if mapped is None:
            catalog.skipped[f"{stream}: filtered out"] += 1
            return
        problem = unsendable(mapped)
        reasons = catalog.validator.reasons(mapped) + ([problem] if problem else [])
        if reasons:
            self._reject(stream, "validation", reasons, record, mapped)
            return
        name = catalog.options.kind[:-1]  # product, user
        self.counts[f"{name} records"] += 1
        self.output.write(entry_line({"stream": stream, name: mapped}))

    def flush(self) -> None:
        """Take what the mappings held back (as the target does before each STATE)."""
        for stream, mapping in self.mappings.items():
            if isinstance(mapping, CatalogPreview):
                continue
            for interaction, source in mapping.flush():
                self._interaction(stream, interaction, source)

    def _interaction(self, stream: str, interaction: dict[str, t.Any], source: object) -> None:
        # The target's checks: the schema, then what JSON cannot carry (NaN, Infinity).
        reasons = self.validator.reasons(interaction)
        problem = None if reasons else unsendable(interaction)
        if reasons or problem:
            self._reject(stream, "validation", reasons or [str(problem)], source, interaction)
            return
        self.counts["interactions"] += 1
        self.output.write(entry_line({"stream": stream, "interaction": interaction}))

    def _reject(
        self,
        stream: str,
        stage: str,
        reasons: list[str],
        source: object,
        interaction: object,
    ) -> None:
        self.counts["set aside"] += 1
        entry = {
            "stream": stream,
            "stage": stage,
            "reasons": reasons,
            "record": source,
            "interaction": interaction,
        }
        self.rejects.write(entry_line(entry))

    def summary(self) -> str:
        """Describe the run in a few lines.

        Returns:
            Counts, then skip reasons.

        """
        lines = [
            f"records in: {self.counts['records in']}",
            f"interactions: {self.counts['interactions']}",
            *(
                f"{name} records: {self.counts[f'{name} records']}"
                for name in ("product", "user")
                if f"{name} records" in self.counts
            ),
            f"set aside: {self.counts['set aside']}",
        ]
        for stream, mapping in sorted(self.mappings.items()):
            lines.append(f"stream {stream}: preset {mapping.preset}")
            lines.extend(
                f"  skipped {count}: {reason}" for reason, count in sorted(mapping.skipped.items())
            )
        return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m target_miso.preview",
        description="Run records through target-miso's mappings and show the interactions "
        "and the records set aside, without calling Miso.",
    )
    parser.add_argument("--config", required=True, help="the target's config JSON file")
    parser.add_argument("--stream", help="only this stream; required for plain JSON Lines input")
    parser.add_argument(
        "--input", default="-", help="Singer messages or JSON Lines (default: stdin)"
    )
    parser.add_argument("--output", default="-", help="where interactions go (default: stdout)")
    parser.add_argument(
        "--rejects", default="-", help="where set-aside records go (default: stdout)"
    )
    parser.add_argument("--limit", type=int, help="stop after this many input lines")
    return parser


def _open_out(path: str) -> t.TextIO:
    if path == "-":
        return sys.stdout
    return Path(path).open("w", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the preview.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    """
    args = _parser().parse_args(argv)
    try:
        config = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        print(f"cannot read --config {args.config}: {error}", file=sys.stderr)
        return 2
    mappings = config.get("mappings") or {}
    try:
        check_mappings(mappings)
    except MappingConfigError as error:
        print(f"mapping settings are wrong: {error}", file=sys.stderr)
        return 2
    output = _open_out(args.output)
    rejects = output if args.rejects == args.output else _open_out(args.rejects)
    preview = Preview(mappings, output, rejects, args.stream)
    source = sys.stdin if args.input == "-" else Path(args.input).open(encoding="utf-8")
    status = 0
    try:
        for number, line in enumerate(source, start=1):
            if args.limit is not None and number > args.limit:
                break
            preview.feed_line(line, number)
        preview.flush()
    except InputError as error:
        print(f"input: {error}", file=sys.stderr)
        status = 1
    except MappingConfigError as error:
        print(f"mapping settings are wrong: {error}", file=sys.stderr)
        status = 2
    finally:
        for mapping in preview.mappings.values():
            if not isinstance(mapping, CatalogPreview):
                mapping.close()
        for stream in {output, rejects, source}:
            if stream not in (sys.stdout, sys.stdin):
                stream.close()
    print(preview.summary(), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
