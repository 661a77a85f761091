"""preset: segment on warehouse tables as tap-postgres emits them (schema-table streams)."""

from __future__ import annotations

import collections

import pytest

from target_miso.mappings import build_mapping, detect_preset
from target_miso.mappings.segment import snake_case, table_of, truncate_ip
from tests.mappings.fixtures import read_singer, run_stream

MAPPINGS = {"segment_shop-*": {"preset": "segment"}}
CONTEXT = {
    "page": {
        "url": "https://shop.example/p/sku-1",
        "referrer": "https://www.google.com/",
        "title": "Trail Shoe",
    },
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
    "locale": "en-US",
    "truncated_ip": "203.0.113.0",
    "campaign": {"name": "spring", "source": "newsletter", "medium": "email"},
}


def _expected(minute: int, interaction: dict, user: bool = False) -> dict:
    return {
        **interaction,
        **({"user_id": "u-7"} if user else {}),
        "anonymous_id": "anon-s1",
        "timestamp": f"2024-05-01T10:0{minute}:00.250Z",
        "context": CONTEXT,
    }


EXPECTED = {
    "product_viewed": [
        _expected(1, {"type": "product_detail_page_view", "product_ids": ["sku-1"]}),
    ],
    "product_added": [
        _expected(
            2, {"type": "add_to_cart", "product_ids": ["sku-1"], "quantities": [2]}, user=True
        ),
    ],
    "order_completed": [
        _expected(
            3,
            {
                "type": "checkout",
                "product_ids": ["sku-1", "sku-2"],
                "quantities": [2, 1],
                "revenue": 27.5,
            },
            user=True,
        ),
    ],
    "products_searched": [
        _expected(4, {"type": "search", "search": {"keywords": 'red "trail" shoes'}}),
    ],
    "product_list_viewed": [
        _expected(5, {"type": "impression", "product_ids": ["sku-2", "sku-3"]}),
    ],
    "product_reviewed": [
        _expected(6, {"type": "rate", "product_ids": ["sku-1"], "rating": 4}, user=True),
    ],
    "order_refunded": [
        _expected(7, {"type": "refund", "product_ids": ["sku-2"]}, user=True),
    ],
    "product_added_to_wishlist": [
        _expected(8, {"type": "add_to_collection", "product_ids": ["sku-4"]}, user=True),
    ],
    "tracks": [],
    "identifies": [],
}


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_each_segment_table_gives_exactly_the_expected_interactions(table: str) -> None:
    stream = f"segment_shop-{table}"
    schema, records = read_singer("segment_tables.singer")[stream]
    interactions, _ = run_stream(MAPPINGS, stream, schema, records)
    assert interactions == EXPECTED[table]


def test_message_id_read_twice_gives_one_interaction() -> None:
    stream = "segment_shop-order_completed"
    schema, records = read_singer("segment_tables.singer")[stream]
    assert len(records) == 2 and records[0]["id"] == records[1]["id"]
    interactions, mapping = run_stream(MAPPINGS, stream, schema, records)
    assert len(interactions) == 1
    assert mapping.skipped == collections.Counter({"segment: duplicate id (messageId)": 1})


def test_tracks_and_identifies_are_counted_as_skipped() -> None:
    streams = read_singer("segment_tables.singer")
    for table in ("tracks", "identifies"):
        schema, records = streams[f"segment_shop-{table}"]
        _, mapping = run_stream(MAPPINGS, f"segment_shop-{table}", schema, records)
        assert mapping.skipped == collections.Counter(
            {f"segment: {table} rows (no interaction)": 1}
        )


def test_options_change_wishlist_type_rating_scale_and_add_events() -> None:
    mappings = {
        "shop-*": {
            "preset": "segment",
            "wishlist_type": "bookmark",
            "rating_max": 10,
            "revenue_columns": ["revenue"],
            "events": {"Signed Up": "custom", "Product Shared": "skip"},
        },
    }
    common = {"id": "m", "anonymous_id": "a", "timestamp": "2024-05-01T10:00:00Z"}
    wishlist = build_mapping("shop-product_added_to_wishlist", mappings)
    assert wishlist.map({**common, "product_id": 5}) == [
        {
            "type": "bookmark",
            "product_ids": ["5"],
            "anonymous_id": "a",
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
    ]
    review = build_mapping("shop-product_reviewed", mappings)
    assert review.map({**common, "product_id": "p", "rating": 7})[0]["rating"] == 3.5
    order = build_mapping("shop-order_completed", mappings)
    products = '[{"product_id": "p", "quantity": 3}]'
    assert (
        order.map({**common, "total": 30, "revenue": 25, "products": products})[0]["revenue"] == 25
    )
    signed_up = build_mapping("shop-signed_up", mappings)
    assert signed_up.map({**common, "event": "signed_up", "event_text": "Signed Up"}) == [
        {
            "type": "custom",
            "custom_action_name": "Signed Up",
            "anonymous_id": "a",
            "timestamp": "2024-05-01T10:00:00.000Z",
        },
    ]
    shared = build_mapping("shop-product_shared", mappings)
    assert shared.map({**common, "product_id": "p"}) == []


def test_segment_tables_are_recognised_without_a_preset() -> None:
    schema, _ = read_singer("segment_tables.singer")["segment_shop-order_completed"]
    assert detect_preset(schema["properties"]) == "segment"


def test_helpers_follow_segment_naming_and_ip_truncation() -> None:
    assert snake_case("Product Added to Wishlist") == "product_added_to_wishlist"
    assert snake_case("orderCompleted") == "order_completed"
    assert table_of("segment_shop-order_completed") == "order_completed"
    assert table_of("PROD.ORDER_COMPLETED") == "order_completed"
    assert truncate_ip("203.0.113.42") == "203.0.113.0"
    assert truncate_ip("2001:db8::1") is None
