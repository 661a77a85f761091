"""preset: custom on an events table as tap-postgres emits it."""

from __future__ import annotations

import collections
import decimal
import hashlib

import pytest

from target_miso.mappings import MappingConfigError, MappingError, build_mapping
from tests.mappings.fixtures import VALIDATOR, read_singer, run_stream

STREAM = "public-events"

#: The meltano.yml example of docs/mappings.md, as the target receives it.
EVENTS_MAPPING = {
    "preset": "custom",
    "filter": "event_name != 'heartbeat'",
    "dedup_key": "event_id",
    "type": {
        "column": "event_name",
        "map": {
            "product_view": "product_detail_page_view",
            "add_to_cart": {
                "type": "add_to_cart",
                "fields": {"quantities": {"column": "quantity", "default": 1}},
            },
            "order": {
                "type": "checkout",
                "fields": {
                    "product_ids": {"column": "items", "key": "sku"},
                    "quantities": {"column": "items", "key": "qty"},
                    "revenue": "order_total",
                },
            },
            "search": {"type": "search", "fields": {"search.keywords": "search_query"}},
        },
    },
    "fields": {
        "user_id": "user_id",
        "anonymous_id": "anonymous_id",
        "timestamp": "occurred_at",
        "product_ids": "product_id",
        "context.page.url": "page_url",
        "context.custom_context.note": "note",
        "context.custom_context.source": {"const": "web"},
    },
}


def test_events_table_gives_exactly_the_expected_interactions() -> None:
    schema, records = read_singer("custom_events.singer")[STREAM]
    interactions, mapping = run_stream({STREAM: EVENTS_MAPPING}, STREAM, schema, records)
    assert interactions == [
        {
            "type": "product_detail_page_view",
            "anonymous_id": "anon-1",
            "timestamp": "2024-05-01T10:00:00.123Z",
            "product_ids": ["sku-1"],
            "context": {
                "page": {"url": "https://shop.example/p/sku-1"},
                "custom_context": {
                    "note": "He said \"great\"\nthen left; 'quoted' \\ back\tslash",
                    "source": "web",
                },
            },
        },
        {
            "type": "add_to_cart",
            "user_id": "u-7",
            "anonymous_id": "anon-1",
            "timestamp": "2024-05-01T10:01:00.000Z",
            "product_ids": ["sku-1"],
            "quantities": [2],
            "context": {"custom_context": {"source": "web"}},
        },
        {
            "type": "checkout",
            "user_id": "u-7",
            "anonymous_id": "anon-1",
            "timestamp": "2024-05-01T08:05:00.500Z",
            "product_ids": ["sku-1", "sku-2"],
            "quantities": [2, 1],
            "revenue": 25.5,
            "context": {"custom_context": {"source": "web"}},
        },
        {
            "type": "search",
            "anonymous_id": "anon-2",
            "timestamp": "2024-05-01T10:06:00.000Z",
            "search": {"keywords": 'red "running" shoes'},
            "context": {"custom_context": {"source": "web"}},
        },
        {
            "type": "add_to_cart",
            "user_id": "u-7",
            "timestamp": "2024-05-01T10:09:00.000Z",
            "product_ids": ["sku-3"],
            "quantities": [1],
            "context": {"custom_context": {"source": "web"}},
        },
    ]
    assert mapping.skipped == collections.Counter(
        {
            "public-events: filtered out": 1,
            "public-events: duplicate dedup_key": 1,
            "public-events: type: 'newsletter_open' not in the map": 1,
        },
    )


def test_ordered_rules_pick_the_first_matching_type() -> None:
    mapping = build_mapping(
        "clicks",
        {
            "clicks": {
                "preset": "custom",
                "type": [
                    {"when": "action == 'like' and sku", "type": "like"},
                    {
                        "when": "action == 'rate'",
                        "type": "rate",
                        "fields": {"rating": "float(stars) / 2"},
                    },
                    {"when": "action == 'noise'", "type": "skip"},
                    {
                        "type": "custom",
                        "fields": {"custom_action_name": "action.upper()"},
                    },
                ],
                "fields": {"user_id": "uid", "product_ids": "sku"},
            },
        },
    )
    rows = [
        {"uid": 1, "action": "like", "sku": 10},
        {"uid": 1, "action": "like", "sku": None},
        {"uid": 2, "action": "rate", "sku": "a", "stars": decimal.Decimal("7")},
        {"uid": 2, "action": "noise", "sku": "a"},
    ]
    out = [i for row in rows for i in mapping.map(row)]
    assert out == [
        {"type": "like", "user_id": "1", "product_ids": ["10"]},
        {"type": "custom", "user_id": "1", "custom_action_name": "LIKE"},
        {"type": "rate", "user_id": "2", "product_ids": ["a"], "rating": 3.5},
    ]
    assert all(VALIDATOR.reasons(i) == [] for i in out)
    assert mapping.skipped == collections.Counter({"clicks: type: skip": 1})


def test_lists_from_a_column_json_text_and_split_paths() -> None:
    mappings = {
        "cat": {
            "preset": "custom",
            "type": "category_page_view",
            "fields": {
                "anonymous_id": "visitor",
                "category": {"column": "path", "split": "/"},
                "timestamp": {"column": "ts", "epoch": "ms"},
                "context.custom_context.tags": "tags",
            },
        },
        "imp": {
            "preset": "custom",
            "type": "impression",
            "fields": {"anonymous_id": "visitor", "product_ids": "shown"},
        },
    }
    categories = build_mapping("cat", mappings)
    row = {"visitor": "v", "path": "/shoes/trail/", "ts": 1714557600123, "tags": '["a", "b"]'}
    assert categories.map(row) == [
        {
            "type": "category_page_view",
            "anonymous_id": "v",
            "category": ["shoes", "trail"],
            "timestamp": "2024-05-01T10:00:00.123Z",
            "context": {"custom_context": {"tags": '["a", "b"]'}},
        },
    ]
    impressions = build_mapping("imp", mappings)
    assert impressions.map({"visitor": "v", "shown": '[\n  "sku-1",\n  2\n]'}) == [
        {"type": "impression", "anonymous_id": "v", "product_ids": ["sku-1", "2"]},
    ]
    assert impressions.map({"visitor": "v", "shown": ["x", None, "y"]}) == [
        {"type": "impression", "anonymous_id": "v", "product_ids": ["x", "y"]},
    ]


def test_json_true_parses_text_only_where_it_is_asked() -> None:
    mappings = {
        "s": {
            "preset": "custom",
            "type": "home_page_view",
            "fields": {
                "anonymous_id": "visitor",
                "context.custom_context.meta": {"column": "meta", "json": True},
                "context.custom_context.raw": "meta",
            },
        },
    }
    mapping = build_mapping("s", mappings)
    (interaction,) = mapping.map({"visitor": "v", "meta": '{"ab": [1, 2]}'})
    assert interaction["context"]["custom_context"] == {
        "meta": {"ab": [1, 2]},
        "raw": '{"ab": [1, 2]}',
    }
    with pytest.raises(MappingError) as raised:
        mapping.map({"visitor": "v", "meta": "oops"})
    assert str(raised.value) == "context.custom_context.meta: 'oops' is not valid JSON"


def test_whole_context_object_is_refined_by_specific_paths_and_not_mutated() -> None:
    mapping = build_mapping(
        "s",
        {
            "s": {
                "preset": "custom",
                "type": "home_page_view",
                "fields": {
                    "anonymous_id": "a",
                    "context.page.title": "title",
                    "context": "ctx",
                },
            },
        },
    )
    ctx = {"page": {"url": "https://x/"}, "locale": "de-DE"}
    record = {"a": "v", "ctx": ctx, "title": 'Say "hi"\n'}
    assert mapping.map(record) == [
        {
            "type": "home_page_view",
            "anonymous_id": "v",
            "context": {"page": {"url": "https://x/", "title": 'Say "hi"\n'}, "locale": "de-DE"},
        },
    ]
    assert ctx == {"page": {"url": "https://x/"}, "locale": "de-DE"}


def test_page_without_url_is_dropped_from_context() -> None:
    mapping = build_mapping(
        "s",
        {
            "s": {
                "preset": "custom",
                "type": "home_page_view",
                "fields": {
                    "anonymous_id": "a",
                    "context.page.title": "title",
                    "context.page.url": "url",
                },
            },
        },
    )
    assert mapping.map({"a": "v", "title": "T", "url": None}) == [
        {"type": "home_page_view", "anonymous_id": "v"},
    ]


@pytest.mark.parametrize(
    ("row", "field", "reason_part"),
    [
        ({"a": "v", "price": None}, "revenue", "TypeError"),
        ({"a": "v", "price": 2, "ts": "yesterday"}, "timestamp", "not a date-time"),
        ({"a": "v", "price": 2, "ts": None, "items": "[oops"}, "product_ids", "not valid JSON"),
    ],
)
def test_a_record_that_fails_raises_mapping_error_naming_the_field(
    row: dict,
    field: str,
    reason_part: str,
) -> None:
    mapping = build_mapping(
        "orders",
        {
            "orders": {
                "preset": "custom",
                "type": "checkout",
                "fields": {
                    "anonymous_id": "a",
                    "revenue": "price * 1.2",
                    "timestamp": "ts",
                    "product_ids": {"column": "items", "key": "id"},
                },
            },
        },
    )
    with pytest.raises(MappingError) as caught:
        mapping.map({"ts": None, "items": None, **row})
    assert caught.value.field == field
    assert reason_part in caught.value.reason


def test_expressions_use_the_stream_map_helpers_and_record_aliases() -> None:
    mapping = build_mapping(
        "s",
        {
            "s": {
                "preset": "custom",
                "type": "read",
                "fields": {
                    "user_id": "md5(email)",
                    "product_ids": "record['article id']",
                    "duration": "int(seconds) if seconds else None",
                    "context.custom_context.stream": "__stream_name__",
                    "context.custom_context.parsed": "json.loads(meta)['k']",
                },
            },
        },
    )
    out = mapping.map({"email": "a@b.c", "article id": 7, "seconds": "42", "meta": '{"k": "v"}'})
    assert out == [
        {
            "type": "read",
            "user_id": hashlib.md5(b"a@b.c").hexdigest(),  # noqa: S324 - as the SDK helper
            "product_ids": ["7"],
            "duration": 42,
            "context": {"custom_context": {"stream": "s", "parsed": "v"}},
        },
    ]


def _nested(fields: dict) -> dict:
    """Nest dotted field paths the way Meltano does with the keys of meltano.yml."""
    nested: dict = {}
    for path, value in fields.items():
        *parents, last = path.split(".")
        place = nested
        for part in parents:
            place = place.setdefault(part, {})
        place[last] = value
    return nested


def test_nested_field_paths_mean_the_same_as_dotted_ones() -> None:
    # Meltano turns `context.page.url: page_url` in meltano.yml into nested objects, and only
    # the nested form survives JSON given in TARGET_MISO_MAPPINGS.
    schema, records = read_singer("custom_events.singer")[STREAM]
    nested = {
        **EVENTS_MAPPING,
        "fields": _nested(EVENTS_MAPPING["fields"]),
        "type": {
            **EVENTS_MAPPING["type"],
            "map": {
                **EVENTS_MAPPING["type"]["map"],
                "search": {"type": "search", "fields": {"search": {"keywords": "search_query"}}},
            },
        },
    }
    assert nested["fields"]["context"]["page"] == {"url": "page_url"}
    dotted_out, _ = run_stream({STREAM: EVENTS_MAPPING}, STREAM, schema, records)
    nested_out, _ = run_stream({STREAM: nested}, STREAM, schema, records)
    assert nested_out == dotted_out
    assert dotted_out[0]["context"]["page"] == {"url": "https://shop.example/p/sku-1"}


def test_a_path_given_both_dotted_and_nested_is_refused() -> None:
    fields = {"anonymous_id": "a", "context.locale": "x", "context": {"locale": "y"}}
    with pytest.raises(MappingConfigError) as caught:
        build_mapping("s", {"s": {"preset": "custom", "type": "home_page_view", "fields": fields}})
    assert caught.value.path == "mappings.s.fields.context.locale"
    assert "given twice" in caught.value.reason


def test_split_cuts_the_text_of_a_number_and_refuses_a_list() -> None:
    mapping = build_mapping(
        "cat",
        {
            "cat": {
                "preset": "custom",
                "type": "category_page_view",
                "fields": {"anonymous_id": "v", "category": {"column": "code", "split": "."}},
            },
        },
    )
    assert mapping.map({"v": "x", "code": decimal.Decimal("12.5")}) == [
        {"type": "category_page_view", "anonymous_id": "x", "category": ["12", "5"]},
    ]
    assert mapping.map({"v": "x", "code": 7})[0]["category"] == ["7"]
    with pytest.raises(MappingError) as caught:
        mapping.map({"v": "x", "code": ["a.b"]})
    assert caught.value.reasons == ["category: split '.' needs text or a number, got a list"]


def test_a_reject_names_every_failing_field() -> None:
    mapping = build_mapping(
        "orders",
        {
            "orders": {
                "preset": "custom",
                "type": "checkout",
                "fields": {
                    "anonymous_id": "a",
                    "product_ids": "sku",
                    "revenue": "price",
                    "timestamp": "ts",
                    "quantities": "qty * 2",
                },
            },
        },
    )
    with pytest.raises(MappingError) as caught:
        mapping.map({"a": "v", "sku": "s", "price": "N/A", "ts": "yesterday", "qty": None})
    assert caught.value.reasons == [
        "quantities: expression 'qty * 2' failed because 'qty' is null in this record (to "
        'leave the field out on a null, write "... if qty is not None else None"; '
        "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int')",
        "revenue: 'N/A' is not a number",
        "timestamp: 'yesterday' is not a date-time with seconds",
    ]


@pytest.mark.parametrize(
    ("expression", "shown"),
    [("float('nan')", "NaN"), ("float('inf')", "Infinity"), ("float(total)", "-Infinity")],
)
def test_nan_and_infinity_are_set_aside_naming_the_field(expression: str, shown: str) -> None:
    mapping = build_mapping(
        "orders",
        {
            "orders": {
                "preset": "custom",
                "type": "checkout",
                "fields": {"anonymous_id": "a", "product_ids": "sku", "revenue": expression},
            },
        },
    )
    (interaction,) = mapping.map({"a": "v", "sku": "s", "total": "-1e999"})
    assert VALIDATOR.reasons(interaction) == [
        f"revenue: {shown} is not a finite number (JSON has no NaN or Infinity)"
    ]


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "1e999"])
def test_numeric_text_that_is_not_finite_is_a_mapping_error(text: str) -> None:
    mapping = build_mapping(
        "orders",
        {
            "orders": {
                "preset": "custom",
                "type": "checkout",
                "fields": {"anonymous_id": "a", "product_ids": "sku", "revenue": "total"},
            },
        },
    )
    with pytest.raises(MappingError) as caught:
        mapping.map({"a": "v", "sku": "s", "total": text})
    assert caught.value.reasons[0].endswith("is not a finite number (JSON has no NaN or Infinity)")


def test_a_null_dedup_key_never_deduplicates_and_filtered_rows_are_not_remembered() -> None:
    mapping = build_mapping(
        "s",
        {
            "s": {
                "preset": "custom",
                "filter": "keep",
                "dedup_key": "k",
                "type": "home_page_view",
                "fields": {"anonymous_id": "a"},
            },
        },
    )
    rows = [
        {"a": "1", "k": None, "keep": True},
        {"a": "2", "k": None, "keep": True},
        {"a": "3", "k": "x", "keep": False},
        {"a": "4", "k": "x", "keep": True},
        {"a": "5", "k": "x", "keep": True},
    ]
    sent = [i["anonymous_id"] for row in rows for i in mapping.map(row)]
    assert sent == ["1", "2", "4"]
    assert mapping.skipped == collections.Counter(
        {"s: filtered out": 1, "s: duplicate dedup_key": 1}
    )


def test_the_dedup_store_remembers_delivered_keys_across_runs(tmp_path) -> None:
    options = {
        "preset": "custom",
        "dedup_key": "event_id",
        "dedup_store": str(tmp_path / "keys.sqlite"),
        "type": "product_detail_page_view",
        "fields": {"anonymous_id": "a", "product_ids": "sku"},
    }

    def run(rows: list[dict], refused: tuple[str, ...] = ()) -> list[str]:
        mapping = build_mapping("s", {"s": options})
        mapping.bind_environment("env-1")
        sent = []
        for row in rows:
            for interaction in mapping.map(row):
                if row["event_id"] in refused:  # set aside at validation or by Miso
                    mapping.refused(mapping.kept_source(row))
                else:
                    sent.append(interaction["product_ids"][0])
        mapping.commit(mapping.seal())
        mapping.close()
        return sent

    first = [{"event_id": 1, "a": "v", "sku": "p1"}, {"event_id": 2, "a": "v", "sku": "p2"}]
    assert run(first, refused=(2,)) == ["p1"]
    # The next incremental run re-reads the boundary row: delivered rows are not sent again,
    # the refused one is (after a fix), and so is a key of another stream or type.
    again = [
        *first,
        {"event_id": 3, "a": "v", "sku": "p3"},
        {"event_id": "1", "a": "v", "sku": "q"},
    ]
    assert run(again) == ["p2", "p3", "q"]
    assert run(again) == []
    other = build_mapping("s", {"s": options})
    other.bind_environment("env-2")  # another Miso environment: everything is sent there
    assert len(other.map(first[0])) == 1
    other.close()
