"""Allowed and required fields of every interaction type, and the fast check == jsonschema."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from target_miso.miso.schema import (
    ALL_FIELDS,
    ITEM_REQUIRED_TYPES,
    TYPE_FIELDS,
    TYPE_REQUIRED,
    InteractionValidator,
    allowed_fields,
    interaction_schema,
    is_valid_interaction,
)

VALIDATOR = InteractionValidator()

#: A valid value for every field (used to build minimal and maximal records).
SAMPLE_VALUES = {
    "user_id": "user-1",
    "anonymous_id": "anon-1",
    "timestamp": "2024-05-01T10:00:00.123Z",
    "miso_id": "3f0c8f5e-9a1b-4c2d-8e3f-0a1b2c3d4e5f",
    "context": {"page": {"url": "https://shop.example/p/1"}, "truncated_ip": "10.0.0.0"},
    "product_ids": ["sku-1"],
    "product_group_ids": ["grp-1"],
    "duration": 12.5,
    "quantities": [2],
    "revenue": 99.9,
    "rating": 4,
    "search": {"keywords": "red shoes"},
    "category": ["women", "shoes"],
    "custom_action_name": "wishlist_share",
    "question_id": "q-1",
    "result_type": "answer",
    "value": "helpful",
}


def minimal(interaction_type: str) -> dict:
    record = {"type": interaction_type, "user_id": "user-1"}
    for field in TYPE_REQUIRED.get(interaction_type, ()):
        record[field] = SAMPLE_VALUES[field]
    if interaction_type in ITEM_REQUIRED_TYPES:
        record["product_ids"] = ["sku-1"]
    return record


def test_the_schema_is_valid_draft_2020_12_and_names_29_types():
    jsonschema.Draft202012Validator.check_schema(interaction_schema())
    assert len(TYPE_FIELDS) == 29


@pytest.mark.parametrize("interaction_type", sorted(TYPE_FIELDS))
def test_every_type_accepts_its_minimal_and_its_full_record(interaction_type):
    full = {
        field: SAMPLE_VALUES[field] for field in allowed_fields(interaction_type) if field != "type"
    }
    full["type"] = interaction_type
    for record in (minimal(interaction_type), full):
        assert VALIDATOR.reasons(record) == []
        assert VALIDATOR.is_valid(record)


@pytest.mark.parametrize("interaction_type", sorted(TYPE_FIELDS))
def test_every_type_refuses_each_field_of_other_types_by_name(interaction_type):
    for field in set(ALL_FIELDS) - set(allowed_fields(interaction_type)):
        record = {**minimal(interaction_type), field: SAMPLE_VALUES[field]}
        assert VALIDATOR.reasons(record) == [f"{field}: not allowed on type {interaction_type!r}"]


@pytest.mark.parametrize(
    ("interaction_type", "field"),
    [(name, field) for name, fields in TYPE_REQUIRED.items() for field in fields],
)
def test_required_fields_are_enforced(interaction_type, field):
    record = minimal(interaction_type)
    del record[field]
    assert f"{field}: required on type {interaction_type!r}" in VALIDATOR.reasons(record)


@pytest.mark.parametrize("interaction_type", sorted(ITEM_REQUIRED_TYPES))
def test_item_centric_types_need_a_product(interaction_type):
    record = minimal(interaction_type)
    record["product_ids"] = []
    reasons = VALIDATOR.reasons(record)
    assert any(reason.startswith("product_ids: ") for reason in reasons)


@pytest.mark.parametrize(
    ("change", "reason_start"),
    [
        ({"user_id": None}, "user_id"),
        ({"type": "purchase"}, "type: 'purchase' is not a Miso interaction type"),
        ({"timestamp": "2024-05-01 10:00:00"}, "timestamp: "),
        ({"miso_id": "not-a-uuid"}, "miso_id: "),
        ({"event_id": "e-1"}, "event_id: not a Miso interaction field"),
        ({"context": {"page": {"title": "no url"}}}, "context.page: "),
        ({"context": {"custom_context": {"nested": {"a": 1}}}}, "context.custom_context.nested"),
    ],
)
def test_reasons_name_the_field(change, reason_start):
    record = {**minimal("product_detail_page_view"), **change}
    record = {k: v for k, v in record.items() if v is not None}
    reasons = VALIDATOR.reasons(record)
    assert any(reason.startswith(reason_start) for reason in reasons), reasons


def test_neither_identity_is_refused_with_that_reason():
    reasons = VALIDATOR.reasons({"type": "search", "search": {"keywords": "x"}})
    assert reasons == [
        "user_id/anonymous_id: neither is set (Miso would merge the record into one shared "
        "visitor)",
    ]


def test_quantities_need_one_value_per_product():
    record = {**minimal("checkout"), "product_ids": ["a", "b"], "quantities": [1]}
    assert VALIDATOR.reasons(record) == [
        "quantities: 1 values for 2 product_ids (Miso needs one per product)",
    ]


@pytest.mark.parametrize(
    ("interaction_type", "change", "reason"),
    [
        pytest.param(
            "add_to_cart",
            {"quantities": [-1]},
            "quantities: item 0: -1 is not above 0; each quantity must be greater than 0",
            id="negative-quantity",
        ),
        pytest.param(
            "add_to_cart",
            {"quantities": 0},
            "quantities: 0 is not above 0; each quantity must be greater than 0",
            id="zero-quantity",
        ),
        pytest.param(
            "add_to_cart",
            {"quantities": ["two"]},
            "quantities: item 0: 'two' is not a number; each quantity is a number above 0",
            id="text-quantity",
        ),
        pytest.param(
            "checkout",
            {"revenue": float("nan")},
            "revenue: NaN is not a finite number (JSON has no NaN or Infinity)",
            id="nan-revenue",
        ),
        pytest.param(
            "rate",
            {"rating": float("inf")},
            "rating: Infinity is not a finite number (JSON has no NaN or Infinity)",
            id="infinite-rating",
        ),
        pytest.param(
            "add_to_cart",
            {"quantities": [float("-inf")]},
            "quantities: item 0: -Infinity is not a finite number (JSON has no NaN or Infinity)",
            id="infinite-quantity",
        ),
        pytest.param(
            "like",
            {"context": {"custom_context": {"score": float("nan")}}},
            "context.custom_context.score: NaN is not a finite number (JSON has no NaN or "
            "Infinity)",
            id="nan-in-custom-context",
        ),
        pytest.param(
            "like",
            {"context": {"custom_context": {"dims": {"w": 1}}}},
            "context.custom_context.dims: {'w': 1} is not a value custom_context takes (a "
            "string, a finite number, a boolean, or a list of numbers, of strings or of flat "
            "objects)",
            id="object-in-custom-context",
        ),
    ],
)
def test_a_broken_rule_is_named_in_words(interaction_type, change, reason):
    # jsonschema says "is not valid under any of the given schemas" for an anyOf, and
    # "nan is not of type 'number'" for NaN: neither says what to fix.
    record = {**minimal(interaction_type), **change}
    if "quantities" in change:
        record["product_ids"] = ["a"]
    assert VALIDATOR.reasons(record) == [reason]


# --- The hand-written fast check must agree with jsonschema on any record ---------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 600),
    st.floats(-1, 6, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**70]),
    st.text(max_size=3),
    st.sampled_from(
        ["", "2024-05-01T10:00:00Z", "10.0.0.x", "3f0c8f5e-9a1b-4c2d-8e3f-0a1b2c3d4e5f"]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["url", "keywords", "filters", "page", "seq", "custom_context", "title"]
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=6,
)


@st.composite
def candidate_records(draw):
    # Mostly near-valid records (allowed fields, sample values) with a few changes, so
    # that both answers are well represented.
    interaction_type = draw(st.sampled_from([*TYPE_FIELDS, *TYPE_FIELDS, "nope"]))
    allowed = allowed_fields(interaction_type) if interaction_type in TYPE_FIELDS else ALL_FIELDS
    record = minimal(interaction_type) if interaction_type in TYPE_FIELDS else {"type": "nope"}
    for field in draw(st.lists(st.sampled_from(allowed), max_size=5, unique=True)):
        if field != "type":
            record[field] = SAMPLE_VALUES[field]
    for _ in range(draw(st.integers(0, 2))):
        field = draw(st.sampled_from([*ALL_FIELDS, "extra"]))
        if field != "type":
            record[field] = draw(_values)
    if draw(st.booleans()) and draw(st.booleans()):
        record.pop(
            draw(
                st.sampled_from(
                    ["user_id", "product_ids", *TYPE_REQUIRED.get(interaction_type, ())]
                )
            ),
            None,
        )
    return record


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidate_records())
def test_fast_check_agrees_with_jsonschema(record):
    assert is_valid_interaction(record) == VALIDATOR.is_valid(record)
