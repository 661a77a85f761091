"""The Snowplow preset's rules one at a time: pings, duplicates, options, bad rows."""

from __future__ import annotations

import json

import pytest

from target_miso import samples
from target_miso.mappings import MappingConfigError, MappingError, build_mapping
from target_miso.mappings.snowplow import truncated_ip
from tests.helpers import read_rejects, run_target, write_config
from tests.snowplow.test_layouts import STREAM, singer_lines

RULES = samples.SAMPLE_MAPPING_OPTIONS["page_rules"]


def mapping(**options):
    return build_mapping(STREAM, {STREAM: {"preset": "snowplow", "page_rules": RULES, "dedupe_store": None, **options}}, {})


def rows(*events):
    return samples.render_tsv_shaped(events)


def page_view(number, path="/product/sku-1", page_id="pv-1", seconds=0.0, **atomic):
    return samples._page(number, seconds, path, page_id, **atomic)


def ping(number, seconds, page_id="pv-1"):
    return samples._ping(number, seconds, "/product/sku-1", page_id)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.42", "203.0.113.0"),
        ("198.51.x.x", "198.51.0.0"),
        ("10.x.x.x", "10.0.0.0"),
        ("2001:db8::1", None),
        ("6b3d0c2f8e9a1b2c", None),
        ("300.1.1.1", None),
        ("", None),
        (None, None),
    ],
)
def test_ip_addresses_are_truncated_or_dropped(value, expected):
    assert truncated_ip(value) == expected


@pytest.mark.parametrize(
    "stamp",
    ["2024-05-01 10:00:00.300", "2024-05-01T10:00:00.300", "2024-05-01T10:00:00.300Z",
     "2024-05-01 12:00:00.300+02:00", "2024-05-01T10:00:00.300000+00:00"],
)
def test_timestamp_forms_do_not_matter(stamp):
    row = rows(page_view(1))[0]
    row["derived_tstamp"] = stamp
    found = mapping(ping_duration=False).map(row)
    assert found[0]["timestamp"] == "2024-05-01T10:00:00.300Z"


def test_collector_tstamp_is_used_when_derived_tstamp_is_missing():
    row = rows(page_view(1))[0]
    row["derived_tstamp"] = None
    assert mapping(ping_duration=False).map(row)[0]["timestamp"] == "2024-05-01T10:00:00.500Z"


def test_pings_become_the_duration_of_their_page_view_at_flush():
    preset = mapping()
    assert preset.map(rows(page_view(1))[0]) == [], "held for its pings"
    for row in rows(ping(2, 10), ping(3, 15), ping(4, 20), ping(5, 40)):
        assert preset.map(row) == []
    (held, source), = preset.flush()
    # Heartbeat buckets 1, 1, 2 and 4: 3 distinct, so 10 * (3 - 1) + 5 seconds engaged
    assert held["duration"] == 25
    assert source["event_id"] == samples.render_tsv_shaped([page_view(1)])[0]["event_id"]


def test_a_ping_after_its_page_view_was_flushed_is_counted_not_lost_silently():
    preset = mapping()
    preset.map(rows(page_view(1))[0])
    assert len(preset.flush()) == 1  # a checkpoint
    preset.map(rows(ping(2, 10))[0])
    assert preset.flush() == []
    assert preset.skipped["snowplow: page_ping after its page view was sent, or of an unmapped page"] == 1


def test_without_pings_a_page_view_has_no_duration_and_with_ping_duration_off_is_sent_at_once():
    held = mapping().map(rows(page_view(1))[0])
    direct = mapping(ping_duration=False).map(rows(page_view(1))[0])
    assert held == []
    assert "duration" not in direct[0]


@pytest.mark.parametrize(
    ("source", "expected_types"),
    [
        ("auto", ["product_detail_page_view"]),
        ("page_rules", ["product_detail_page_view"]),
        ("ecommerce", ["product_detail_page_view"]),
        ("both", ["product_detail_page_view", "product_detail_page_view"]),
    ],
)
def test_product_view_source_decides_who_counts_a_product_view(source, expected_types):
    events = [
        page_view(1),
        samples._ecommerce(2, 1, "product_view", [samples._product("sku-1")], "pv-1"),
    ]
    preset = mapping(product_view_source=source, ping_duration=False)
    found = [i for row in rows(*events) for i in preset.map(row)]
    assert [i["type"] for i in found] == expected_types
    if source == "ecommerce":
        assert "page" not in found[0]["context"], "the plugin's event, not the page view"
    if source in ("auto", "page_rules"):
        assert "page" in found[0]["context"], "the page view (it carries the page and duration)"


def test_legacy_order_split_by_a_checkpoint_gives_two_checkouts_with_the_right_lines():
    order = [
        samples.LogicalEvent(samples._event(1, "transaction", 0, tr_orderid="o-9", tr_total="12.5")),
        samples.LogicalEvent(samples._event(2, "transaction_item", 0, ti_orderid="o-9", ti_sku="a", ti_quantity=2)),
    ]
    preset = mapping()
    for row in rows(*order):
        preset.map(row)
    (checkout, _), = preset.flush()
    assert (checkout["product_ids"], checkout["quantities"], checkout["revenue"]) == (["a"], [2], 12.5)


def test_struct_rules_fill_products_quantities_and_ratings():
    preset = mapping(struct_rules=[
        {"category": "cart", "action": "add", "type": "add_to_cart", "quantity": "se_value"},
        {"category": "review", "action": "*", "type": "rate"},
    ])
    cart = samples.LogicalEvent(samples._event(1, "event", 0, se_category="cart", se_action="add",
                                               se_label="sku-1", se_value="2"))
    review = samples.LogicalEvent(samples._event(2, "event", 0, se_category="review", se_action="stars",
                                                 se_label="sku-2", se_value=4.5))
    found = [i for row in rows(cart, review) for i in preset.map(row)]
    assert [(i["type"], i["product_ids"], i.get("quantities"), i.get("rating")) for i in found] == [
        ("add_to_cart", ["sku-1"], [2], None),
        ("rate", ["sku-2"], None, 4.5),
    ]


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({"page_rule": []}, "mappings.atomic-events.page_rule", "unknown option"),
        ({"product_view_source": "url"}, "mappings.atomic-events.product_view_source", "expected one of"),
        ({"struct_rules": [{"category": "x", "action": "y", "type": "wish"}]},
         "mappings.atomic-events.struct_rules[0].type", "not a Miso interaction type"),
        ({"struct_rules": [{"type": "like", "quantity": "se_value"}]},
         "mappings.atomic-events.struct_rules[0].quantity", "has no quantities"),
        ({"ping_heartbeat_seconds": 0}, "mappings.atomic-events.ping_heartbeat_seconds", "positive"),
        ({"page_rules": [{"pattern": "(?P<sku>x)", "type": "read"}]},
         "mappings.atomic-events.page_rules[0].pattern", "named group"),
    ],
)
def test_configuration_mistakes_are_caught_before_any_record(options, path, message):
    with pytest.raises(MappingConfigError, match=message) as raised:
        mapping(**options)
    assert raised.value.path == path


def test_bad_rows_raise_a_mapping_error_naming_the_column():
    row = rows(page_view(1))[0]
    broken_json = {**row, "contexts": '{"schema": "iglu:x", "data": [{'}
    no_id = {**row, "event_id": None}
    with pytest.raises(MappingError) as raised:
        mapping().map(broken_json)
    assert raised.value.field == "contexts"
    with pytest.raises(MappingError) as raised:
        mapping().map(no_id)
    assert raised.value.field == "event_id"


def test_a_bad_row_is_set_aside_with_its_column_and_the_rest_delivered(sandbox, tmp_path):
    good = rows(page_view(1, path="/"), page_view(2, path="/", page_id="pv-2"))
    good[1]["derived_tstamp"] = "yesterday"
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: {"preset": "snowplow", "page_rules": RULES,
                                                                     "dedupe_store": None}})
    run = run_target(config, singer_lines(good))

    assert run.returncode == 0, run.stderr[-2000:]
    assert len(sandbox.interactions) == 1
    (reject,) = read_rejects(tmp_path / "rejects.jsonl")
    assert reject["stream"] == STREAM
    assert reject["stage"] == "mapping"
    assert reject["reasons"][0].startswith("derived_tstamp: ")
    assert reject["record"]["event_id"] == good[1]["event_id"]


def test_events_sent_in_one_run_are_not_sent_again_by_the_next(sandbox, tmp_path):
    """SQL taps re-send the bookmark's boundary row; a re-run after a crash re-sends more."""
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": str(tmp_path / "seen.sqlite")}
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options})
    events = samples.sample_events()
    first, second = rows(*events[:10]), rows(*events[9:])  # the boundary row is in both

    first_run = run_target(config, singer_lines(first))
    sent_first = len(sandbox.interactions)
    second_run = run_target(config, singer_lines(second))
    again = run_target(config, singer_lines(rows(*events)))

    assert first_run.returncode == second_run.returncode == again.returncode == 0
    assert sent_first == 3
    interactions = sorted(sandbox.interactions, key=lambda i: (i["timestamp"], i["type"]))
    assert interactions == samples.expected_interactions(), "each event exactly once"
    assert "       24  snowplow: duplicate event_id\n" in again.stderr
