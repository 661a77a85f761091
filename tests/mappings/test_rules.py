"""URL rules (page_rules): matching, the fields they fill, and mistakes caught at start-up."""

from __future__ import annotations

import pytest

from target_miso.mappings import MappingConfigError, build_mapping
from target_miso.mappings.rules import PageMatch, compile_page_rules
from tests.mappings.fixtures import read_singer, run_stream

RULES = [
    {"pattern": r"^/p/(?P<product_id>[^/?#]+)", "type": "product_detail_page_view"},
    {"pattern": r"^/c/(?P<category>[^?#]+)", "type": "category_page_view"},
    {"pattern": r"^/$", "type": "home_page_view"},
    {
        "pattern": r"^/stories/(?P<product_id>[^/]+)",
        "type": "read",
        "fields": {"context.custom_context.section": "stories"},
    },
    {"pattern": r"utm_source=promo", "type": "promo_page_view", "on": "url"},
]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://shop.example/p/sku%201?x=1",
            PageMatch("product_detail_page_view", {"product_ids": ["sku 1"]}),
        ),
        ("/c/women/shoes/", PageMatch("category_page_view", {"category": ["women", "shoes"]})),
        ("https://shop.example", PageMatch("home_page_view", {})),
        ("https://shop.example/?q=1#top", PageMatch("home_page_view", {})),
        (
            "https://shop.example/stories/spring",
            PageMatch(
                "read", {"product_ids": ["spring"], "context.custom_context.section": "stories"}
            ),
        ),
        ("https://shop.example/sale?utm_source=promo", PageMatch("promo_page_view", {})),
        ("https://shop.example/about", None),
    ],
)
def test_first_matching_rule_wins_and_fills_fields(url, expected):
    assert compile_page_rules(RULES, "page_rules").match(url) == expected


@pytest.mark.parametrize(
    ("rules", "path", "message"),
    [
        ({"pattern": "x"}, "page_rules", "expected a list"),
        (
            [{"pattern": "(", "type": "read"}],
            "page_rules[0].pattern",
            "not a valid regular expression",
        ),
        (
            [{"pattern": "x", "type": "view"}],
            "page_rules[0].type",
            "'view' is not a Miso interaction type",
        ),
        ([{"type": "read"}], "page_rules[0].pattern", "missing"),
        (
            [{"pattern": "(?P<sku>.+)", "type": "read"}],
            "page_rules[0].pattern",
            "named group 'sku'",
        ),
        (
            [{"pattern": "(?P<product_id>.+)", "type": "home_page_view"}],
            "page_rules[0].pattern",
            "does not take",
        ),
        (
            [{"pattern": "x", "type": "read", "fields": {"revenue": 1}}],
            "page_rules[0].fields.revenue",
            "not a field",
        ),
        ([{"pattern": "x", "type": "read", "regex": "y"}], "page_rules[0].regex", "unknown key"),
        (
            [{"pattern": "x", "type": "read", "on": "host"}],
            "page_rules[0].on",
            "expected path or url",
        ),
    ],
)
def test_mistakes_name_the_setting(rules, path, message):
    with pytest.raises(MappingConfigError, match=message) as raised:
        compile_page_rules(rules, "page_rules")
    assert raised.value.path == path


def test_ga4_page_views_go_through_the_rules():
    stream = "analytics_123-events_20240501"
    schema, records = read_singer("ga4_events.singer")[stream]
    page_views = [record for record in records if record["event_name"] == "page_view"]
    mappings = {stream: {"preset": "ga4", "page_rules": RULES}}

    interactions, mapping = run_stream(mappings, stream, schema, page_views)

    assert [(i["type"], i.get("product_ids")) for i in interactions] == [
        ("product_detail_page_view", ["sku-1"]),
    ]
    assert not mapping.skipped


def test_segment_pages_go_through_the_rules():
    stream = "segment_shop-pages"
    schema, records = read_singer("segment_tables.singer")[stream]

    interactions, _ = run_stream(
        {stream: {"preset": "segment", "page_rules": RULES}}, stream, schema, records
    )

    assert [(i["type"], i.get("product_ids")) for i in interactions] == [
        ("product_detail_page_view", ["sku-5"]),
        ("home_page_view", None),
    ]


def test_a_bad_rule_stops_the_preset_at_start_up():
    with pytest.raises(MappingConfigError) as raised:
        build_mapping("events", {"events": {"preset": "ga4", "page_rules": [{"pattern": "("}]}}, {})
    assert raised.value.path.startswith("mappings.events.page_rules[0]")


def test_fields_may_template_any_named_group():
    rules = compile_page_rules(
        [
            {
                "pattern": r"^/(?P<section>blog|news)/(?P<product_id>[^/]+)",
                "type": "read",
                "fields": {
                    "context.custom_context.section": "{section}",
                    "product_group_ids": ["{section}s"],
                },
            },
        ],
        "page_rules",
    )

    assert rules.match("https://shop.example/news/spring%20sale") == PageMatch(
        "read",
        {
            "context.custom_context.section": "news",
            "product_group_ids": ["newss"],
            "product_ids": ["spring sale"],
        },
    )


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        (
            {"context.custom_context.section": "{sectoin}"},
            "page_rules[0].fields.context.custom_context.section",
            "unknown placeholder {sectoin}",
        ),
        (
            {"product_ids": ["{section"]},
            "page_rules[0].fields.product_ids[0]",
            "not a valid template",
        ),
    ],
)
def test_a_template_naming_no_group_is_refused(fields, path, message):
    setting = [{"pattern": r"^/(?P<section>blog)/", "type": "read", "fields": fields}]
    with pytest.raises(MappingConfigError, match=message) as raised:
        compile_page_rules(setting, "page_rules")
    assert raised.value.path == path
