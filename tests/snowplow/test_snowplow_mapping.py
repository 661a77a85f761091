"""The Snowplow preset's rules one at a time: pings, duplicates, options, bad rows."""

from __future__ import annotations

import json

import pytest

from target_miso import samples
from target_miso.mappings import MappingConfigError, MappingError, build_mapping
from target_miso.mappings.snowplow.common import CLIENT_SESSION
from target_miso.mappings.snowplow.event import SnowplowEvent
from target_miso.mappings.snowplow.preset import WEB_PAGE, truncated_ip
from tests.helpers import read_rejects, run_target, write_config
from tests.snowplow.test_layouts import STREAM, singer_lines

RULES = samples.SAMPLE_MAPPING_OPTIONS["page_rules"]


def mapping(**options):
    return build_mapping(
        STREAM,
        {STREAM: {"preset": "snowplow", "page_rules": RULES, "dedupe_store": None, **options}},
        {},
    )


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
        ("203.0.113.x", "203.0.113.0"),
        ("::ffff:203.0.113.42", "203.0.113.0"),
        ("2001:db8::1", None),
        ("2001:db8:x:x:x:x:x:x", None),
        ("6b3d0c2f8e9a1b2c", None),
        ("300.1.1.1", None),
        ("1.2.3", None),
        ("1.2.3.4.5", None),
        ("a.b.c.d", None),
        ("", None),
        (None, None),
    ],
)
def test_ip_addresses_are_truncated_or_dropped(value, expected):
    assert truncated_ip(value) == expected


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-05-01 10:00:00.300",
        "2024-05-01T10:00:00.300",
        "2024-05-01T10:00:00.300Z",
        "2024-05-01 12:00:00.300+02:00",
        "2024-05-01T10:00:00.300000+00:00",
    ],
)
def test_timestamp_forms_do_not_matter(stamp):
    row = rows(page_view(1, path="/"))[0]
    row["derived_tstamp"] = stamp
    found = mapping(ping_duration=False).map(row)
    assert found[0]["timestamp"] == "2024-05-01T10:00:00.300Z"


def test_collector_tstamp_is_used_when_derived_tstamp_is_missing():
    row = rows(page_view(1, path="/"))[0]
    row["derived_tstamp"] = None
    assert mapping(ping_duration=False).map(row)[0]["timestamp"] == "2024-05-01T10:00:00.500Z"


def test_json_columns_may_come_parsed_or_as_text():
    """tap-postgres gives JSONB as dicts; a TSV file or a text column gives JSON text."""
    event = samples._ecommerce(1, 0, "add_to_cart", [samples._product("sku-1", quantity=3)], "pv-1")
    as_text = rows(event)[0]
    parsed = {**as_text, **{c: json.loads(as_text[c]) for c in ("contexts", "unstruct_event")}}
    assert mapping().map(parsed) == mapping().map(as_text)
    assert mapping().map(parsed)[0]["quantities"] == [3]


def test_events_sharing_a_contexts_text_keep_their_own_derived_entities():
    """Parsed contexts are shared between events with the same text (pings repeat it)."""
    first, second = rows(
        samples._ping(1, 0, "/", "pv-1"),
        samples._ping(2, 1, "/", "pv-1"),
    )
    assert first["contexts"] == second["contexts"]
    first["derived_contexts"] = json.dumps({
        "schema": samples._CONTEXTS,
        "data": [{"schema": samples.CLIENT_SESSION, "data": {"userId": "from-derived"}}],
    })  # fmt: skip
    assert SnowplowEvent(first).entity(CLIENT_SESSION) == {"user_id": "from-derived"}
    assert SnowplowEvent(first).entity(WEB_PAGE) == {"id": "pv-1"}
    assert SnowplowEvent(second).entity(CLIENT_SESSION) == {}, "not left behind by the first event"
    assert SnowplowEvent(second).entity(WEB_PAGE) == {"id": "pv-1"}


def test_pings_become_the_duration_of_their_page_view_at_flush():
    preset = mapping()
    assert preset.map(rows(page_view(1))[0]) == [], "held for its pings"
    for row in rows(ping(2, 10), ping(3, 15), ping(4, 20), ping(5, 40)):
        assert preset.map(row) == []
    ((held, source),) = preset.flush()
    # Heartbeat buckets 1, 1, 2 and 4: 3 distinct, so 10 * (3 - 1) + 5 seconds engaged
    assert held["duration"] == 25
    assert source["event_id"] == samples.render_tsv_shaped([page_view(1)])[0]["event_id"]


def test_a_ping_after_its_page_view_was_flushed_is_counted_not_lost_silently():
    preset = mapping()
    preset.map(rows(page_view(1))[0])
    assert len(preset.flush()) == 1  # a checkpoint
    preset.map(rows(ping(2, 10))[0])
    assert preset.flush() == []
    assert preset.skipped["page_ping: page view already sent"] == 1


def test_pings_of_an_unmapped_page_and_of_an_unseen_page_are_counted_apart():
    preset = mapping()
    preset.map(rows(page_view(1, path="/about", page_id="pv-about"))[0])
    preset.map(rows(ping(2, 10, page_id="pv-about"))[0])
    preset.map(rows(ping(3, 10, page_id="pv-elsewhere"))[0])
    assert preset.flush() == []
    preset.map(rows(ping(4, 20, page_id="pv-about"))[0])
    assert dict(preset.skipped) == {
        "page_view: no page rule matched": 1,
        "page_ping: page view not mapped": 2,
        "page_ping: page view not seen": 1,
    }


def test_a_ping_whose_page_view_was_forgotten_gets_its_own_reason():
    preset = mapping()
    preset.map(rows(page_view(1, page_id="pv-first"))[0])
    assert len(preset.flush()) == 1
    preset.map(rows(ping(2, 10, page_id="pv-first"))[0])  # still remembered
    later = rows(*(page_view(10 + n, path="/about", page_id=f"pv-{n}") for n in range(20_000)))
    for row in later:
        preset.map(row)
    assert preset.flush() == []
    preset.map(rows(ping(4, 20, page_id="pv-first"))[0])  # pushed out by 20,000 later pages
    preset.map(rows(ping(5, 20, page_id="pv-0"))[0])  # the oldest of them is still there
    preset.map(rows(ping(6, 20, page_id="pv-never"))[0])
    assert dict(preset.skipped) == {
        "page_view: no page rule matched": 20_000,
        "page_ping: page view already sent": 1,
        "page_ping: page view forgotten (20,000 or more closed page views later)": 1,
        "page_ping: page view not mapped": 1,
        "page_ping: page view not seen": 1,
    }


def copy_of_page_view(derived, user):
    # A copy of page view 1: same event_id and collector_tstamp, its own derived_tstamp.
    return page_view(1, derived_tstamp=samples._at(derived), user_id=user)


@pytest.mark.parametrize("order", ["earlier first", "later first"])
def test_of_two_held_copies_of_a_page_view_the_earliest_derived_tstamp_is_sent(order):
    copies = [copy_of_page_view(0.3, "earlier"), copy_of_page_view(4.0, "later")]
    if order == "later first":
        copies.reverse()
    first, second = rows(*copies)
    assert first["collector_tstamp"] == second["collector_tstamp"]
    preset = mapping()
    assert preset.map(first) == preset.map(second) == []
    ((held, _),) = preset.flush()
    assert held["user_id"] == "earlier"
    assert held["timestamp"] == "2024-05-01T10:00:00.300Z"
    assert preset.skipped["snowplow: duplicate event_id"] == 1


def test_a_tie_keeps_the_first_copy_and_a_copy_after_the_flush_is_dropped():
    preset = mapping()
    for row in rows(copy_of_page_view(0.3, "first"), copy_of_page_view(0.3, "second")):
        preset.map(row)
    ((held, _),) = preset.flush()
    assert held["user_id"] == "first"
    preset.map(rows(copy_of_page_view(0.1, "after the flush"))[0])
    assert preset.flush() == [], "the first copy was already handed over: dropped"
    assert preset.skipped["snowplow: duplicate event_id"] == 2


def test_without_pings_a_page_view_has_no_duration_and_with_ping_duration_off_is_sent_at_once():
    held = mapping().map(rows(page_view(1, path="/"))[0])
    direct = mapping(ping_duration=False)
    sent = direct.map(rows(page_view(1, path="/"))[0])
    assert held == []
    assert sent[0]["type"] == "home_page_view"
    assert "duration" not in sent[0]
    assert direct.map(rows(ping(2, 10))[0]) == []
    assert direct.skipped["page_ping: ping_duration is off"] == 1


def product_page_with_plugin_view(plugin_first=False):
    events = [
        page_view(1),
        ping(2, 10),
        ping(3, 20),
        samples._ecommerce(
            4,
            1,
            "product_view",
            [samples._product("sku-1")],
            "pv-1",
            page_url="https://shop.example/product/sku-1",
        ),
    ]
    return rows(*(events[3:] + events[:3] if plugin_first else events))


def run_all(preset, source_rows):
    return [i for row in source_rows for i in preset.map(row)] + [i for i, _ in preset.flush()]


@pytest.mark.parametrize("plugin_first", [False, True])
def test_product_view_source_ecommerce_sends_the_plugin_view_once_with_the_page_duration(
    plugin_first,
):
    preset = mapping()  # the default: ecommerce
    found = run_all(preset, product_page_with_plugin_view(plugin_first))
    (view,) = found
    plugin_event_id = product_page_with_plugin_view()[3]["event_id"]
    assert (view["type"], view["product_ids"], view["duration"]) == (
        "product_detail_page_view",
        ["sku-1"],
        15,
    )
    assert view["timestamp"] == "2024-05-01T10:00:01.300Z", "the plugin event's time"
    assert preset.skipped["page_view: product view sent by the e-commerce plugin"] == 1
    assert plugin_event_id


def test_product_view_source_ecommerce_keeps_url_rule_views_of_pages_without_the_plugin():
    preset = mapping(ping_duration=False)
    assert preset.map(rows(page_view(1))[0]) == [], "held until the flush, waiting for the plugin"
    (view,) = [i for i, _ in preset.flush()]
    assert (view["type"], view["product_ids"], view["context"]["page"]["title"]) == (
        "product_detail_page_view",
        ["sku-1"],
        "Shop /product/sku-1",
    )
    assert "duration" not in view


def test_product_view_source_page_rules_ignores_the_plugin_product_view():
    preset = mapping(product_view_source="page_rules")
    (view,) = run_all(preset, product_page_with_plugin_view())
    assert view["context"]["page"]["title"] == "Shop /product/sku-1", "the page view"
    assert view["duration"] == 15
    assert preset.skipped["ecommerce product_view: product_view_source is page_rules"] == 1


def test_product_view_source_both_sends_both():
    preset = mapping(product_view_source="both")
    found = run_all(preset, product_page_with_plugin_view())
    assert sorted((i["timestamp"], i.get("duration")) for i in found) == [
        ("2024-05-01T10:00:00.300Z", 15),
        ("2024-05-01T10:00:01.300Z", None),
    ]


def test_a_plugin_product_view_without_page_is_sent_at_once():
    event = samples._ecommerce(
        1, 0, "product_view", [samples._product("sku-1")], None, platform="mob"
    )
    (view,) = mapping().map(rows(event)[0])
    assert view["product_ids"] == ["sku-1"]


def test_legacy_order_split_by_a_checkpoint_gives_two_checkouts_with_the_right_lines():
    order = [
        samples.LogicalEvent(
            samples._event(1, "transaction", 0, tr_orderid="o-9", tr_total="12.5")
        ),
        samples.LogicalEvent(
            samples._event(2, "transaction_item", 0, ti_orderid="o-9", ti_sku="a", ti_quantity=2)
        ),
    ]
    preset = mapping()
    for row in rows(*order):
        preset.map(row)
    ((checkout, _),) = preset.flush()
    assert (checkout["product_ids"], checkout["quantities"], checkout["revenue"]) == (
        ["a"],
        [2],
        12.5,
    )


def test_legacy_transaction_and_items_become_one_checkout_with_revenue():
    order = [
        samples.LogicalEvent(
            samples._event(1, "transaction_item", 0, ti_orderid="o-9", ti_sku="a", ti_quantity=2)
        ),
        samples.LogicalEvent(
            samples._event(2, "transaction", 1, tr_orderid="o-9", tr_total="12.50")
        ),
        samples.LogicalEvent(
            samples._event(3, "transaction_item", 2, ti_orderid="o-9", ti_sku="b")
        ),
        samples.LogicalEvent(
            samples._event(4, "transaction_item", 2, ti_orderid="o-10", ti_sku="c", ti_quantity=1)
        ),
    ]
    preset = mapping()
    assert [i for row in rows(*order) for i in preset.map(row)] == []
    checkouts = [i for i, _ in preset.flush()]
    assert [
        (c["product_ids"], c["quantities"], c.get("revenue"), c["context"]["custom_context"])
        for c in checkouts
    ] == [
        (["a", "b"], [2, 1], 12.5, {"order_id": "o-9"}),
        (["c"], [1], None, {"order_id": "o-10"}),
    ]
    assert checkouts[0]["timestamp"] == "2024-05-01T10:00:01.300Z", "the transaction row's time"


def test_a_legacy_transaction_without_items_gives_nothing_and_is_counted():
    preset = mapping()
    preset.map(
        rows(
            samples.LogicalEvent(samples._event(1, "transaction", 0, tr_orderid="o-1", tr_total=5))
        )[0]
    )
    assert preset.flush() == []
    assert preset.skipped["transaction: no transaction_item before the flush"] == 1


def struct(number, category, action, *, label=None, prop=None, value=None):
    return samples.LogicalEvent(
        samples._event(
            number,
            "event",
            0,
            se_category=category,
            se_action=action,
            se_label=label,
            se_property=prop,
            se_value=value,
        )
    )


def test_struct_rules_fill_fields_from_templates():
    preset = mapping(
        struct_rules=[
            {
                "category": "cart",
                "action": "add",
                "type": "add_to_cart",
                "fields": {"product_ids": ["{label}"], "quantities": ["{value}"]},
            },
            {
                "category": "review",
                "action": "*",
                "type": "rate",
                "fields": {"product_ids": ["{property}"]},
            },
            {
                "category": "video",
                "type": "custom",
                "fields": {
                    "custom_action_name": "video {action}",
                    "context.custom_context.clip": "{label}",
                },
            },
            {"category": "product", "action": "like", "type": "like"},
        ]
    )
    events = [
        struct(1, "cart", "add", label="sku-1", value="2"),
        struct(2, "review", "stars", label="ignored", prop="sku-2", value=4.5),
        struct(3, "video", "seek", label="clip-9"),
        struct(4, "product", "like", label="sku-3"),
        struct(5, "product", "like"),  # no label: no product_ids (the validator sets it aside)
        struct(6, "cart", "remove", label="sku-1"),
    ]
    found = [i for row in rows(*events) for i in preset.map(row)]
    fields = [
        {k: v for k, v in i.items() if k not in ("timestamp", "anonymous_id", "context")}
        for i in found
    ]
    assert fields == [
        {"type": "add_to_cart", "product_ids": ["sku-1"], "quantities": [2]},
        {"type": "rate", "product_ids": ["sku-2"], "rating": 4.5},
        {"type": "custom", "product_ids": ["clip-9"], "custom_action_name": "video seek"},
        {"type": "like", "product_ids": ["sku-3"]},
        {"type": "like"},
    ]
    assert found[2]["context"]["custom_context"] == {"clip": "clip-9"}
    assert preset.skipped["struct: cart/remove (no struct rule)"] == 1


def test_a_struct_value_that_is_not_a_number_is_a_bad_row_naming_the_column():
    preset = mapping(
        struct_rules=[
            {
                "category": "cart",
                "action": "add",
                "type": "add_to_cart",
                "fields": {"quantities": ["{value}"]},
            }
        ]
    )
    with pytest.raises(MappingError) as raised:
        preset.map(rows(struct(1, "cart", "add", label="sku-1", value="many"))[0])
    assert raised.value.field == "se_value"


def test_search_reads_both_key_spellings_and_turns_filters_into_lists():
    camel = samples.LogicalEvent(
        samples._event(1, "site_search", 0),
        unstruct=(
            samples.SITE_SEARCH,
            {"terms": ["red", "shoes"], "filters": {"size": 42, "sale": False}, "totalResults": 3},
        ),
    )
    events = [camel]
    for layout in (samples.render_tsv_shaped, samples.render_snowflake, samples.render_bigquery):
        (search,) = mapping().map(layout(events)[0])
        assert search["search"] == {
            "keywords": "red shoes",
            "filters": {"size": ["42"], "sale": ["false"]},
        }


@pytest.mark.parametrize(
    ("options", "path", "message"),
    [
        ({"page_rule": []}, "mappings.atomic-events.page_rule", "unknown option"),
        (
            {"product_view_source": "url"},
            "mappings.atomic-events.product_view_source",
            "expected one of",
        ),
        (
            {"struct_rules": [{"category": "x", "action": "y", "type": "wish"}]},
            "mappings.atomic-events.struct_rules[0].type",
            "not a Miso interaction type",
        ),
        (
            {"struct_rules": [{"type": "like", "fields": {"quantities": ["{value}"]}}]},
            "mappings.atomic-events.struct_rules[0].fields.quantities",
            "not a field of this type",
        ),
        (
            {"struct_rules": [{"type": "like", "fields": {"product_ids": ["{sku}"]}}]},
            "mappings.atomic-events.struct_rules[0].fields.product_ids[0]",
            "unknown placeholder",
        ),
        (
            {"struct_rules": [{"type": "like", "product_id": "se_label"}]},
            "mappings.atomic-events.struct_rules[0].product_id",
            "unknown key",
        ),
        (
            {"struct_rules": {"type": "like"}},
            "mappings.atomic-events.struct_rules",
            "expected a list",
        ),
        ({"ping_duration": "yes"}, "mappings.atomic-events.ping_duration", "true or false"),
        ({"dedupe_retention_days": -1}, "mappings.atomic-events.dedupe_retention_days", "positive"),
        ({"dedupe_store": ""}, "mappings.atomic-events.dedupe_store", "file path or null"),
        ({"dedupe_replay": "yes"}, "mappings.atomic-events.dedupe_replay", "true or false"),
        (
            {"state_lookback_seconds": -5},
            "mappings.atomic-events.state_lookback_seconds",
            "0 or more",
        ),
        (
            {"state_lookback_seconds": 3600, "dedupe_store": None},
            "mappings.atomic-events.state_lookback_seconds",
            "needs a dedupe_store",
        ),
        (
            {"state_lookback_seconds": 2 * 86_400, "dedupe_retention_days": 1},
            "mappings.atomic-events.state_lookback_seconds",
            "shorter than dedupe_retention_days",
        ),
        (
            {"page_rules": [{"pattern": "(", "type": "read"}]},
            "mappings.atomic-events.page_rules[0].pattern",
            "not a valid regular expression",
        ),
        (
            {"page_rules": [{"pattern": "x", "type": "view"}]},
            "mappings.atomic-events.page_rules[0].type",
            "not a Miso interaction type",
        ),
        (
            {
                "page_rules": [
                    {"pattern": "x", "type": "home_page_view", "fields": {"product_ids": ["a"]}}
                ]
            },
            "mappings.atomic-events.page_rules[0].fields.product_ids",
            "not a field",
        ),
        (
            {"ping_heartbeat_seconds": 0},
            "mappings.atomic-events.ping_heartbeat_seconds",
            "positive",
        ),
        (
            {"page_rules": [{"pattern": "(?P<sku>x)", "type": "read"}]},
            "mappings.atomic-events.page_rules[0].pattern",
            "named group",
        ),
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
    config = write_config(
        tmp_path,
        sandbox.url,
        mappings={STREAM: {"preset": "snowplow", "page_rules": RULES, "dedupe_store": None}},
    )
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
    # Every row of the third run that was delivered; the 9 skipped by design (pings, the
    # page without a rule, video/seek, link_click, checkout_step) are mapped again, and
    # give nothing again.
    assert f"{len(events) - 9:>9}  snowplow: duplicate event_id\n" in again.stderr
    assert "        5  page_ping: page view not seen\n" in again.stderr


def media(number, key, data, player, session=None):
    contexts = [(samples.MEDIA_PLAYER, player)]
    if session is not None:
        contexts.append((samples.MEDIA_SESSION, session))
    return samples.LogicalEvent(
        samples._event(number, "media", 0), unstruct=(key, data), contexts=tuple(contexts)
    )


V1_EVENT = "iglu:com.snowplowanalytics.snowplow/media_player_event/jsonschema/1-0-0"
V1_PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/1-0-0"


def test_media_end_events_become_watch_or_listen_with_the_time_played():
    events = [
        media(
            1,
            samples.MEDIA_END,
            {},
            {"label": "song-1", "mediaType": "audio", "currentTime": 200},
            {"mediaSessionId": "s", "timePlayed": 180.5},
        ),
        media(
            2, samples.MEDIA_END, {}, {"label": "clip-1", "mediaType": "video", "currentTime": 42}
        ),
        samples.LogicalEvent(
            samples._event(3, "media_player_event", 0),
            unstruct=(V1_EVENT, {"type": "ended"}),
            contexts=((V1_PLAYER, {"label": "clip-2", "currentTime": 61, "duration": 61}),),
        ),
        samples.LogicalEvent(
            samples._event(4, "media_player_event", 0),
            unstruct=(V1_EVENT, {"type": "play"}),
            contexts=((V1_PLAYER, {"label": "clip-2", "currentTime": 0}),),
        ),
        media(5, samples.MEDIA_END, {}, {"mediaType": "video", "currentTime": 3}),
    ]
    for layout in (samples.render_tsv_shaped, samples.render_snowflake, samples.render_bigquery):
        preset = mapping()
        found = [i for row in layout(events) for i in preset.map(row)]
        assert [(i["type"], i["product_ids"], i["duration"]) for i in found] == [
            ("listen", ["song-1"], 180.5),
            ("watch", ["clip-1"], 42),
            ("watch", ["clip-2"], 61),
        ]
        assert preset.skipped["media_player_event: not mapped"] == 1
        assert preset.skipped["media end: no media_player.label"] == 1


def test_anonymous_id_falls_back_to_network_userid_then_the_mobile_session():
    web = page_view(1, path="/", domain_userid=None, network_userid="n-1", user_id="u-1")
    mobile = samples._ecommerce(
        2,
        0,
        "add_to_cart",
        [samples._product("sku-1")],
        None,
        domain_userid=None,
        network_userid=None,
        contexts=[
            (samples.CLIENT_SESSION, {"userId": "mob-1", "sessionId": "s-1", "sessionIndex": 1})
        ],
    )
    preset = mapping(ping_duration=False)
    (home,), (cart,) = (preset.map(row) for row in rows(web, mobile))
    assert (home["user_id"], home["anonymous_id"]) == ("u-1", "n-1"), "both sent together"
    assert "user_id" not in cart
    assert cart["anonymous_id"] == "mob-1"


def test_a_row_set_aside_does_not_make_its_corrected_copy_a_duplicate():
    good = rows(page_view(1, path="/"))[0]
    bad = {**good, "derived_tstamp": "not a time"}
    preset = mapping(ping_duration=False)
    with pytest.raises(MappingError):
        preset.map(bad)
    assert [i["type"] for i in preset.map(good)] == ["home_page_view"]
    assert preset.map(good) == [], "but a second good copy is a duplicate"
    assert preset.skipped["snowplow: duplicate event_id"] == 1
