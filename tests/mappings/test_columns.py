"""Column pruning for the GA4, Segment, custom and passthrough presets: exactly what they read.

Rows cut down to what ``python -m target_miso.columns`` prints for their stream give the same
interactions, the same rejects (with their reasons) and the same run summary as the full rows;
leaving out one printed column changes something (the comparison can fail); options that read
another column change what is printed. The Snowplow preset's own: tests/snowplow/test_columns.py.
"""

from __future__ import annotations

import copy
import decimal
import functools
import itertools
import json
import re
import typing as t
from pathlib import Path

import pytest

from target_miso.columns import main, stream_columns, table_columns
from target_miso.mappings import MappingError, build_mapping
from target_miso.mappings.segment import snake_case
from tests.helpers import read_rejects, run_target, write_config
from tests.mappings import test_ga4, test_segment
from tests.mappings.fixtures import DATA, read_singer
from tests.mappings.test_declarative import EVENTS_MAPPING

if t.TYPE_CHECKING:
    from target_miso.miso.sandbox import Sandbox

Rows = list[dict[str, t.Any]]
Outcome = tuple[list[dict[str, t.Any]], list[tuple[int, list[str]]], dict[str, int]]

ROOT = Path(__file__).resolve().parents[2]


def _printed(mappings: dict[str, t.Any], stream: str) -> list[str]:
    columns, _ = stream_columns(mappings, stream)
    return columns


def _pruned(rows: Rows, printed: list[str], leave_out: str | None = None) -> Rows:
    kept = []
    for row in rows:
        keep = set(table_columns(printed, row)) - {leave_out}
        kept.append({column: value for column, value in row.items() if column in keep})
    return kept


def _outcome(mappings: dict[str, t.Any], stream: str, rows: Rows) -> Outcome:
    """Map the rows with a fresh mapping: interactions, rejects by row, the run summary."""
    mapping = build_mapping(stream, mappings)
    interactions, rejects = [], []
    for index, row in enumerate(copy.deepcopy(rows)):
        try:
            interactions += mapping.map(row)
        except MappingError as error:
            rejects.append((index, error.reasons))
    interactions += [interaction for interaction, _ in mapping.flush()]
    mapping.close()
    return interactions, rejects, dict(mapping.skipped)


# --- The cases: each preset's fixtures and sample rows, with rows that are set aside -----

GA4 = "analytics_123-events_20240501"
GA4_ALL_OPTIONS = {
    "preset": "ga4",
    "page_rules": test_ga4.PAGE_RULES,
    "wishlist_type": "bookmark",
    "video_events": ["video_start", "video_progress", "video_complete"],
    "video_id_param": "video_title",
    "events": {"begin_checkout": "checkout", "session_start": "skip", "sign_up": "custom"},
}


def _ga4_rows() -> Rows:
    _, fixture = read_singer("ga4_events.singer")[GA4]
    export = test_ga4.EXPORT_ROWS
    row = export[1]
    late = {**row, "event_timestamp": None, "event_ts": "2024-05-01T10:00:00Z"}
    rejected = [
        {**row, "event_timestamp": "yesterday"},
        {**row, "items": [{"item_id": "SKU_1"}, "SKU_2"]},
        {**row, "event_params": {"page_location": "/"}},
        {**test_ga4._as_json_text(row), "ecommerce": "{cut short"},
    ]
    json_text = [test_ga4._as_json_text(row) for row in export]
    return [*fixture, *export, *json_text, late, *rejected]


SEGMENT_RULES = [
    {"pattern": r"^/p/(?P<product_id>[^/]+)", "type": "product_detail_page_view"},
    {"pattern": r"^/$", "type": "home_page_view"},
    {"pattern": r"^/product/(?P<product_id>[^/]+)", "type": "product_detail_page_view"},
]
SEGMENT_OPTIONS = {
    "preset": "segment",
    "page_rules": SEGMENT_RULES,
    "events": {"Signed Up": "custom", "Product Shared": "skip"},
}


def _segment_rows() -> dict[str, Rows]:
    """Rows by table: the fixture's, the Spec's examples, rows that are set aside."""
    by_table: dict[str, Rows] = {
        stream.rsplit("-", 1)[1]: records
        for stream, (_, records) in read_singer("segment_tables.singer").items()
    }
    spec = test_segment
    ids = itertools.count()

    def row(event_text: str, **properties: object) -> dict[str, t.Any]:
        # A message id of its own: the same id twice is skipped as read twice.
        return {**spec._row(event_text, **properties), "id": f"spec-{next(ids)}"}

    product = {**spec.PRODUCT, "currency": "usd", "value": 18.99}
    for event_text in ("Product Viewed", "Product Added", "Product Reviewed", "Signed Up"):
        rows = by_table.setdefault(snake_case(event_text), [])
        rows.append(row(event_text, **product, rating=8))
        rows.append(row(event_text, sku="G-32", rating="great"))  # a rate without number
    by_table["order_completed"] += [
        {**spec._order("product_id", "stringified"), "id": "order-1"},
        {**spec._order("productId", "native"), "id": "order-2"},
        row("Order Completed", total=10, products='[{"product_id": "a"}, "b"]'),
        row("Order Completed", total=10, products="[{cut short"),
        row("Order Completed", revenue=10, products='[{"sku": "x", "quantity": 2}]'),
    ]
    by_table["video_content_completed"] = [
        row("Video Content Completed", asset_id="0129370", position=3600),
    ]
    page = row("", url=f"https://www.example.com/product/{spec.MONOPOLY}", title="M")
    by_table["pages"].append({**page, "id": "msg-page-2", "referrer": "https://x.example/"})
    return by_table


CUSTOM = "public-events"
#: The ordered rules of tests/mappings/test_declarative.py, with expressions of every form.
CUSTOM_RULES = {
    "preset": "custom",
    "filter": "'noise' not in record and kind != 'ignore'",
    "dedup_key": "record['event id']",
    "type": [
        {"when": "action == 'like' and sku", "type": "like"},
        {"when": "action == 'rate'", "type": "rate", "fields": {"rating": "float(stars) / 2"}},
        {"when": "_.action == 'view'", "type": "product_detail_page_view"},
        {"when": "action == 'browse'", "type": "category_page_view"},
        {
            "type": "custom",
            "fields": {"custom_action_name": {"expr": "record.get('Action Name')", "default": "x"}},
        },
    ],
    "fields": {
        "user_id": "md5(email) if email else None",
        "anonymous_id": {"column": "visitor id"},
        "product_ids": {"expr": "sku or [p['id'] for p in json.loads(basket)]"},
        "timestamp": {"column": "ts", "epoch": "ms"},
        "category": {"column": "path", "split": "/"},
        "context": {"custom_context": {"meta": {"column": "meta", "json": True}}},
    },
}
#: The docs' events mapping with its type map read from an expression.
CUSTOM_MAP = {
    **EVENTS_MAPPING,
    "type": {"expr": "event_name.lower()", "map": EVENTS_MAPPING["type"]["map"]},
}


def _custom_rule_rows() -> Rows:
    base = {
        "event id": 1, "email": "a@b.c", "visitor id": "v1", "ts": 1714557600123, "kind": "web",
        "path": "/shoes/trail/", "meta": '{"ab": 1}', "basket": '[{"id": "b1"}]',
        "Action Name": "Signed Up", "unread": "x" * 10, "_sdc_batched_at": "2024-05-01",
    }  # fmt: skip
    rows = [
        {**base, "action": "like", "sku": 10},
        {**base, "event id": 2, "action": "like", "sku": None},
        {**base, "event id": 3, "action": "rate", "sku": "a", "stars": decimal.Decimal("7")},
        {**base, "event id": 4, "action": "rate", "sku": "a", "stars": None},  # set aside
        {**base, "event id": 5, "action": "view", "sku": "a", "meta": "{oops"},  # set aside
        {**base, "event id": 5, "action": "view", "sku": "a"},  # a duplicate key
        {**base, "event id": 6, "action": "view", "sku": None, "kind": "ignore"},
        {**base, "event id": 7, "action": "view", "sku": None, "noise": True},
        {**base, "event id": 8, "action": "other", "sku": None, "email": None},
        {**base, "event id": 9, "action": "view", "sku": None, "basket": None},  # set aside
        {**base, "event id": 10, "action": "browse", "sku": None},
        {**base, "event id": 11, "action": "browse", "sku": None, "path": ["a"]},  # set aside
    ]
    return rows


def _custom_event_rows() -> Rows:
    _, records = read_singer("custom_events.singer")[CUSTOM]
    extra = {"comment": "not read", "_sdc_extracted_at": "2024-05-01T11:00:00Z"}
    failing = {**records[1], "event_id": "e9", "occurred_at": "yesterday", "quantity": -1}
    return [{**row, **extra} for row in [*records, failing]]


def _passthrough_rows() -> Rows:
    lines = (ROOT / "tests" / "data_files" / "interactions_passthrough.singer").read_text()
    records = [json.loads(line)["record"] for line in lines.splitlines() if '"RECORD"' in line]
    bad = {**records[0], "event_id": "e9", "timestamp": "yesterday", "warehouse_id": 5}
    return [*records, bad]


#: id -> (mappings, stream, rows).
CASES: dict[str, tuple[dict[str, t.Any], str, t.Callable[[], Rows]]] = {
    "ga4": ({"analytics_*": {"preset": "ga4", "page_rules": test_ga4.PAGE_RULES}}, GA4, _ga4_rows),
    "ga4, every option": ({GA4: GA4_ALL_OPTIONS}, GA4, _ga4_rows),
    **{
        f"segment {table}": (
            {"segment_shop-*": SEGMENT_OPTIONS},
            f"segment_shop-{table}",
            functools.partial(lambda table: _segment_rows()[table], table),
        )
        for table in sorted(_segment_rows())
    },
    "segment order_completed, product_id_keys sku": (
        {"shop-*": {"preset": "segment", "product_id_keys": ["sku"], "revenue_columns": "revenue"}},
        "shop-order_completed",
        lambda: _segment_rows()["order_completed"],
    ),
    "custom, the docs' events mapping": ({CUSTOM: EVENTS_MAPPING}, CUSTOM, _custom_event_rows),
    "custom, type from an expression": ({CUSTOM: CUSTOM_MAP}, CUSTOM, _custom_event_rows),
    "custom, rules and record": ({CUSTOM: CUSTOM_RULES}, CUSTOM, _custom_rule_rows),
    "passthrough": ({"interactions": {"preset": "passthrough"}}, "interactions", _passthrough_rows),
}


@pytest.mark.parametrize("case", CASES)
def test_rows_pruned_to_the_printed_columns_give_the_same_interactions_and_rejects(
    case: str,
) -> None:
    mappings, stream, rows_of = CASES[case]
    rows = rows_of()
    printed = _printed(mappings, stream)
    assert printed != ["*"], "the preset lists its columns"
    pruned = _pruned(rows, printed)
    dropped = {c for row in rows for c in row} - {c for row in pruned for c in row}
    assert dropped, "some columns stay in the warehouse"

    full = _outcome(mappings, stream, rows)

    assert full[0] or full[2], "the rows map to something"
    assert _outcome(mappings, stream, pruned) == full


@pytest.mark.parametrize("preset", ["ga4", "segment", "custom", "passthrough"])
def test_the_cases_give_interactions_rejects_and_skips(preset: str) -> None:
    # So that the comparison above covers all three, in each preset.
    outcomes = [
        _outcome(mappings, stream, rows_of())
        for case, (mappings, stream, rows_of) in CASES.items()
        if case.startswith(preset)
    ]
    assert sum(len(interactions) for interactions, _, _ in outcomes) >= 5
    assert any(rejects for _, rejects, _ in outcomes), "a row set aside"
    assert any(skipped for _, _, skipped in outcomes) or preset == "passthrough"


@pytest.mark.parametrize(
    ("case", "column"),
    [
        ("ga4", "event_ts"), ("ga4", "collected_traffic_source"), ("ga4", "ecommerce"),
        ("ga4, every option", "event_params"), ("segment order_completed", "products"),
        ("segment order_completed", "total"), ("segment pages", "url"),
        ("segment pages", "referrer"), ("segment product_reviewed", "rating"),
        ("segment order_completed, product_id_keys sku", "revenue"),
        ("segment order_completed", "id"), ("custom, the docs' events mapping", "event_id"),
        ("custom, rules and record", "event id"), ("custom, rules and record", "noise"),
        ("custom, rules and record", "Action Name"), ("custom, rules and record", "visitor id"),
        ("custom, rules and record", "basket"), ("custom, type from an expression", "items"),
        ("passthrough", "timestamp"),
    ],
)  # fmt: skip
def test_a_printed_column_left_out_changes_the_outcome(case: str, column: str) -> None:
    mappings, stream, rows_of = CASES[case]
    rows = rows_of()
    printed = _printed(mappings, stream)
    assert column in printed
    pruned = _pruned(rows, printed, leave_out=column)
    assert _outcome(mappings, stream, pruned) != _outcome(mappings, stream, rows)


# --- What the command prints, and how options change it ----------------------------------


def _run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mappings: dict, stream: str
) -> tuple[list[str], str]:
    """Run the command: what it prints, and its note."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mappings": mappings}))
    assert main(["--config", str(config), "--stream", stream]) == 0
    out, err = capsys.readouterr()
    return out.splitlines(), err.strip()


def test_the_ga4_preset_prints_the_export_columns_it_reads_whatever_its_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    printed, note = _run(capsys, tmp_path, {"ga": {"preset": "ga4"}}, "ga")
    assert printed == [
        "event_timestamp", "event_name", "event_params", "user_id", "user_pseudo_id", "device",
        "collected_traffic_source", "ecommerce", "items", "event_ts",
    ]  # fmt: skip
    assert note == ""
    # Its options choose events and event_params keys: no other column.
    assert _run(capsys, tmp_path, {"ga": GA4_ALL_OPTIONS}, "ga")[0] == printed


def test_segment_options_that_name_columns_change_what_is_printed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stream = "shop-order_completed"
    shipped, _ = _run(capsys, tmp_path, {"shop-*": {"preset": "segment"}}, stream)
    assert {"product_id", "sku", "total", "revenue", "products", "context_ip"} <= set(shipped)
    assert not {"url", "title", "context_page_path", "sent_at"} & set(shipped)
    options = {"preset": "segment", "product_id_keys": ["SKU", "productId"],
               "revenue_columns": ["order_amount"]}  # fmt: skip
    chosen, _ = _run(capsys, tmp_path, {"shop-*": options}, stream)
    assert set(chosen) - set(shipped) == {"order_amount"}
    assert set(shipped) - set(chosen) == {"total", "revenue"}
    assert chosen.index("sku") < chosen.index("product_id"), "best first, as snake_cased"
    assert _run(capsys, tmp_path, {"shop-*": {"preset": "segment", "product_id_keys": ["sku"]}},
                stream)[0] == [c for c in shipped if c != "product_id"]  # fmt: skip


def test_segment_pages_read_the_page_and_tables_without_interactions_read_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mappings = {"shop-*": {"preset": "segment"}}
    pages, _ = _run(capsys, tmp_path, mappings, "shop-pages")
    assert pages[-3:] == ["url", "referrer", "title"]
    assert not {"products", "event", "query"} & set(pages)
    for table in ("tracks", "identifies", "users"):
        printed, note = _run(capsys, tmp_path, mappings, f"shop-{table}")
        assert printed == []
        assert note == "the segment preset maps no row of this stream and reads no column"


def test_a_custom_field_adds_its_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    printed, note = _run(capsys, tmp_path, {CUSTOM: EVENTS_MAPPING}, CUSTOM)
    assert printed == [
        "anonymous_id", "event_id", "event_name", "items", "note", "occurred_at", "order_total",
        "page_url", "product_id", "quantity", "search_query", "user_id",
    ]  # fmt: skip
    assert note == ""
    more = copy.deepcopy(EVENTS_MAPPING)
    more["fields"]["context.custom_context.channel"] = "utm['channel'] if utm else None"
    more["type"]["map"]["search"]["fields"]["search.filters.brand"] = {"column": "brand name"}
    added, _ = _run(capsys, tmp_path, {CUSTOM: more}, CUSTOM)
    assert set(added) - set(printed) == {"utm", "brand name"}


def test_custom_record_access_by_constant_names_reads_those_columns() -> None:
    options = {
        "preset": "custom",
        "type": "home_page_view",
        "fields": {
            "anonymous_id": "record['visitor id']",
            "user_id": "_.get('user id') or record.uid",
            "context": {"custom_context": {
                "a": "'flag a' in record", "b": "'flag b' not in _", "c": "record['c']['d']",
                "e": "[x['k'] for x in items if x is not None]", "f": "json.loads(meta)['g']",
            }},
        },
    }  # fmt: skip
    assert _printed({"s": options}, "s") == [
        "c", "flag a", "flag b", "items", "meta", "uid", "user id", "visitor id",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "how"),
    [
        ("list(record.keys())", "'record'"),
        ("json.dumps(record)", "'record'"),
        ("record[str(kind)]", "'record'"),
        ("record.get(kind)", "'record'"),
        ("[v for k, v in _.items() if k.startswith('utm_')]", "'_'"),
        ("[_ for _ in items]", "'_'"),
    ],
)
def test_custom_expressions_that_use_the_whole_record_print_every_column(
    expression: str, how: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    options = copy.deepcopy(EVENTS_MAPPING)
    options["fields"]["context.custom_context.extra"] = expression
    printed, note = _run(capsys, tmp_path, {CUSTOM: options}, CUSTOM)
    assert printed == ["*"]
    assert note == (
        f"mappings.{CUSTOM}.fields.context.custom_context.extra: it uses {how} as a whole, not "
        "by a constant column name, so any column may be read: select every column"
    )


def test_printing_columns_opens_no_key_store_of_a_custom_mapping(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = tmp_path / "keys" / "custom-keys.sqlite"
    store.parent.mkdir()
    options = {**EVENTS_MAPPING, "dedup_store": str(store)}
    printed, _ = _run(capsys, tmp_path, {CUSTOM: options}, CUSTOM)
    assert "event_id" in printed
    assert not list(store.parent.iterdir()), "no store created where the pipeline keeps it"
    bad = _run_failing(tmp_path, {CUSTOM: {**EVENTS_MAPPING, "dedup_store": 5}}, capsys)
    assert f"mappings.{CUSTOM}.dedup_store: expected a file path or null" in bad


def _run_failing(tmp_path: Path, mappings: dict, capsys: pytest.CaptureFixture[str]) -> str:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mappings": mappings}))
    assert main(["--config", str(config), "--stream", CUSTOM]) == 2
    return capsys.readouterr().err


def test_the_docs_say_what_the_custom_example_prints() -> None:
    text = (ROOT / "docs" / "mappings.md").read_text(encoding="utf-8")
    found = re.search(r"`public-events` example above it\s+prints: ((?:`[^`]+`(?:,\s+)?)+)", text)
    assert found, "docs/mappings.md shows the custom example's columns"
    shown = re.findall(r"`([^`]+)`", found.group(1))
    from tests.test_docs_mappings import _custom_example  # noqa: PLC0415 - one test

    mappings = _custom_example()
    assert shown == _printed(mappings, "public-events")


# --- Through the real target: pruned Singer input, same deliveries and rejects -------------


def _singer(name: str, prune: bool) -> str:
    """The fixture's messages; pruned: as a tap selecting the printed columns sends them."""
    lines = []
    keys: dict[str, list[str]] = {}
    for line in _with_rejects(name).splitlines():
        message = json.loads(line)
        if prune and message["type"] in ("SCHEMA", "RECORD"):
            stream = message["stream"]
            # A tap always sends the stream's key properties (Meltano: automatic inclusion).
            keys.setdefault(stream, message.get("key_properties") or [])
            printed = [*_printed(_FILE_MAPPINGS[name], stream), *keys[stream]]
            if message["type"] == "SCHEMA":
                properties = message["schema"]["properties"]
                keep = table_columns(printed, properties)
                message["schema"]["properties"] = {c: properties[c] for c in keep}
            else:
                message["record"] = _pruned([message["record"]], printed)[0]
        lines.append(json.dumps(message))
    return "\n".join(lines) + "\n"


def _with_rejects(name: str) -> str:
    """The fixture with, after each stream's first record, a copy that is set aside."""
    stream, changes = _REJECTED[name]
    lines = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        lines.append(line)
        message = json.loads(line)
        if message["type"] == "RECORD" and message["stream"] == stream and changes:
            message["record"].update(changes)
            lines.append(json.dumps(message))
            changes = {}
    return "\n".join(lines) + "\n"


#: A change to a record of each fixture that sets it aside.
_REJECTED: dict[str, tuple[str, dict[str, t.Any]]] = {
    "ga4_events.singer": (GA4, {"event_params": "[{cut short"}),
    "segment_tables.singer": ("segment_shop-order_completed", {"id": "x", "products": "[1]"}),
    "custom_events.singer": (CUSTOM, {"event_id": "x", "occurred_at": "yesterday"}),
}
_FILE_MAPPINGS = {
    "ga4_events.singer": {"analytics_*": {"preset": "ga4"}},
    "segment_tables.singer": {"segment_shop-*": SEGMENT_OPTIONS},
    "custom_events.singer": {CUSTOM: EVENTS_MAPPING},
}


@pytest.mark.parametrize("name", sorted(_FILE_MAPPINGS))
def test_the_target_delivers_the_same_from_pruned_input(
    name: str, sandbox: Sandbox, tmp_path: Path
) -> None:
    delivered = []
    for prune in (False, True):
        sandbox.reset()
        out = tmp_path / ("pruned" if prune else "full")
        out.mkdir()
        config = write_config(out, sandbox.url, mappings=_FILE_MAPPINGS[name])
        run = run_target(config, _singer(name, prune), cwd=out)
        assert run.returncode == 0, run.stderr[-3000:]
        rejects = [(r["stage"], r["reasons"]) for r in read_rejects(out / "rejects.jsonl")]
        # Batches of several streams are delivered concurrently: compare in a stable order.
        interactions = sorted(sandbox.interactions, key=lambda i: json.dumps(i, sort_keys=True))
        delivered.append((interactions, sorted(rejects)))
    assert delivered[0][0], "something was delivered"
    assert delivered[0][1], "something was set aside"
    assert delivered[1] == delivered[0]
