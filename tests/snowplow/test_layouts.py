"""The same Snowplow events give the same interactions whichever warehouse layout they come in."""

from __future__ import annotations

import json

import pytest

from target_miso import samples
from target_miso.mappings import build_mapping
from target_miso.miso.schema import InteractionValidator
from tests.helpers import read_rejects, run_target, write_config

STREAM = "atomic-events"
LAYOUTS = {
    "tsv-shaped": lambda: samples.render_tsv_shaped(samples.sample_events()),
    "snowflake": lambda: samples.render_snowflake(samples.sample_events()),
    "bigquery": lambda: samples.render_bigquery(samples.sample_events()),
    "bigquery-v1-names": lambda: samples.render_bigquery(
        samples.sample_events(), full_version_names=True
    ),
}


def by_time(interactions: list[dict]) -> list[dict]:
    return sorted(interactions, key=lambda item: (item["timestamp"], item["type"]))


def singer_lines(rows: list[dict]) -> str:
    columns = sorted({column for row in rows for column in row})
    schema = {"type": "object", "properties": {column: {} for column in columns}}
    lines = [
        json.dumps(
            {"type": "SCHEMA", "stream": STREAM, "schema": schema, "key_properties": ["event_id"]}
        )
    ]
    lines += [json.dumps({"type": "RECORD", "stream": STREAM, "record": row}) for row in rows]
    last = rows[-1]["collector_tstamp"]
    lines.append(
        json.dumps(
            {"type": "STATE", "value": {"bookmarks": {STREAM: {"replication_key_value": last}}}}
        )
    )
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_maps_to_exactly_the_expected_interactions(layout):
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}
    mapping = build_mapping(STREAM, {STREAM: options}, {})

    rows = LAYOUTS[layout]()
    interactions = [i for row in rows for i in mapping.map(row)] + [i for i, _ in mapping.flush()]

    assert by_time(interactions) == samples.expected_interactions()
    validator = InteractionValidator()
    assert all(validator.reasons(interaction) == [] for interaction in interactions)
    assert dict(mapping.skipped) == {
        "snowplow: duplicate event_id": 1,
        "page_view: no page rule matched": 1,
        "page_view: product view sent by the e-commerce plugin": 1,
        "page_ping: added to its page view's duration": 5,
        "transaction: grouped into its order's checkout": 1,
        "transaction_item: grouped into its order's checkout": 2,
        "struct: video/seek (no struct rule)": 1,
        "link_click: not mapped": 1,
        "ecommerce checkout_step: no Miso type": 1,
    }


@pytest.mark.parametrize("layout", ["tsv-shaped", "snowflake", "bigquery"])
def test_each_layout_through_the_target_process_reaches_the_api(layout, sandbox, tmp_path):
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": str(tmp_path / "seen.sqlite")}
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options})

    run = run_target(config, singer_lines(LAYOUTS[layout]()))

    assert run.returncode == 0, run.stderr[-3000:]
    assert by_time(sandbox.interactions) == samples.expected_interactions()
    assert read_rejects(tmp_path / "rejects.jsonl") == []
    # The run summary counts skips by event name.
    assert "        1  snowplow: duplicate event_id\n" in run.stderr
    assert "        1  page_view: no page rule matched\n" in run.stderr
    assert len(run.states) == 1


def test_the_preset_is_recognised_without_configuration(sandbox, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default event id store lives in the working directory
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_lines(LAYOUTS["tsv-shaped"]()), cwd=tmp_path)

    assert run.returncode == 0, run.stderr[-3000:]
    # Without page rules, page views are skipped (the e-commerce product view then counts,
    # with its page's engaged time) and struct events have no meaning.
    assert sorted({i["type"] for i in sandbox.interactions}) == [
        "add_to_cart",
        "checkout",
        "click",
        "impression",
        "product_detail_page_view",
        "refund",
        "remove_from_cart",
        "search",
        "watch",
    ]
    (product_view,) = [i for i in sandbox.interactions if i["type"] == "product_detail_page_view"]
    assert product_view["duration"] == 25
    assert (tmp_path / ".target-miso" / "snowplow-event-ids.sqlite").exists()
