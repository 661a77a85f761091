"""Every class of mapping mistake stops the run at start-up with its setting path."""

from __future__ import annotations

import pytest

from target_miso.mappings import MappingConfigError, build_mapping, check_mappings

STREAM = "public-events"
PATH = f"mappings.{STREAM}"


def _custom(**options: object) -> dict:
    base = {"preset": "custom", "type": "product_detail_page_view", "fields": {"user_id": "uid"}}
    return {STREAM: {**base, **options}}


@pytest.mark.parametrize(
    ("mappings", "path", "reason_part"),
    [
        pytest.param(
            _custom(fields={"revenue": "total *"}),
            f"{PATH}.fields.revenue",
            "invalid expression 'total *'",
            id="syntax-error",
        ),
        pytest.param(
            _custom(filter="kind = 'x'"),
            f"{PATH}.filter",
            "invalid expression",
            id="assignment-is-not-an-expression",
        ),
        pytest.param(
            _custom(fields={"user_id": "coalesce(a, b)"}),
            f"{PATH}.fields.user_id",
            "unknown function 'coalesce'",
            id="unknown-function",
        ),
        pytest.param(
            _custom(fields={"user_id": "(lambda: 1)()"}),
            f"{PATH}.fields.user_id",
            "Lambda is not supported",
            id="unsupported-syntax",
        ),
        pytest.param(
            _custom(fields={"keywords": "q"}),
            f"{PATH}.fields.keywords",
            "'keywords' is not a Miso interaction field",
            id="unknown-miso-field",
        ),
        pytest.param(
            _custom(fields={"context.page.uri": "u"}),
            f"{PATH}.fields.context.page.uri",
            "'context.page' has no field 'uri' (known: referrer, title, url)",
            id="unknown-context-field",
        ),
        pytest.param(
            _custom(fields={"type": "'search'"}),
            f"{PATH}.fields.type",
            "set the interaction type with the `type` option",
            id="type-in-fields",
        ),
        pytest.param(
            _custom(type="page_view"),
            f"{PATH}.type",
            "'page_view' is not a Miso interaction type",
            id="unknown-type",
        ),
        pytest.param(
            _custom(type={"column": "e", "map": {"view": "product_view"}}),
            f"{PATH}.type.map.view",
            "'product_view' is not a Miso interaction type",
            id="unknown-type-in-map",
        ),
        pytest.param(
            _custom(type=[{"when": "e == 'x'", "type": "buy"}]),
            f"{PATH}.type[0].type",
            "'buy' is not a Miso interaction type",
            id="unknown-type-in-rule",
        ),
        pytest.param(
            _custom(type=[{"when": "e ==", "type": "like"}]),
            f"{PATH}.type[0].when",
            "invalid expression",
            id="syntax-error-in-condition",
        ),
        pytest.param(
            _custom(fields={"user_id": "uid", "revenue": "total"}),
            f"{PATH}.fields.revenue",
            "'revenue' is not allowed on type 'product_detail_page_view'",
            id="field-not-allowed-on-the-type",
        ),
        pytest.param(
            _custom(
                type={"column": "e", "map": {"a": "add_to_cart", "s": "search"}},
                fields={"revenue": "total"},
            ),
            f"{PATH}.fields.revenue",
            "not allowed on any type this mapping produces (add_to_cart, search)",
            id="shared-field-fits-no-type",
        ),
        pytest.param(
            _custom(
                type={
                    "column": "e",
                    "map": {"s": {"type": "search", "fields": {"product_ids": "sku"}}},
                },
            ),
            f"{PATH}.type.map.s.fields.product_ids",
            "'product_ids' is not allowed on type 'search'",
            id="field-not-allowed-in-map-entry",
        ),
        pytest.param(
            _custom(fields={"user_id": {"column": "uid", "exp": "x"}}),
            f"{PATH}.fields.user_id.exp",
            "unknown option",
            id="unknown-value-option",
        ),
        pytest.param(
            _custom(fields={"user_id": {"column": "uid", "const": "x"}}),
            f"{PATH}.fields.user_id",
            "exactly one of column, expr or const",
            id="two-sources",
        ),
        pytest.param(
            _custom(fields={"timestamp": {"column": "ts", "epoch": "ns"}}),
            f"{PATH}.fields.timestamp.epoch",
            "expected one of s, ms, us",
            id="bad-epoch-unit",
        ),
        pytest.param(
            _custom(filters="x"),
            f"{PATH}.filters",
            "unknown option",
            id="misspelt-option",
        ),
        pytest.param(
            {STREAM: {"preset": "custom", "fields": {"user_id": "uid"}}},
            f"{PATH}.type",
            "missing",
            id="no-type",
        ),
        pytest.param(
            {STREAM: {"preset": "segment", "events": {"Order Completed": "purchase"}}},
            f"{PATH}.events.Order Completed",
            "'purchase' is not a Miso interaction type",
            id="segment-bad-event-type",
        ),
        pytest.param(
            {STREAM: {"preset": "segment", "wishlist": "bookmark"}},
            f"{PATH}.wishlist",
            "unknown option",
            id="segment-unknown-option",
        ),
        pytest.param(
            {STREAM: {"preset": "segment", "product_id_keys": []}},
            f"{PATH}.product_id_keys",
            "expected a list of keys, best first",
            id="segment-no-product-id-keys",
        ),
        pytest.param(
            {STREAM: {"preset": "segment", "v1_aliases": "yes"}},
            f"{PATH}.v1_aliases",
            "expected true or false",
            id="segment-v1-aliases-not-boolean",
        ),
        pytest.param(
            {STREAM: {"preset": "ga4", "video_events": ["video_end"]}},
            f"{PATH}.video_events",
            "expected a list of GA4 video events",
            id="ga4-bad-video-event",
        ),
        pytest.param(
            {STREAM: {"preset": "ga4", "events": {"login": "signin"}}},
            f"{PATH}.events.login",
            "'signin' is not a Miso interaction type",
            id="ga4-bad-event-type",
        ),
    ],
)
def test_mistake_is_reported_at_start_up_with_its_path(
    mappings: dict,
    path: str,
    reason_part: str,
) -> None:
    with pytest.raises(MappingConfigError) as caught:
        check_mappings(mappings)
    assert caught.value.path == path
    assert reason_part in caught.value.reason


def test_expression_reading_a_column_the_stream_lacks_fails_on_its_schema() -> None:
    schema = {"properties": {"uid": {}, "total": {}}}
    with pytest.raises(MappingConfigError) as caught:
        fields = {"user_id": "uid", "product_ids": {"const": "p-1"}, "context.locale": "lang"}
        build_mapping(STREAM, _custom(fields=fields), schema)
    assert caught.value.path == f"{PATH}.fields.context.locale"
    assert "'lang' is not a column of stream 'public-events'" in caught.value.reason


def test_unquoted_constant_is_caught_as_an_unknown_column() -> None:
    schema = {"properties": {"uid": {}}}
    mappings = _custom(
        type="custom",
        fields={"user_id": "uid", "custom_action_name": "signup"},
    )
    with pytest.raises(MappingConfigError) as caught:
        build_mapping(STREAM, mappings, schema)
    assert caught.value.path == f"{PATH}.fields.custom_action_name"
    assert "quote constants" in caught.value.reason


@pytest.mark.parametrize(
    ("options", "path", "reason_part"),
    [
        pytest.param(
            {"type": {"column": "act", "map": {"x": "like"}, "default": "custom"}},
            f"{PATH}.type.default",
            "type 'custom' needs custom_action_name, and no setting gives it",
            id="default-custom-without-action-name",
        ),
        pytest.param(
            {"type": [{"when": "a", "type": "rate"}, {"type": "like"}]},
            f"{PATH}.type[0]",
            "type 'rate' needs rating",
            id="rule-rate-without-rating",
        ),
        pytest.param(
            {"type": "search", "fields": {"user_id": "uid"}},
            f"{PATH}.type",
            "type 'search' needs search",
            id="search-without-keywords",
        ),
        pytest.param(
            {"type": "like", "fields": {"user_id": "uid"}},
            f"{PATH}.type",
            "needs product_ids (or product_group_ids)",
            id="item-type-without-products",
        ),
        pytest.param(
            {"type": "home_page_view", "fields": {"timestamp": "ts"}},
            f"{PATH}.type",
            "needs user_id or anonymous_id",
            id="no-user",
        ),
    ],
)
def test_an_outcome_missing_what_miso_requires_is_refused_at_start_up(
    options: dict,
    path: str,
    reason_part: str,
) -> None:
    base = {"preset": "custom", "fields": {"user_id": "uid", "product_ids": "sku"}}
    with pytest.raises(MappingConfigError) as caught:
        check_mappings({STREAM: {**base, **options}})
    assert caught.value.path == path
    assert reason_part in caught.value.reason


def test_required_fields_may_come_from_the_outcome_or_the_shared_fields() -> None:
    check_mappings(
        {
            STREAM: {
                "preset": "custom",
                "type": {
                    "column": "act",
                    "map": {"x": {"type": "custom", "fields": {"custom_action_name": "act"}}},
                    "default": "custom",
                },
                "fields": {"anonymous_id": "a", "custom_action_name": "'other'"},
            },
        },
    )


@pytest.mark.parametrize(
    ("mappings", "path", "reason_part"),
    [
        pytest.param(
            # `analytics.events:` in meltano.yml, as Meltano hands it over.
            {"analytics": {"events": {"preset": "ga4"}}},
            "mappings.analytics",
            "holds the entry of a stream named 'analytics.events': Meltano split that name at "
            "its dots into nested objects; write it 'analytics\\.events' in meltano.yml",
            id="stream-name-with-a-dot",
        ),
        pytest.param(
            {"a": {"b": {"c": {"kind": "products", "fields": {"product_id": "id"}}}}},
            "mappings.a",
            "a stream named 'a.b.c'",
            id="stream-name-with-two-dots",
        ),
        pytest.param(
            # `v1.view: product_detail_page_view` in a value map.
            _custom(type={"column": "e", "map": {"v1": {"view": "product_detail_page_view"}}}),
            f"{PATH}.type.map.v1",
            "if the name 'v1.view' was meant, Meltano split it at the dot into nested objects: "
            "write it 'v1\\.view' in meltano.yml",
            id="map-value-with-a-dot",
        ),
    ],
)
def test_a_name_meltano_split_at_its_dot_is_refused_naming_it(
    mappings: dict,
    path: str,
    reason_part: str,
) -> None:
    with pytest.raises(MappingConfigError) as caught:
        check_mappings(mappings)
    assert caught.value.path == path
    assert reason_part in caught.value.reason
