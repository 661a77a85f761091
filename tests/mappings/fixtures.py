"""Load the Singer fixtures in data/ and run a stream through a mapping."""

from __future__ import annotations

import decimal
import json
import typing as t
from pathlib import Path

from target_miso.mappings import build_mapping
from target_miso.miso.schema import InteractionValidator

DATA = Path(__file__).parent / "data"
VALIDATOR = InteractionValidator()


def read_singer(name: str) -> dict[str, tuple[dict[str, t.Any], list[dict[str, t.Any]]]]:
    """Return stream -> (schema, records) as a tap wrote them (numbers with decimals as Decimal)."""
    streams: dict[str, tuple[dict[str, t.Any], list[dict[str, t.Any]]]] = {}
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        message = json.loads(line, parse_float=decimal.Decimal)
        if message["type"] == "SCHEMA":
            streams.setdefault(message["stream"], (message["schema"], []))
        elif message["type"] == "RECORD":
            streams[message["stream"]][1].append(message["record"])
    return streams


def run_stream(
    mappings: dict[str, t.Any],
    stream: str,
    schema: dict[str, t.Any],
    records: list[dict[str, t.Any]],
) -> tuple[list[dict[str, t.Any]], t.Any]:
    """Map every record of a stream; assert every interaction is valid for Miso."""
    mapping = build_mapping(stream, mappings, schema)
    interactions = [i for record in records for i in mapping.map(record)]
    interactions += [i for i, _ in mapping.flush()]
    for interaction in interactions:
        assert VALIDATOR.reasons(interaction) == [], interaction
    return interactions, mapping
