"""preset: segment on warehouse tables as tap-postgres emits them (schema-table streams)."""

from __future__ import annotations

import collections
import json
import re
import typing as t
from pathlib import Path

import pytest

from target_miso.mappings import MappingError, build_mapping, detect_preset
from target_miso.mappings.segment import snake_case, table_of, truncate_ip
from target_miso.miso.sandbox import Sandbox
from tests.helpers import read_rejects, record_message, run_target, schema_message, write_config
from tests.mappings.fixtures import VALIDATOR, read_singer, run_stream

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


# Rows as Segment's warehouse connector writes the Spec's example calls: properties become
# snake_cased columns, arrays (``products``) JSON text, a property named like a reserved
# column (v1's product ``id``) is discarded. Expected values follow Segment's e-commerce v2,
# v1 and video specs and Miso's interaction fields.
PAGE = {
    "url": "https://www.example.com/deals",
    "referrer": "https://www.google.com/",
    "title": "Deals",
}
SPEC_CONTEXT = {"page": PAGE, "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "en-US"}
MONOPOLY = "507f1f77bcf86cd799439011"
UNO = "505bd76785ebb509fc183733"


def _row(event_text: str, **properties: object) -> dict:
    return {
        "id": f"msg-{snake_case(event_text)}",
        "anonymous_id": "anon-1",
        "user_id": "019mr8mf4r",
        "timestamp": "2024-05-01T10:00:00.250000+00:00",
        "original_timestamp": "2024-05-01T10:00:00.100000+00:00",
        "sent_at": "2024-05-01T10:00:01+00:00",
        "received_at": "2024-05-01T10:00:02+00:00",
        "context_page_url": PAGE["url"],
        "context_page_path": "/deals",
        "context_page_referrer": PAGE["referrer"],
        "context_page_title": PAGE["title"],
        "context_user_agent": SPEC_CONTEXT["user_agent"],
        "context_locale": "en-US",
        "event": snake_case(event_text),
        "event_text": event_text,
        **properties,
    }


def _spec(interaction: dict) -> dict:
    return {
        **interaction,
        "user_id": "019mr8mf4r",
        "anonymous_id": "anon-1",
        "timestamp": "2024-05-01T10:00:00.250Z",
        "context": SPEC_CONTEXT,
    }


def _map(event_text: str, row: dict, **options: object) -> tuple[list[dict], t.Any]:
    stream = f"shop-{snake_case(event_text)}"
    mapping = build_mapping(stream, {"shop-*": {"preset": "segment", **options}})
    interactions = mapping.map(row)
    for interaction in interactions:
        assert VALIDATOR.reasons(interaction) == [], interaction
    return interactions, mapping


#: The v2 spec's product properties (Product Viewed/Clicked/Added example), as columns.
PRODUCT = {
    "product_id": MONOPOLY,
    "sku": "G-32",
    "category": "Games",
    "name": "Monopoly: 3rd Edition",
    "brand": "Hasbro",
    "variant": "200 pieces",
    "price": 18.99,
    "quantity": 1,
    "coupon": "MAYDEALS",
    "position": 3,
    "url": "https://www.example.com/product/path",
    "image_url": "https://www.example.com/product/path.jpg",
}


@pytest.mark.parametrize(
    ("event_text", "expected"),
    [
        (
            "Product Viewed",
            {"type": "product_detail_page_view", "product_ids": [MONOPOLY]},
        ),
        ("Product Clicked", {"type": "click", "product_ids": [MONOPOLY]}),
        ("Product Added", {"type": "add_to_cart", "product_ids": [MONOPOLY], "quantities": [1]}),
    ],
)
def test_position_is_no_duration_and_the_products_url_is_not_the_page(
    event_text: str, expected: dict
) -> None:
    # position 3 is the product's place in a list; url is the product page's URL. The page
    # the event happened on (the deals list) is context_page_*.
    row = _row(event_text, **PRODUCT, currency="usd", value=18.99)
    interactions, _ = _map(event_text, row)
    assert interactions == [_spec(expected)]


def test_video_content_completed_has_no_duration_and_its_title_is_the_videos() -> None:
    # Segment's video spec: position is the playhead, total_length the content's length;
    # neither is how long it was watched. title is the video's, not the page's.
    row = _row(
        "Video Content Completed",
        session_id="12345",
        asset_id="0129370",
        pod_id="segA",
        program="Planet Earth",
        title="Seasonal Forests",
        description="David Attenborough reveals the greatest woodlands on earth.",
        season="1",
        position=3600,
        total_length=3600,
        genre="Documentary",
        publisher="BBC",
        full_episode=True,
        keywords='["nature", "forests", "earth"]',
    )
    interactions, _ = _map("Video Content Completed", row)
    assert interactions == [_spec({"type": "watch", "product_ids": ["0129370"]})]


def test_in_the_pages_table_url_title_and_referrer_are_the_page() -> None:
    rules = [{"pattern": "^/product/(?P<product_id>[^/]+)", "type": "product_detail_page_view"}]
    mapping = build_mapping("shop-pages", {"shop-*": {"preset": "segment", "page_rules": rules}})
    row = _row(
        "",
        name="Product",
        path=f"/product/{MONOPOLY}",
        url=f"https://www.example.com/product/{MONOPOLY}",
        title="Monopoly: 3rd Edition",
        referrer=PAGE["url"],
    )
    del row["event"], row["event_text"]
    page = {
        "url": f"https://www.example.com/product/{MONOPOLY}",
        "referrer": PAGE["url"],
        "title": "Monopoly: 3rd Edition",
    }
    assert mapping.map(row) == [
        _spec({"type": "product_detail_page_view", "product_ids": [MONOPOLY]})
        | {"context": {**SPEC_CONTEXT, "page": page}},
    ]


ORDER_LINES = [
    {"sku": "45790-32", "name": "Monopoly: 3rd Edition", "price": 19, "quantity": 1},
    {"sku": "46493-32", "name": "Uno Card Game", "price": 3, "quantity": 2},
]


def _order(key: str, layout: str) -> dict:
    products: object = [
        {key: pid, **line} for pid, line in zip((MONOPOLY, UNO), ORDER_LINES, strict=True)
    ]
    if layout == "stringified":
        products = json.dumps(products, indent=2)
    return _row(
        "Order Completed",
        checkout_id="fksdjfsdjfisjf9sdfjsd9f",
        order_id="50314b8e9bcf000000000000",
        affiliation="Google Store",
        total=27.50,
        subtotal=22.50,
        revenue=25.00,
        shipping=3,
        tax=2,
        discount=2.5,
        coupon="hasbros",
        currency="USD",
        products=products,
    )


@pytest.mark.parametrize("layout", ["stringified", "native"])
@pytest.mark.parametrize("key", ["product_id", "productId"])
def test_order_products_are_read_by_product_id_in_snake_or_camel_case(
    key: str, layout: str
) -> None:
    interactions, _ = _map("Order Completed", _order(key, layout))
    expected = {
        "type": "checkout",
        "product_ids": [MONOPOLY, UNO],
        "quantities": [1, 2],
        "revenue": 27.5,
    }
    assert interactions == [_spec(expected)]


def test_the_database_id_wins_over_the_sku_and_an_option_can_choose_the_sku() -> None:
    products = [
        {"product_id": "a", "productId": "x", "id": "x", "sku": "x"},
        {"productId": "b", "id": "x", "sku": "x"},
        {"id": "c", "sku": "x"},  # e-commerce spec v1: id is the product's database id
        {"sku": "d"},
    ]
    row = _row("Order Completed", total=10, products=json.dumps(products))
    interactions, _ = _map("Order Completed", row)
    assert interactions[0]["product_ids"] == ["a", "b", "c", "d"]
    by_sku, _ = _map("Order Completed", row, product_id_keys=["sku", "product_id"])
    assert by_sku[0]["product_ids"] == ["x", "x", "x", "d"]
    viewed, _ = _map("Product Viewed", _row("Product Viewed", **PRODUCT), product_id_keys=["sku"])
    assert viewed[0]["product_ids"] == ["G-32"]


def test_an_order_line_without_any_product_id_key_is_left_out_and_counted() -> None:
    row = _row("Order Completed", total=10, products='[{"product_id": "a"}, {"name": "Uno"}]')
    interactions, mapping = _map("Order Completed", row)
    assert interactions[0]["product_ids"] == ["a"]
    assert interactions[0]["quantities"] == [1]
    assert mapping.skipped == collections.Counter(
        {"segment: order_completed product without product_id, productId, id, sku (left out)": 1}
    )


def test_a_products_entry_that_is_not_an_object_is_a_mapping_error_naming_it() -> None:
    row = _row("Order Completed", total=10, products='[{"product_id": "a"}, "b"]')
    with pytest.raises(MappingError) as caught:
        _map("Order Completed", row)
    assert caught.value.field == "products[1]"


@pytest.mark.parametrize(
    ("v1_name", "properties", "expected"),
    [
        # v1 sends the product's database id as `id`; Segment discards a property named like
        # the reserved `id` column (the messageId), so the warehouse row keeps the sku.
        (
            "Viewed Product",
            {"sku": "G-32", "name": "Monopoly: 3rd Edition", "price": 18.99, "category": "Games"},
            {"type": "product_detail_page_view", "product_ids": ["G-32"]},
        ),
        (
            "Added Product",
            {"sku": "45790-32", "price": 18.99, "quantity": 3, "category": "Games"},
            {"type": "add_to_cart", "product_ids": ["45790-32"], "quantities": [3]},
        ),
        (
            "Removed Product",
            {"sku": "45790-32", "price": 18.99, "quantity": 2, "category": "Games"},
            {"type": "remove_from_cart", "product_ids": ["45790-32"]},
        ),
        (
            "Completed Order",
            {
                "order_id": "50314b8e9bcf000000000000",
                "revenue": 25.00,
                "shipping": 3.00,
                "tax": 2.00,
                "products": json.dumps(
                    [
                        {"id": MONOPOLY, "sku": "45790-32", "price": 19.00, "quantity": 1},
                        {"id": UNO, "sku": "46493-32", "price": 3.00, "quantity": 2},
                    ],
                ),
            },
            {
                "type": "checkout",
                "product_ids": [MONOPOLY, UNO],
                "quantities": [1, 2],
                "revenue": 25,
            },
        ),
        (
            "Viewed Product Category",
            {"category": "Games", "products": json.dumps([{"product_id": MONOPOLY}])},
            {"type": "impression", "product_ids": [MONOPOLY]},
        ),
        ("Clicked Product", {"product_id": MONOPOLY}, {"type": "click", "product_ids": [MONOPOLY]}),
        (
            "Refunded Order",
            {"order_id": "o-1", "products": json.dumps([{"product_id": UNO}])},
            {"type": "refund", "product_ids": [UNO]},
        ),
        (
            "Searched Products",
            {"query": "blue roses"},
            {"type": "search", "search": {"keywords": "blue roses"}},
        ),
    ],
)
def test_v1_names_map_like_their_v2_names(v1_name: str, properties: dict, expected: dict) -> None:
    interactions, _ = _map(v1_name, _row(v1_name, **properties))
    assert interactions == [_spec(expected)]
    off, mapping = _map(v1_name, _row(v1_name, **properties), v1_aliases=False)
    assert off == []
    assert mapping.skipped == collections.Counter(
        {f"segment: event {snake_case(v1_name)} not mapped": 1}
    )


def test_an_events_setting_applies_to_the_aliases_unless_it_names_the_alias() -> None:
    row = _row("Viewed Product", sku="G-32")
    plain, _ = _map("Viewed Product", row, events={"Product Viewed": "product_image_view"})
    assert plain[0]["type"] == "product_image_view"
    skipped, _ = _map("Viewed Product", row, events={"Product Viewed": "skip"})
    assert skipped == []
    own, _ = _map("Viewed Product", row, events={"Viewed Product": "product_image_view"})
    assert own[0]["type"] == "product_image_view"


@pytest.mark.parametrize(
    ("event_text", "properties", "reason"),
    [
        (
            "Order Completed",
            {"order_id": "o-1", "total": 27.5, "currency": "USD"},
            "segment: order_completed without products (Miso's checkout needs product ids)",
        ),
        (
            "Product List Viewed",
            {"list_id": "hot_deals_1", "category": "Deals", "products": "[]"},
            "segment: product_list_viewed without products (Miso's impression needs product ids)",
        ),
        (
            "Products Searched",
            {"query": None},
            "segment: products_searched without a query (Miso's search needs keywords)",
        ),
        (
            "Product Reviewed",
            {"product_id": MONOPOLY, "review_id": "r-1", "review_body": "Great"},
            "segment: product_reviewed without a rating (Miso's rate needs one)",
        ),
    ],
)
def test_a_valid_event_miso_cannot_take_is_skipped_with_its_reason(
    event_text: str, properties: dict, reason: str
) -> None:
    interactions, mapping = _map(event_text, _row(event_text, **properties))
    assert interactions == []
    assert mapping.skipped == collections.Counter({reason: 1})


def test_an_order_without_products_is_skipped_by_the_target_not_set_aside(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    stream = "shop-order_completed"
    with_products = _order("product_id", "stringified")
    without = _row("Order Completed", order_id="o-2", total=12.5)
    without["id"] = "msg-2"
    singer = "\n".join(
        [
            schema_message(stream, {"type": "object", "properties": {}}),
            record_message(with_products, stream),
            record_message(without, stream),
        ],
    )
    config = write_config(tmp_path, sandbox.url, mappings={"shop-*": {"preset": "segment"}})

    run = run_target(config, singer + "\n")

    assert run.returncode == 0, run.stderr
    assert [i["type"] for i in sandbox.interactions] == ["checkout"]
    assert read_rejects(tmp_path / "rejects.jsonl") == []
    assert "set aside: 0" in run.stderr
    reason = "segment: order_completed without products (Miso's checkout needs product ids)"
    assert re.search(rf"skipped by design:\n +1  {re.escape(reason)}\n", run.stderr), run.stderr
