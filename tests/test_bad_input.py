"""Bad input lines, through the real target process and the sandbox: set aside or one clear stop.

Poison values (NaN, Infinity, 1e400, lone surrogates, integers beyond 64 bits) and lines that
cannot be decoded set their record aside and the run goes on; integers beyond 64 bits stay
exact; a line that is not a Singer message ends the run with one ERROR line and exit code 1.
"""

from __future__ import annotations

import json
import typing as t

import pytest

from tests.helpers import (
    interaction,
    read_rejects,
    record_message,
    run_target,
    schema_message,
    seqs,
    state_message,
    write_config,
)

PERSONAL = "person-42-private"
POISON = "__poison__"


def bookmark(seq: int) -> dict:
    return {"bookmarks": {"interactions": {"seq": seq}}}


def poisoned_line(seq: int, field: str, raw: str) -> str:
    """A RECORD line whose ``field`` (dotted for nesting) holds ``raw`` JSON text."""
    record = interaction(seq)
    target: dict[str, t.Any] = record
    *parents, leaf = field.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = POISON
    return record_message(record).replace(json.dumps(POISON), raw)


def three_records(middle: str) -> str:
    lines = [
        schema_message(),
        record_message(interaction(0)),
        middle,
        record_message(interaction(2)),
        state_message(bookmark(2)),
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        ("duration", "NaN", "duration: NaN is not a finite number (JSON has no NaN"),
        ("duration", "Infinity", "duration: Infinity is not a finite number"),
        ("duration", "-Infinity", "duration: -Infinity is not a finite number"),
        ("duration", "1e400", "duration: Infinity is not a finite number"),
        (
            "duration",
            "123456789012345678901234567890",
            "duration: integer 123456789012345678901234567890 is beyond 64 bits",
        ),
        ("user_id", '"\\ud800"', "user_id: text holds a lone surrogate"),
        ("context.page.url", '"https://shop.example/\\udfff"', "context.page.url: text holds"),
        ("context.custom_context.score", "NaN", "context.custom_context.score: NaN is not a"),
        ("context.extra", "Infinity", "context.extra: Infinity is not a finite number"),
    ],
)
def test_a_poison_value_sets_its_record_aside_and_the_run_goes_on(
    sandbox,
    tmp_path,
    field,
    raw,
    reason,
):
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, three_records(poisoned_line(1, field, raw)))

    assert run.returncode == 0, run.stderr
    assert sorted(seqs(sandbox.interactions)) == [0, 2]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1
    assert rejects[0]["stage"] == "validation"
    assert rejects[0]["record"]["seq"] == 1
    assert rejects[0]["reasons"][0].startswith(reason), rejects[0]["reasons"]
    assert run.states[-1] == bookmark(2)
    assert "Traceback" not in run.stderr


def test_a_line_that_is_not_utf8_is_set_aside_with_its_line_number(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    bad = record_message(interaction(1, user_id="caf@")).encode().replace(b"@", b"\xff\xfe")
    data = three_records("@BAD@").encode().replace(b"@BAD@", bad)

    run = run_target(config, data)

    assert run.returncode == 0, run.stderr
    assert sorted(seqs(sandbox.interactions)) == [0, 2]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1
    assert rejects[0]["stage"] == "input"
    assert rejects[0]["stream"] == "interactions"
    assert rejects[0]["reasons"][0].startswith("encoding: line 3 is not valid UTF-8")
    assert "caf\\xff\\xfe" in rejects[0]["record"], "the raw line is kept as text"
    assert json.loads(rejects[0]["record"].replace("\\xff\\xfe", ""))["record"]["seq"] == 1
    assert run.states[-1] == bookmark(2)
    assert "set aside: 1" in run.stderr
    assert "records in: 3" in run.stderr


def test_a_record_nested_1200_deep_is_set_aside_at_input(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    deep = '{"a":' * 1200 + "1" + "}" * 1200
    line = poisoned_line(1, "context.custom_context.deep", deep)

    run = run_target(config, three_records(line))

    assert run.returncode == 0, run.stderr
    assert sorted(seqs(sandbox.interactions)) == [0, 2]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [r["stage"] for r in rejects] == ["input"]
    assert rejects[0]["reasons"][0].startswith("nesting: line 3 ")
    assert rejects[0]["record"] == line
    assert run.states[-1] == bookmark(2)
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("depth", "stage", "reason"),
    [
        (300, "validation", "context.extra.a.a"),  # orjson writes 254 levels at most
        (1000, "mapping", "record: nests objects or arrays too deeply"),  # RecursionError
    ],
)
def test_a_record_orjson_reads_but_too_deep_to_send_is_set_aside(
    sandbox,
    tmp_path,
    depth,
    stage,
    reason,
):
    config = write_config(tmp_path, sandbox.url)
    deep = '{"a":' * depth + "1" + "}" * depth
    line = poisoned_line(1, "context.extra", deep)

    run = run_target(config, three_records(line))

    assert run.returncode == 0, run.stderr
    assert sorted(seqs(sandbox.interactions)) == [0, 2]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [r["stage"] for r in rejects] == [stage]
    assert rejects[0]["reasons"][0].startswith(reason), rejects[0]["reasons"]
    assert run.states[-1] == bookmark(2)
    assert "Traceback" not in run.stderr


def test_integers_beyond_64_bits_stay_exact_ids(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    big_ids = [12345678901234567890123, 12345678901234567890124]
    records = [
        interaction(seq, user_id=user_id, product_ids=[user_id * 10 + 7])
        for seq, user_id in enumerate(big_ids)
    ]
    singer = "\n".join([schema_message(), *map(record_message, records)]) + "\n"

    run = run_target(config, singer)

    assert run.returncode == 0, run.stderr
    delivered = sorted(sandbox.interactions, key=lambda item: item["user_id"])
    assert [item["user_id"] for item in delivered] == [str(n) for n in big_ids]
    assert [item["product_ids"] for item in delivered] == [[str(n * 10 + 7)] for n in big_ids]
    assert read_rejects(tmp_path / "rejects.jsonl") == []


def test_a_big_integer_bookmark_is_written_back_byte_exact(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    state = '{"type": "STATE", "value": {"bookmarks": {"interactions": {"seq": %s}}}}'
    singer = "\n".join(
        [
            schema_message(),
            record_message(interaction(0)),
            state % "123456789012345678901234567890",
        ],
    )

    run = run_target(config, singer + "\n")

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == (
        '{"bookmarks": {"interactions": {"seq": 123456789012345678901234567890}}}'
    )
    assert run.states[-1] == bookmark(123456789012345678901234567890)


_SECRET_RECORD = json.dumps(interaction(9, user_id=PERSONAL))


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("hello, world", "is not valid JSON"),
        (
            '{"type": "RECORD", "stream": "interactions", "record": ' + _SECRET_RECORD[:-2],
            "is not valid JSON",
        ),
        ("[1, 2, 3]", "is a JSON value but not an object"),
        ('{"stream": "interactions", "record": ' + _SECRET_RECORD + "}", "has no 'type'"),
        ('{"type": "RECORD", "record": ' + _SECRET_RECORD + "}", "is a RECORD without a 'stream'"),
        ('{"type": "RECORD", "stream": "interactions"}', "is a RECORD without a 'record'"),
        (
            '{"type": "RECORD", "stream": "other", "record": ' + _SECRET_RECORD + "}",
            "is a RECORD of stream 'other', which no SCHEMA",
        ),
        ('{"type": "GOSSIP", "record": ' + _SECRET_RECORD + "}", "has an unknown message type"),
    ],
)
def test_a_line_that_is_not_a_singer_message_stops_the_run_cleanly(
    sandbox,
    tmp_path,
    bad,
    problem,
):
    config = write_config(tmp_path, sandbox.url)
    lines = [
        schema_message(),
        record_message(interaction(0)),
        record_message(interaction(1)),
        state_message(bookmark(1)),
        bad,  # line 5
        record_message(interaction(2)),
        state_message(bookmark(2)),
    ]

    run = run_target(config, "\n".join(lines) + "\n")

    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert f"Input line 5 {problem}" in errors[0]
    assert "run again" in errors[0]
    assert "Traceback" not in run.stderr
    assert PERSONAL not in run.stderr, "record contents stay out of the log"
    assert run.states == [bookmark(1)], "the STATE before the bad line, none after it"
    assert sorted(seqs(sandbox.interactions)) == [0, 1], "what was read before it is delivered"
