"""preset: ga4 on GA4 BigQuery export rows as tap-bigquery emits them."""

from __future__ import annotations

import collections

import pytest

from target_miso.mappings import MappingError, build_mapping, detect_preset
from target_miso.mappings.ga4 import event_params
from tests.mappings.fixtures import read_singer, run_stream

STREAM = "analytics_123-events_20240501"
MAPPINGS = {"analytics_*": {"preset": "ga4"}}
ANON = "1234567890.1714550000"
PAGE = {
    "url": 'https://shop.example/p/sku-1?ref="x"',
    "referrer": "https://search.example/",
    "title": 'Trail Shoe "X"\nNew',
}
CONTEXT = {"locale": "en-us", "page": PAGE}


def _at(second: int) -> str:
    return f"2024-05-01T10:00:{second:02d}.123Z"


def test_export_rows_give_exactly_the_expected_interactions() -> None:
    schema, records = read_singer("ga4_events.singer")[STREAM]
    interactions, mapping = run_stream(MAPPINGS, STREAM, schema, records)
    assert interactions == [
        {
            "type": "product_detail_page_view",
            "product_ids": ["sku-1"],
            "anonymous_id": ANON,
            "timestamp": _at(1),
            "context": {
                **CONTEXT,
                "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
            },
        },
        {
            "type": "add_to_cart",
            "product_ids": ["sku-1"],
            "quantities": [2],
            "user_id": "u-7",
            "anonymous_id": ANON,
            "timestamp": _at(2),
            "context": CONTEXT,
        },
        {
            "type": "checkout",
            "product_ids": ["sku-1", "sku-2"],
            "quantities": [2, 1],
            "revenue": 25.5,
            "user_id": "u-7",
            "anonymous_id": ANON,
            "timestamp": _at(3),
            "context": CONTEXT,
        },
        {
            "type": "search",
            "search": {"keywords": 'red "trail" shoes'},
            "anonymous_id": ANON,
            "timestamp": _at(4),
            "context": CONTEXT,
        },
        {
            "type": "impression",
            "product_ids": ["sku-2", "sku-3"],
            "anonymous_id": ANON,
            "timestamp": _at(5),
            "context": CONTEXT,
        },
        {
            "type": "watch",
            "product_ids": ["https://shop.example/videos/how-to-lace"],
            "duration": 95,
            "anonymous_id": ANON,
            "timestamp": _at(7),
            "context": CONTEXT,
        },
        {
            "type": "add_to_collection",
            "product_ids": ["sku-4"],
            "anonymous_id": ANON,
            "timestamp": _at(9),
            "context": CONTEXT,
        },
        {
            "type": "share",
            "product_ids": ["sku-4"],
            "anonymous_id": ANON,
            "timestamp": _at(10),
            "context": CONTEXT,
        },
        {
            "type": "refund",
            "product_ids": ["sku-2"],
            "user_id": "u-7",
            "anonymous_id": ANON,
            "timestamp": _at(11),
            "context": CONTEXT,
        },
    ]
    assert mapping.skipped == collections.Counter(
        {
            "ga4: page_view without a matching page rule": 1,
            "ga4: select_promotion without items": 1,
            "ga4: event user_engagement not mapped": 1,
        },
    )


def test_event_params_take_whichever_value_field_is_set() -> None:
    params = [
        {
            "key": "a",
            "value": {
                "string_value": None,
                "int_value": 3,
                "float_value": None,
                "double_value": None,
            },
        },
        {
            "key": "b",
            "value": {
                "string_value": None,
                "int_value": None,
                "float_value": None,
                "double_value": 1.5,
            },
        },
        {
            "key": "c",
            "value": {
                "string_value": "x",
                "int_value": None,
                "float_value": None,
                "double_value": None,
            },
        },
        {
            "key": "d",
            "value": {
                "string_value": None,
                "int_value": None,
                "float_value": None,
                "double_value": None,
            },
        },
    ]
    assert event_params(params) == {"a": 3, "b": 1.5, "c": "x"}
    assert event_params('[{"key": "a", "value": {"int_value": 4}}]') == {"a": 4}


def test_options_switch_wishlist_video_events_and_event_types() -> None:
    mapping = build_mapping(
        "ga",
        {
            "ga": {
                "preset": "ga4",
                "wishlist_type": "bookmark",
                "video_events": ["video_progress"],
                "video_id_param": "video_title",
                "events": {"sign_up": "subscribe", "share": "skip"},
            },
        },
    )

    def row(name: str, params: list, items: list | None = None) -> dict:
        return {
            "event_name": name,
            "event_timestamp": "1714557600000000",
            "user_pseudo_id": "p",
            "event_params": params,
            "items": items or [],
        }

    video = [
        {"key": "video_title", "value": {"string_value": "How to lace"}},
        {"key": "video_current_time", "value": {"int_value": 30}},
    ]
    assert mapping.map(row("video_progress", video)) == [
        {
            "type": "watch",
            "product_ids": ["How to lace"],
            "duration": 30,
            "anonymous_id": "p",
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
    ]
    assert mapping.map(row("video_complete", video)) == []
    assert mapping.map(row("add_to_wishlist", [], [{"item_id": 9}]))[0]["type"] == "bookmark"
    assert mapping.map(row("share", [], [{"item_id": 9}])) == []


def test_bad_event_timestamp_is_a_mapping_error_naming_the_column() -> None:
    mapping = build_mapping("ga", {"ga": {"preset": "ga4"}})
    with pytest.raises(MappingError) as caught:
        mapping.map({"event_name": "view_item", "event_timestamp": "soon", "user_pseudo_id": "p"})
    assert caught.value.field == "event_timestamp"


def test_ga4_export_is_recognised_without_a_preset() -> None:
    schema, _ = read_singer("ga4_events.singer")[STREAM]
    assert detect_preset(schema["properties"]) == "ga4"
