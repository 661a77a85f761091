r"""Turn a rejects file back into Singer messages, to re-send its records after a fix.

::

    python -m target_miso.rejects_replay --stream atomic-events rejects.jsonl \
        | target-miso --config config.json

Writes one SCHEMA line for the stream, then one RECORD line per entry of that stream whose
``record`` is a whole source record, in file order, and no STATE (a Meltano bookmark is not
touched). Entries that cannot be re-sent are counted on stderr, not written: input lines that
were never read as records (stage ``input``), and Snowplow entries that keep only the columns
that identify their row (an interaction Miso refused, or one held for the flush): mapping
those again would give a different interaction, so re-send their window with a full refresh
instead (docs/production.md). The Snowplow preset drops events it already delivered, so a
rejects file replayed twice sends its records once.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import typing as t

#: What a Snowplow batch keeps of a row (``mappings/snowplow/preset.py``).
_IDENTITY_ONLY = frozenset(
    ("event_id", "event_name", "collector_tstamp", "page_url", "tr_orderid"),
)
STAGES = ("mapping", "validation", "miso")


def replay(
    lines: t.Iterable[str],
    stream: str,
    stages: t.Collection[str] = STAGES,
) -> tuple[list[str], collections.Counter[str]]:
    """Return the Singer lines for one stream's set-aside records, and what was left out.

    Args:
        lines: The rejects file's lines.
        stream: The stream to re-send.
        stages: Which stages' entries to re-send.

    Returns:
        The SCHEMA and RECORD lines, and the entries left out by reason.

    Raises:
        ValueError: If a line is not a rejects entry (names the line number).

    """
    schema = {"type": "object", "properties": {}}
    out = [json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": []})]
    left_out: collections.Counter[str] = collections.Counter()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number}: not a rejects entry (not JSON)") from None
        if not isinstance(entry, dict) or "record" not in entry:
            raise ValueError(f"line {number}: not a rejects entry (no record)")
        if entry.get("stream") != stream:
            continue
        record = entry["record"]
        if entry.get("stage") not in stages:
            left_out[f"stage {entry.get('stage')} not chosen"] += 1
        elif not isinstance(record, dict):
            left_out["not a record (an input line kept as text)"] += 1
        elif set(record) <= _IDENTITY_ONLY:
            left_out["only the columns that identify the row (re-send with a full refresh)"] += 1
        else:
            out.append(json.dumps({"type": "RECORD", "stream": stream, "record": record}))
    return out, left_out


def main(argv: list[str] | None = None) -> int:
    """Write the Singer lines to stdout.

    Args:
        argv: The command line (default: ``sys.argv``).

    Returns:
        The exit code.

    """
    parser = argparse.ArgumentParser(
        prog="python -m target_miso.rejects_replay",
        description="Re-send the records of a target-miso rejects file: pipe into target-miso.",
    )
    parser.add_argument("rejects", help="the rejects file (rejects_path)")
    parser.add_argument("--stream", required=True, help="the Singer stream to re-send")
    parser.add_argument(
        "--stage",
        action="append",
        choices=STAGES,
        help="only entries set aside at this stage (repeatable; default: all three)",
    )
    args = parser.parse_args(argv)
    try:
        with open(args.rejects, encoding="utf-8") as rejects:
            out, left_out = replay(rejects, args.stream, args.stage or STAGES)
    except (OSError, ValueError) as error:
        print(f"rejects_replay: {args.rejects}: {error}", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in out))
    print(f"rejects_replay: {len(out) - 1} records of stream {args.stream}", file=sys.stderr)
    for reason, count in sorted(left_out.items()):
        print(f"rejects_replay: left out {count}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
