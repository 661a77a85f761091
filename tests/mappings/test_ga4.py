"""preset: ga4 on GA4 BigQuery export rows as tap-bigquery emits them."""

from __future__ import annotations

import collections
import json

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
            "ga4: view_item_list item without item_id (left out)": 1,
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
        mapping.map(
            {
                "event_name": "view_item",
                "event_timestamp": "soon",
                "user_pseudo_id": "p",
                "items": [{"item_id": "sku-1"}],
            },
        )
    assert caught.value.field == "event_timestamp"


def test_ga4_export_is_recognised_without_a_preset() -> None:
    schema, _ = read_singer("ga4_events.singer")[STREAM]
    assert detect_preset(schema["properties"]) == "ga4"


# Rows shaped as Google's "[GA4] BigQuery Export schema" documents them (every column of
# events_YYYYMMDD; event_params values in exactly one of string/int/float/double_value; items
# and ecommerce with their documented fields), one per event the preset knows, written from
# the GA4 recommended-events reference. The expected interactions are what Miso should get.
PSEUDO_ID = "1197596843.1714550000"
USER = "u-42"
T0 = (
    1714557600_123456  # event_timestamp: microseconds since 1970, UTC (2024-05-01T10:00:00.123456Z)
)
SHOP = "https://shop.example"
_ITEM_FIELDS = (
    "item_id", "item_name", "item_brand", "item_variant", "item_category", "item_category2",
    "item_category3", "item_category4", "item_category5", "price_in_usd", "price", "quantity",
    "item_revenue_in_usd", "item_revenue", "item_refund_in_usd", "item_refund", "coupon",
    "affiliation", "location_id", "item_list_id", "item_list_name", "item_list_index",
    "promotion_id", "promotion_name", "creative_name", "creative_slot",
)  # fmt: skip
_ECOMMERCE_FIELDS = (
    "total_item_quantity", "purchase_revenue_in_usd", "purchase_revenue", "refund_value_in_usd",
    "refund_value", "shipping_value_in_usd", "shipping_value", "tax_value_in_usd", "tax_value",
    "unique_items", "transaction_id",
)  # fmt: skip
_STRUCTURED = (
    "event_params", "user_properties", "privacy_info", "user_ltv", "device", "geo",
    "traffic_source", "collected_traffic_source", "ecommerce", "items",
)  # fmt: skip


def _param(key: str, value: object, kind: str = "string_value") -> dict:
    holder = dict.fromkeys(("string_value", "int_value", "float_value", "double_value"))
    holder[kind] = value
    return {"key": key, "value": holder}


def _item(item_id: str, **fields: object) -> dict:
    return {**dict.fromkeys(_ITEM_FIELDS), "item_id": item_id, "item_params": [], **fields}


TEE = {"item_name": "Stan and Friends Tee", "item_category": "Apparel", "price": 10.01}
SOCKS = {"item_name": "Friends Socks", "item_category": "Apparel", "price": 21.99}


def _export_row(
    second: int,
    event_name: str,
    params: list[dict],
    *,
    page: str = "/product/SKU_12345",
    items: list[dict] | None = None,
    ecommerce: dict | None = None,
    user_id: str | None = None,
    traffic: dict | None = None,
) -> dict:
    return {
        "event_date": "20240501",
        "event_timestamp": T0 + second * 1_000_000,
        "event_name": event_name,
        "event_params": [
            _param("ga_session_id", 1714557000, "int_value"),
            _param("ga_session_number", 3, "int_value"),
            _param("engagement_time_msec", 1250, "int_value"),
            _param("page_location", f"{SHOP}{page}"),
            _param("page_referrer", f"{SHOP}/collections/apparel"),
            _param("page_title", "Stan and Friends Tee | Shop"),
            *params,
        ],
        "event_previous_timestamp": None,
        "event_value_in_usd": None,
        "event_bundle_sequence_id": 100 + second,
        "event_server_timestamp_offset": 412,
        "user_id": user_id,
        "user_pseudo_id": PSEUDO_ID,
        "privacy_info": {
            "analytics_storage": "Yes",
            "ads_storage": "Yes",
            "uses_transient_token": "No",
        },
        "user_properties": [],
        "user_first_touch_timestamp": T0 - 86_400_000_000,
        "user_ltv": {"revenue": 0.0, "currency": "USD"},
        "device": {
            "category": "desktop",
            "operating_system": "Windows",
            "language": "en-us",
            "web_info": {
                "browser": "Chrome",
                "browser_version": "124.0",
                "hostname": "shop.example",
            },
        },
        "geo": {"country": "United States", "region": "California", "city": "San Jose"},
        "app_info": None,
        "traffic_source": {"name": "(direct)", "medium": "(none)", "source": "(direct)"},
        "stream_id": "2345678901",
        "platform": "WEB",
        "event_dimensions": None,
        "ecommerce": None
        if ecommerce is None
        else {**dict.fromkeys(_ECOMMERCE_FIELDS), **ecommerce},
        "items": items or [],
        "collected_traffic_source": traffic,
        "is_active_user": True,
        "batch_event_index": 0,
        "batch_page_id": 1714557600123,
        "batch_ordering_id": 5,
    }


def _usd(value: float, kind: str = "double_value") -> list[dict]:
    return [_param("currency", "USD"), _param("value", value, kind)]


EXPORT_ROWS = [
    _export_row(
        0,
        "page_view",
        [
            _param("session_engaged", "1"),
            _param("entrances", 1, "int_value"),
            _param("campaign", "spring_sale"),
            _param("source", "newsletter"),
            _param("medium", "email"),
        ],
        traffic={
            "manual_campaign_id": None,
            "manual_campaign_name": "spring_sale",
            "manual_source": "newsletter",
            "manual_medium": "email",
            "manual_term": None,
            "manual_content": None,
            "gclid": None,
            "dclid": None,
            "srsltid": None,
        },
    ),
    _export_row(1, "view_item", _usd(10.01), items=[_item("SKU_12345", **TEE, quantity=1)]),
    _export_row(
        2,
        "view_item_list",
        [_param("item_list_id", "related_products"), _param("item_list_name", "Related products")],
        page="/collections/apparel",
        items=[
            _item("SKU_12345", **TEE, item_list_index="1"),
            _item("SKU_12346", **SOCKS, item_list_index="2"),
        ],
    ),
    _export_row(
        3,
        "select_item",
        [_param("item_list_id", "related_products")],
        page="/collections/apparel",
        items=[_item("SKU_12346", **SOCKS, item_list_index="2")],
    ),
    _export_row(
        4,
        "add_to_cart",
        _usd(30.03),
        items=[_item("SKU_12345", **TEE, quantity=3)],
        ecommerce={"total_item_quantity": 3, "unique_items": 1},
        user_id=USER,
    ),
    _export_row(
        5,
        "remove_from_cart",
        _usd(21.99),
        items=[_item("SKU_12346", **SOCKS, quantity=1)],
        ecommerce={"total_item_quantity": 1, "unique_items": 1},
        user_id=USER,
    ),
    _export_row(
        6,
        "begin_checkout",
        [*_usd(52.02), _param("coupon", "SUMMER_FUN")],
        page="/checkout",
        items=[_item("SKU_12345", **TEE, quantity=3), _item("SKU_12346", **SOCKS, quantity=1)],
        user_id=USER,
    ),
    _export_row(
        7,
        "purchase",
        [
            _param("transaction_id", "T_12345"),
            *_usd(61.61),
            _param("tax", 3.60, "double_value"),
            _param("shipping", 5.99, "double_value"),
        ],
        page="/checkout/thank-you",
        items=[
            _item("SKU_12345", **TEE, quantity=3, item_revenue=30.03),
            _item("SKU_12346", **SOCKS, quantity=1, item_revenue=21.99),
        ],
        ecommerce={
            "total_item_quantity": 4,
            "purchase_revenue_in_usd": 61.61,
            "purchase_revenue": 61.61,
            "shipping_value": 5.99,
            "tax_value": 3.60,
            "unique_items": 2,
            "transaction_id": "T_12345",
        },
        user_id=USER,
    ),
    # No ecommerce record: the revenue is the value param, here an int_value, then a float_value.
    _export_row(
        8,
        "purchase",
        [_param("transaction_id", "T_12346"), *_usd(30, "int_value")],
        page="/checkout/thank-you",
        items=[_item("SKU_12345", **TEE, quantity=3)],
    ),
    _export_row(
        9,
        "purchase",
        [_param("transaction_id", "T_12347"), *_usd(21.99, "float_value")],
        page="/checkout/thank-you",
        items=[_item("SKU_12346", **SOCKS)],
    ),
    # A purchase sent without items: valid for GA4, nothing for Miso's checkout to name.
    _export_row(
        10,
        "purchase",
        [_param("transaction_id", "T_12348"), *_usd(9.99)],
        page="/checkout/thank-you",
        ecommerce={"purchase_revenue": 9.99, "transaction_id": "T_12348"},
    ),
    # A partial refund names its items; a full refund names only the transaction.
    _export_row(
        11,
        "refund",
        [_param("transaction_id", "T_12345"), *_usd(21.99)],
        page="/account/orders",
        items=[_item("SKU_12346", **SOCKS, quantity=1)],
        ecommerce={"refund_value": 21.99, "transaction_id": "T_12345"},
        user_id=USER,
    ),
    _export_row(
        12,
        "refund",
        [_param("transaction_id", "T_12346"), *_usd(30.03)],
        page="/account/orders",
        ecommerce={"refund_value": 30.03, "transaction_id": "T_12346"},
        user_id=USER,
    ),
    _export_row(13, "search", [_param("search_term", "t-shirts")], page="/search"),
    _export_row(
        14,
        "view_search_results",
        [_param("search_term", 'red "trail" shoes')],
        page="/search?q=red+%22trail%22+shoes",
    ),
    _export_row(
        15,
        "view_promotion",
        [
            _param("creative_name", "summer_banner2"),
            _param("creative_slot", "featured_app_1"),
            _param("promotion_id", "P_12345"),
            _param("promotion_name", "Summer Sale"),
        ],
        page="/",
        items=[_item("SKU_12346", **SOCKS, promotion_id="P_12345", promotion_name="Summer Sale")],
    ),
    _export_row(
        16,
        "select_promotion",
        [_param("promotion_id", "P_12345"), _param("promotion_name", "Summer Sale")],
        page="/",
        items=[_item("SKU_12346", **SOCKS, promotion_id="P_12345", promotion_name="Summer Sale")],
    ),
    # Promotions need not name items; then there is no product for Miso's click.
    _export_row(
        17,
        "select_promotion",
        [_param("promotion_id", "P_12345"), _param("promotion_name", "Summer Sale")],
        page="/",
    ),
    _export_row(18, "user_engagement", []),
]


def _page(path: str) -> dict:
    return {
        "locale": "en-us",
        "page": {
            "url": f"{SHOP}{path}",
            "referrer": f"{SHOP}/collections/apparel",
            "title": "Stan and Friends Tee | Shop",
        },
    }


def _got(second: int, path: str, interaction: dict, *, user: bool = False) -> dict:
    return {
        **interaction,
        **({"user_id": USER} if user else {}),
        "anonymous_id": PSEUDO_ID,
        "timestamp": f"2024-05-01T10:00:{second:02d}.123Z",
        "context": _page(path),
    }


PRODUCT_PAGE = "/product/SKU_12345"
EXPECTED_FROM_EXPORT = [
    _got(0, PRODUCT_PAGE, {"type": "product_detail_page_view", "product_ids": ["SKU_12345"]})
    | {
        "context": {
            **_page(PRODUCT_PAGE),
            "campaign": {"name": "spring_sale", "source": "newsletter", "medium": "email"},
        }
    },
    _got(1, PRODUCT_PAGE, {"type": "product_detail_page_view", "product_ids": ["SKU_12345"]}),
    _got(
        2, "/collections/apparel", {"type": "impression", "product_ids": ["SKU_12345", "SKU_12346"]}
    ),
    _got(3, "/collections/apparel", {"type": "click", "product_ids": ["SKU_12346"]}),
    _got(
        4,
        PRODUCT_PAGE,
        {"type": "add_to_cart", "product_ids": ["SKU_12345"], "quantities": [3]},
        user=True,
    ),
    _got(5, PRODUCT_PAGE, {"type": "remove_from_cart", "product_ids": ["SKU_12346"]}, user=True),
    _got(
        7,
        "/checkout/thank-you",
        {
            "type": "checkout",
            "product_ids": ["SKU_12345", "SKU_12346"],
            "quantities": [3, 1],
            "revenue": 61.61,
        },
        user=True,
    ),
    _got(
        8,
        "/checkout/thank-you",
        {"type": "checkout", "product_ids": ["SKU_12345"], "quantities": [3], "revenue": 30},
    ),
    _got(
        9,
        "/checkout/thank-you",
        {"type": "checkout", "product_ids": ["SKU_12346"], "quantities": [1], "revenue": 21.99},
    ),
    _got(11, "/account/orders", {"type": "refund", "product_ids": ["SKU_12346"]}, user=True),
    _got(13, "/search", {"type": "search", "search": {"keywords": "t-shirts"}}),
    _got(
        14,
        "/search?q=red+%22trail%22+shoes",
        {"type": "search", "search": {"keywords": 'red "trail" shoes'}},
    ),
    _got(15, "/", {"type": "impression", "product_ids": ["SKU_12346"]}),
    _got(16, "/", {"type": "click", "product_ids": ["SKU_12346"]}),
]
SKIPPED_FROM_EXPORT = collections.Counter(
    {
        "ga4: event begin_checkout not mapped": 1,
        "ga4: purchase without items": 1,
        "ga4: refund without items": 1,
        "ga4: select_promotion without items": 1,
        "ga4: event user_engagement not mapped": 1,
    },
)
PAGE_RULES = [{"pattern": r"^/product/(?P<product_id>[^/?#]+)", "type": "product_detail_page_view"}]


def _as_json_text(row: dict) -> dict:
    # The same row where the nested columns arrive as JSON text (a JSON export, Snowflake,
    # a TO_JSON_STRING view) and INT64 as text, as BigQuery's REST API writes it.
    text = {k: json.dumps(v) if k in _STRUCTURED and v is not None else v for k, v in row.items()}
    return text | {"event_timestamp": str(row["event_timestamp"])}


@pytest.mark.parametrize("layout", ["nested", "json_text"])
def test_each_export_event_gives_what_the_ga4_docs_say_miso_should_receive(layout: str) -> None:
    rows = EXPORT_ROWS if layout == "nested" else [_as_json_text(row) for row in EXPORT_ROWS]
    schema = {"properties": {column: {} for column in rows[0]}}
    mappings = {STREAM: {"preset": "ga4", "page_rules": PAGE_RULES}}
    interactions, mapping = run_stream(mappings, STREAM, schema, rows)
    assert interactions == EXPECTED_FROM_EXPORT
    assert mapping.skipped == SKIPPED_FROM_EXPORT


def test_an_item_without_item_id_is_left_out_and_counted() -> None:
    # GA4 takes an item named by item_name alone; Miso needs the id.
    row = _export_row(
        0,
        "purchase",
        _usd(31.99),
        items=[_item("SKU_12345", **TEE, quantity=2), _item(None, **SOCKS)],  # type: ignore[arg-type]
        ecommerce={"purchase_revenue": 31.99, "transaction_id": "T_1"},
    )
    mapping = build_mapping("ga", {"ga": {"preset": "ga4"}})
    assert mapping.map(row) == [
        _got(
            0,
            PRODUCT_PAGE,
            {"type": "checkout", "product_ids": ["SKU_12345"], "quantities": [2], "revenue": 31.99},
        ),
    ]
    assert mapping.skipped == collections.Counter(
        {"ga4: purchase item without item_id (left out)": 1}
    )
    with pytest.raises(MappingError) as caught:
        mapping.map({**row, "items": [{"item_id": "SKU_12345"}, "SKU_12346"]})
    assert caught.value.field == "items[1]"


def test_video_playhead_is_not_a_duration() -> None:
    # video_current_time is the playhead and video_duration the video's length: neither says
    # how long it was watched, so a watch carries no duration.
    params = [
        _param("video_url", "https://www.youtube.com/watch?v=abc"),
        _param("video_title", "How to lace"),
        _param("video_current_time", 95, "int_value"),
        _param("video_duration", 95, "int_value"),
        _param("video_percent", 100, "int_value"),
    ]
    mapping = build_mapping("ga", {"ga": {"preset": "ga4"}})
    assert mapping.map(_export_row(0, "video_complete", params)) == [
        _got(
            0,
            PRODUCT_PAGE,
            {"type": "watch", "product_ids": ["https://www.youtube.com/watch?v=abc"]},
        ),
    ]


def test_events_without_what_miso_needs_are_skipped_with_their_reason() -> None:
    mapping = build_mapping("ga", {"ga": {"preset": "ga4"}})
    rows = [
        _export_row(0, "search", [_param("search_term", "")]),
        _export_row(1, "video_complete", [_param("video_title", "How to lace")]),
        _export_row(2, "share", [_param("method", "Twitter"), _param("content_type", "image")]),
    ]
    assert [i for row in rows for i in mapping.map(row)] == []
    assert mapping.skipped == collections.Counter(
        {
            "ga4: search without search_term": 1,
            "ga4: video_complete without video_url": 1,
            "ga4: share without items": 1,
        },
    )
