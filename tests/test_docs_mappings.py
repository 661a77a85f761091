"""Every example of docs/mappings.md runs as written, and says what it does.

The YAML blocks, the table of values and the preview commands are read from the doc itself;
a block no test here knows fails ``test_every_example_is_run``. The custom example also runs
through real Meltano (tests/e2e/test_meltano_custom_mapping.py), as does the first preview
command (it needs tap-postgres).
"""

from __future__ import annotations

import collections
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import typing as t
from pathlib import Path

import pytest
import yaml

from target_miso.mappings import MappingError, build_mapping, check_mappings
from tests.helpers import read_rejects, record_message, run_target, schema_message, write_config
from tests.mappings.fixtures import DATA, VALIDATOR, read_singer, run_stream
from tests.mappings.test_declarative import EVENTS_MAPPING

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "mappings.md"
_BLOCK = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def doc_blocks(language: str) -> list[str]:
    """The doc's code blocks in one language, dedented (some sit inside list items)."""
    text = DOC.read_text(encoding="utf-8")
    return [textwrap.dedent(body) for _, lang, body in _BLOCK.findall(text) if lang == language]


def yaml_block(first_line: str) -> t.Any:
    """The one YAML block that starts with this line, parsed."""
    found = [b for b in doc_blocks("yaml") if b.splitlines()[0].strip() == first_line]
    assert len(found) == 1, f"docs/mappings.md has {len(found)} YAML blocks starting {first_line!r}"
    return yaml.safe_load(found[0])


#: The first line of each YAML example, and the test that runs it.
EXAMPLES = {
    "plugins:": "test_the_custom_example_maps_the_events_table",
    "type:": "test_the_rules_example_picks_the_first_matching_type",
    "mappings:": "test_the_mappings_examples_run",
    "page_rules:": "test_the_page_rules_example_types_pages_by_url",
}


def test_every_example_is_run() -> None:
    firsts = [block.splitlines()[0].strip() for block in doc_blocks("yaml")]
    assert sorted(set(firsts)) == sorted(EXAMPLES), "a new example needs a test here"
    assert len(doc_blocks("bash")) == 1


def _custom_example() -> dict[str, t.Any]:
    (loader,) = yaml_block("plugins:")["plugins"]["loaders"]
    assert loader["name"] == "target-miso"
    return loader["config"]["mappings"]


def test_the_custom_example_maps_the_events_table() -> None:
    mappings = _custom_example()
    check_mappings(mappings)
    schema, records = read_singer("custom_events.singer")["public-events"]
    interactions, mapping = run_stream(mappings, "public-events", schema, records)
    # As the mapping tested in tests/mappings/test_declarative.py, which also keeps a note.
    tested = copy.deepcopy(EVENTS_MAPPING)
    del tested["fields"]["context.custom_context.note"]
    expected, _ = run_stream({"public-events": tested}, "public-events", schema, records)
    assert interactions == expected
    assert [i["type"] for i in interactions] == [
        "product_detail_page_view", "add_to_cart", "checkout", "search", "add_to_cart",
    ]  # fmt: skip
    assert interactions[0]["context"] == {
        "page": {"url": "https://shop.example/p/sku-1"},
        "custom_context": {"source": "web"},
    }
    assert interactions[3]["search"] == {"keywords": 'red "running" shoes'}
    assert sum(mapping.skipped.values()) == 3  # heartbeat, a duplicate, an unmapped event


def test_the_rules_example_picks_the_first_matching_type() -> None:
    # The fragment is the `type` of a custom mapping; the shared fields are this test's.
    rules = yaml_block("type:")["type"]
    mapping = build_mapping(
        "clicks",
        {
            "clicks": {
                "preset": "custom",
                "type": rules,
                "fields": {"user_id": "uid", "product_ids": "sku"},
            },
        },
    )
    rows = [
        {"uid": 1, "action": "like", "sku": "a"},
        {"uid": 1, "action": "like", "sku": None},
        {"uid": 2, "action": "rate", "sku": "a", "stars": 9},
        {"uid": 2, "action": "noise", "sku": "a"},
    ]
    assert [i for row in rows for i in mapping.map(row)] == [
        {"type": "like", "user_id": "1", "product_ids": ["a"]},
        {"type": "custom", "user_id": "1", "custom_action_name": "like"},
        {"type": "rate", "user_id": "2", "product_ids": ["a"], "rating": 4.5},
    ]


def _mappings_examples() -> dict[str, dict[str, t.Any]]:
    blocks = [b for b in doc_blocks("yaml") if b.startswith("mappings:")]
    return {
        next(iter(yaml.safe_load(b)["mappings"])): yaml.safe_load(b)["mappings"] for b in blocks
    }


def test_the_mappings_examples_run(tmp_path, monkeypatch, sandbox) -> None:
    examples = _mappings_examples()
    assert sorted(examples) == ["analytics_123456-events_*", "public-events", "segment_shop-*"]
    for mappings in examples.values():
        check_mappings(mappings)
    _ga4_example(examples["analytics_123456-events_*"])
    _segment_example(examples["segment_shop-*"])
    monkeypatch.chdir(tmp_path)  # dedup_store is relative to the working directory
    _dedup_store_example(examples["public-events"], tmp_path, sandbox)


def _ga4_example(mappings: dict[str, t.Any]) -> None:
    schema, records = read_singer("ga4_events.singer")["analytics_123-events_20240501"]
    stream = "analytics_123456-events_20240501"
    interactions, mapping = run_stream(mappings, stream, schema, records)
    types = collections.Counter(i["type"] for i in interactions)
    assert types["watch"] == 1  # video_events: [video_complete]
    assert types["add_to_collection"] == 1  # wishlist_type
    sign_up = {**records[0], "event_name": "sign_up", "items": [{"item_id": "newsletter"}]}
    mapped = [(i["type"], i.get("custom_action_name")) for i in mapping.map(sign_up)]
    assert mapped == [("custom", "sign_up")]  # events: sign_up: custom


def _segment_example(mappings: dict[str, t.Any]) -> None:
    for stream, (schema, records) in read_singer("segment_tables.singer").items():
        interactions, _ = run_stream(mappings, stream, schema, records)
        assert all(VALIDATOR.reasons(i) == [] for i in interactions)
    schema, records = read_singer("segment_tables.singer")["segment_shop-product_reviewed"]
    (rated,) = run_stream(mappings, "segment_shop-product_reviewed", schema, records)[0]
    assert 0 <= rated["rating"] <= 5  # rating_max: 5
    signed_up = build_mapping("segment_shop-signed_up", mappings)
    row = {
        "id": "m9",
        "user_id": "u",
        "event": "Signed Up",
        "event_text": "Signed Up",
        "timestamp": "2024-05-01 10:00:00",
    }
    assert signed_up.map(row) == [
        {
            "type": "custom",
            "custom_action_name": "Signed Up",
            "user_id": "u",
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
    ]


def _dedup_store_example(mappings: dict[str, t.Any], tmp_path: Path, sandbox) -> None:
    # Two incremental runs that both read the boundary row (event 2): it is sent once.
    config = write_config(tmp_path, sandbox.url, mappings=mappings)
    columns = ("event_id", "user_id", "product_id", "occurred_at")
    schema = {"type": "object", "properties": {c: {} for c in columns}}

    def run(ids: list[int]) -> None:
        rows = [
            {"event_id": i, "user_id": "u", "product_id": f"p{i}",
             "occurred_at": f"2024-05-01 10:00:0{i}"}
            for i in ids
        ]  # fmt: skip
        lines = [schema_message("public-events", schema)]
        lines += [record_message(r, "public-events") for r in rows]
        done = run_target(config, "\n".join(lines) + "\n", cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    run([1, 2])
    run([2, 3])
    assert [i["product_ids"] for i in sandbox.interactions] == [["p1"], ["p2"], ["p3"]]
    assert (tmp_path / ".target-miso" / "custom-keys.sqlite").exists()


def test_the_page_rules_example_types_pages_by_url() -> None:
    rules = yaml_block("page_rules:")["page_rules"]
    mappings = {"segment_shop-*": {"preset": "segment", "page_rules": rules}}
    mapping = build_mapping("segment_shop-pages", mappings)

    def page(url: str) -> list[dict[str, t.Any]]:
        row = {"id": url, "anonymous_id": "a", "url": url, "timestamp": "2024-05-01 10:00:00"}
        return mapping.map(row)

    assert page("https://shop.example/product/sku-1?x=1")[0]["product_ids"] == ["sku-1"]
    assert page("https://shop.example/category/shoes/trail")[0]["category"] == ["shoes", "trail"]
    assert page("https://shop.example/")[0]["type"] == "home_page_view"
    (story,) = page("https://shop.example/stories/how-to")
    assert (story["type"], story["product_ids"]) == ("read", ["how-to"])
    assert story["context"]["custom_context"] == {"section": "stories"}
    assert page("https://shop.example/about") == []


# --- The table of values ------------------------------------------------------------------


def _value_rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("| field | the row holds | sent as |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.strip().splitlines()[1:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        rows.append((cells[0], cells[1], cells[2]))
    return rows


def _code(cell: str) -> str:
    return re.findall(r"`([^`]*)`", cell)[0]


def _held(cell: str) -> tuple[object, dict[str, t.Any]]:
    """The value a row holds, and the value spec that reads it (column v, or an expression)."""
    code = _code(cell)
    spec: dict[str, t.Any] = {"expr": code} if "(an expression)" in cell else {"column": "v"}
    for modifier, setting in re.findall(r"with `(\w+): ([^`]*)`", cell):
        spec[modifier] = yaml.safe_load(setting)
    if code.startswith("'"):  # text holding JSON, quoted as Python text
        return code[1:-1], spec
    try:
        return json.loads(code), spec
    except ValueError:
        return code, spec


def _sent(cell: str) -> object:
    code = _code(cell)
    try:
        return json.loads(code)
    except ValueError:
        return code


#: A type that takes the field, and what else it needs.
_TYPES = {"revenue": "checkout", "quantities": "add_to_cart", "category": "category_page_view"}


@pytest.mark.parametrize(("field", "held", "sent"), _value_rows())
def test_each_line_of_the_values_table_holds(field: str, held: str, sent: str) -> None:
    field = _code(field)
    value, spec = _held(held)
    interaction_type = _TYPES.get(field, "like")
    fields: dict[str, t.Any] = {"anonymous_id": {"const": "a"}, field: spec}
    if field not in ("product_ids", "category"):
        fields["product_ids"] = {"const": "p"}
    mapping = build_mapping(
        "s", {"s": {"preset": "custom", "type": interaction_type, "fields": fields}}
    )
    if sent.startswith("set aside: "):
        try:
            (interaction,) = mapping.map({"v": value})
        except MappingError as error:
            assert error.reasons == [_code(sent)]
        else:
            assert VALIDATOR.reasons(interaction) == [_code(sent)]
        return
    (interaction,) = mapping.map({"v": value})
    assert VALIDATOR.reasons(interaction) == []
    assert interaction[field] == _sent(sent)


def test_the_reject_examples_of_the_doc_are_what_the_target_writes(sandbox, tmp_path) -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    every_field = re.search(r"A record set aside lists every field that failed.*?`(\[.*?\])`", text)
    assert every_field is not None
    mapping = {
        "preset": "custom",
        "type": "checkout",
        "fields": {"user_id": "u", "product_ids": "p", "revenue": "price", "timestamp": "ts"},
    }
    config = write_config(tmp_path, sandbox.url, mappings={"s": mapping})
    schema = {"type": "object", "properties": {c: {} for c in ("u", "p", "price", "ts")}}
    row = {"u": "a", "p": "x", "price": "N/A", "ts": "yesterday"}
    done = run_target(config, f"{schema_message('s', schema)}\n{record_message(row, 's')}\n")
    assert done.returncode == 0, done.stderr
    (reject,) = read_rejects(tmp_path / "rejects.jsonl")
    assert reject["reasons"] == json.loads(every_field.group(1))
    null_column = re.search(r"An expression that fails on a null column says so: `(.*?)`", text)
    assert null_column is not None
    fields = {"user_id": "u", "search": {"keywords": 'q.split(" ")'}}
    search = build_mapping("s", {"s": {"preset": "custom", "type": "search", "fields": fields}})
    with pytest.raises(MappingError) as caught:
        search.map({"u": "a", "q": None})
    (reason,) = caught.value.reasons
    shown = null_column.group(1)
    assert reason.startswith(shown.removesuffix("...)"))


# --- The preview commands -------------------------------------------------------------------


def test_the_preview_commands_run_as_written(tmp_path) -> None:
    (block,) = doc_blocks("bash")
    commands = [
        line
        for line in block.replace("\\\n", " ").splitlines()
        if line.startswith(("tap", "python"))
    ]
    assert len(commands) == 3
    (tmp_path / "config.json").write_text(json.dumps({"mappings": _custom_example()}))
    shutil.copy(DATA / "custom_events.singer", tmp_path / "events.singer")
    sample = [
        json.loads(line)["record"]
        for line in (DATA / "custom_events.singer").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["type"] == "RECORD"
    ]
    (tmp_path / "sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sample))
    # `python` is the one running the tests (the first command needs tap-postgres: e2e).
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    outputs = []
    for command in commands[1:]:
        done = subprocess.run(
            ["bash", "-c", command.replace("python ", f"{sys.executable} ", 1)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(
            [json.loads(line)["interaction"]["type"] for line in done.stdout.splitlines()]
        )
    assert outputs[0] == outputs[1] == [
        "product_detail_page_view", "add_to_cart", "checkout", "search", "add_to_cart",
    ]  # fmt: skip
    assert (tmp_path / "rejects.jsonl").read_text() == ""
