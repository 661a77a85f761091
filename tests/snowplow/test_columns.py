"""Column pruning: the Snowplow preset reads only the columns it lists, whatever the layout.

A tap that selects only ``mapping.columns()`` must give exactly the interactions (and the
same run summary) as one that sends every column; the shipped SQL's narrowed views list the
same columns and schemas as the preset.
"""

from __future__ import annotations

import json
import re
import typing as t

import pytest

from target_miso import sample_postgres, samples
from target_miso.mappings import MappingConfigError, build_mapping
from target_miso.mappings.snowplow import columns as snowplow_columns
from tests.helpers import read_rejects, run_target, write_config
from tests.snowplow.test_layouts import LAYOUTS, by_time, singer_lines

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_miso.miso.sandbox import Sandbox

STREAM = "atomic-events"
#: Options that read every option-dependent column (se_label, se_property, se_value) and
#: none of the pings' time, next to the shipped ones and none at all.
OPTIONS = {
    "shipped": samples.SAMPLE_MAPPING_OPTIONS,
    "struct fields, no pings": {
        **samples.SAMPLE_MAPPING_OPTIONS,
        "ping_duration": False,
        "product_view_source": "both",
        "struct_rules": [
            {"category": "product", "action": "like", "type": "like"},
            {
                "category": "video",
                "type": "watch",
                "fields": {
                    "product_ids": ["video-{action}"],
                    "duration": "{value}",
                    "context.custom_context.property": "{property}",
                },
            },
        ],
    },
    "no rules": {"preset": "snowplow"},
}


def _mapping(options: dict[str, t.Any]) -> t.Any:
    return build_mapping(STREAM, {STREAM: {**options, "dedupe_store": None}}, {})


def _mapped(options: dict[str, t.Any], rows: list[dict]) -> tuple[list[dict], dict[str, int]]:
    mapping = _mapping(options)
    interactions = [i for row in rows for i in mapping.map(row)] + [i for i, _ in mapping.flush()]
    return by_time(interactions), dict(mapping.skipped)


def _pruned(rows: list[dict], keep: t.Callable[[str], bool]) -> list[dict]:
    return [{column: value for column, value in row.items() if keep(column)} for row in rows]


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pruned_rows_give_the_same_interactions_as_full_rows(layout: str, options: str) -> None:
    rows = LAYOUTS[layout]()
    columns = _mapping(OPTIONS[options]).columns()
    pruned = _pruned(rows, columns.matches)
    dropped = {column for row in rows for column in row} - {c for row in pruned for c in row}
    assert len(dropped) > 60, "most of the 131 columns stay in the warehouse"

    full = _mapped(OPTIONS[options], rows)

    assert full[0], "the options map something"
    assert _mapped(OPTIONS[options], pruned) == full


def test_wide_layouts_keep_only_the_schemas_the_preset_reads() -> None:
    columns = _mapping(OPTIONS["shipped"]).columns()
    wide = {c for row in samples.render_snowflake(samples.sample_events()) for c in row}
    per_schema = [c for c in wide if c.startswith(("contexts_", "unstruct_"))]
    kept = sorted(c for c in per_schema if columns.matches(c))
    assert "contexts_com_snowplowanalytics_snowplow_web_page_1" in kept
    assert "contexts_com_snowplowanalytics_snowplow_media_player_2" in kept
    # Read by nothing: the link click event, the ua_parser enrichment, the refund entity.
    assert not [c for c in kept if "link_click" in c or "ua_parser" in c or "refund" in c]
    bigquery_v1 = samples.render_bigquery(samples.sample_events(), full_version_names=True)
    assert columns.matches("contexts_com_snowplowanalytics_snowplow_web_page_1_0_0")
    assert {c for row in bigquery_v1 for c in row if columns.matches(c)} > set(columns.names[:5])


def test_the_options_decide_the_option_dependent_columns() -> None:
    shipped = _mapping(OPTIONS["shipped"]).columns().names
    fields = _mapping(OPTIONS["struct fields, no pings"]).columns().names
    assert {"se_label", "dvce_created_tstamp"} <= set(shipped)
    assert not {"se_property", "se_value"} & set(shipped)
    assert {"se_label", "se_property", "se_value"} <= set(fields)
    assert "dvce_created_tstamp" not in fields
    assert "se_label" not in _mapping(OPTIONS["no rules"]).columns().names


@pytest.mark.parametrize(
    ("options", "column"),
    [("shipped", "se_label"), ("shipped", "ti_quantity"), ("struct fields, no pings",
     "se_value"), ("shipped", "contexts"), ("shipped", "page_title")],
)  # fmt: skip
def test_a_listed_column_left_out_changes_the_interactions(options: str, column: str) -> None:
    # The comparison above can fail: each of these columns, when missing, changes the result.
    rows = LAYOUTS["tsv-shaped"]()
    columns = _mapping(OPTIONS[options]).columns()
    pruned = _pruned(rows, lambda name: columns.matches(name) and name != column)
    assert _mapped(OPTIONS[options], pruned) != _mapped(OPTIONS[options], rows)


def test_a_stream_without_a_column_the_options_read_is_named_in_a_warning(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = _pruned(LAYOUTS["tsv-shaped"](), lambda name: name not in ("se_label", "page_title"))
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options})

    run = run_target(config, singer_lines(rows))

    assert run.returncode == 0, run.stderr[-3000:]
    assert (
        f"Stream '{STREAM}' has no column page_title, se_label, which mappings.{STREAM} reads"
        in run.stderr
    )
    assert "python -m target_miso.columns" in run.stderr


# --- payload_column: the row as JSON text in one column -----------------------------------


def _payload_rows(rows: list[dict]) -> list[dict]:
    return [
        {
            "event_id": row["event_id"],
            "collector_tstamp": row["collector_tstamp"],
            "payload": json.dumps(row),
        }
        for row in rows
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rows_held_as_json_text_give_the_same_interactions(layout: str) -> None:
    rows = LAYOUTS[layout]()
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "payload_column": "payload"}
    assert _mapped(options, _payload_rows(rows)) == _mapped(samples.SAMPLE_MAPPING_OPTIONS, rows)
    assert list(_mapping(options).columns()) == ["payload"]


def test_a_payload_that_is_not_json_is_set_aside_naming_the_column(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    rows = _payload_rows(LAYOUTS["tsv-shaped"]())
    rows[7]["payload"] = '{"event_id": "cut short'
    rows[8]["payload"] = "[1, 2]"
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None, "payload_column": "payload"}
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options})

    run = run_target(config, singer_lines(rows))

    assert run.returncode == 0, run.stderr[-3000:]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["reasons"]) for r in rejects] == [
        ("mapping", ["payload: is not valid JSON"]),
        ("mapping", ["payload: not a JSON object: it must hold the event's row (payload_column)"]),
    ]
    assert rejects[0]["record"] == rows[7], "the record as the tap sent it, to re-send later"
    # Rows 7 and 8 are the home page view and its ping: the rest arrives.
    expected = [i for i in samples.expected_interactions() if i["type"] != "home_page_view"]
    assert by_time(sandbox.interactions) == expected


def test_a_payload_column_the_stream_lacks_stops_the_run_at_its_schema() -> None:
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None, "payload_column": "row"}
    schema = {"properties": {"event_id": {}, "collector_tstamp": {}, "payload": {}}}
    with pytest.raises(MappingConfigError) as caught:
        build_mapping(STREAM, {STREAM: options}, schema)
    assert caught.value.path == f"mappings.{STREAM}.payload_column"
    assert "'row' is not a column of stream 'atomic-events'" in caught.value.reason


@pytest.mark.parametrize("value", ["", 3, ["payload"]])
def test_payload_column_must_name_a_column(value: object) -> None:
    with pytest.raises(MappingConfigError) as caught:
        _mapping({"preset": "snowplow", "payload_column": value})
    assert caught.value.path == f"mappings.{STREAM}.payload_column"


# --- The shipped SQL's narrowed views list what the preset reads --------------------------


def _sql_array(name: str) -> list[str]:
    text = sample_postgres.VIEW_SQL.read_text(encoding="utf-8")
    found = re.search(rf"{name} text\[\] := ARRAY\[(.*?)\];", text, re.DOTALL)
    assert found, name
    return re.findall(r"'([^']+)'", found.group(1))


def test_the_view_script_lists_the_presets_columns_and_schemas() -> None:
    assert _sql_array("read_columns") == list(snowplow_columns.ALL_ATOMIC)
    assert _sql_array("read_schemas") == list(snowplow_columns.READ_SCHEMAS)
