"""Normalization of the values sources give: timestamps, numbers, JSON text, empties."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest

from target_miso.mappings.base import MappingError
from target_miso.mappings.passthrough import PassthroughMapping
from target_miso.normalize import (
    normalize_interaction,
    parse_json_text,
    plain,
    to_number,
    to_utc_timestamp,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:00.123456Z", "2024-05-01T10:00:00.123Z"),
        ("2024-05-01 10:00:00.123", "2024-05-01T10:00:00.123Z"),  # Snowplow TSV: naive UTC
        ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00.000Z"),
        ("2024-05-01T10:00:20.123000+00:00", "2024-05-01T10:00:20.123Z"),  # SDK taps
        ("2024-04-30T23:30:00-05:00", "2024-05-01T04:30:00.000Z"),
        (dt.datetime(2024, 5, 1, 10, 0, 0, 5000), "2024-05-01T10:00:00.005Z"),  # naive = UTC
        (
            dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2024-05-01T10:00:00.000Z",
        ),
    ],
)
def test_timestamps_become_utc_rfc3339_with_milliseconds_and_z(value, expected):
    assert to_utc_timestamp(value) == expected


@pytest.mark.parametrize(
    "value", ["yesterday", "2024-05-01", 1717200000, "2024-13-01 10:00:00", None]
)
def test_values_that_are_not_points_in_time_are_refused_with_the_value(value):
    with pytest.raises(ValueError, match="date-time"):
        to_utc_timestamp(value)


def test_numbers_from_decimals_and_strings():
    assert to_number(decimal.Decimal("25.50")) == 25.5
    assert to_number(decimal.Decimal("3")) == 3
    assert isinstance(to_number(decimal.Decimal("3")), int)
    assert to_number("12.75") == 12.75
    assert to_number("4") == 4
    with pytest.raises(ValueError, match="not a number"):
        to_number("twelve")


def test_json_text_is_parsed_and_structured_values_kept():
    assert parse_json_text('{\n  "terms": [\n    "red"\n  ]\n}') == {"terms": ["red"]}
    assert parse_json_text(["a"]) == ["a"]
    assert parse_json_text("  ") is None
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_text("{oops")


def test_plain_drops_nulls_and_empties_recursively_and_converts_decimals():
    value = {
        "a": None,
        "b": "",
        "c": [],
        "d": {"e": None},
        "f": [decimal.Decimal("1.5"), None],
        "g": 0,
    }
    assert plain(value) == {"f": [1.5], "g": 0}


def test_passthrough_normalizes_every_field_and_keeps_only_miso_fields():
    mapping = PassthroughMapping({}, stream_name="s", config_path="mappings.s")
    record = {
        "type": "checkout",
        "user_id": "u-1",
        "anonymous_id": "",
        "timestamp": "2024-05-01 10:00:00",
        "product_ids": '["a", "b"]',
        "quantities": [decimal.Decimal("1"), decimal.Decimal("2.0")],
        "revenue": decimal.Decimal("25.50"),
        "context": '{"page": {"url": "https://x.example/", "title": null}}',
        "order_id": "o-1",
        "_sdc_extracted_at": "2024-05-01T10:00:00Z",
    }
    assert mapping.map(record) == [
        {
            "type": "checkout",
            "user_id": "u-1",
            "timestamp": "2024-05-01T10:00:00.000Z",
            "product_ids": ["a", "b"],
            "quantities": [1, 2.0],
            "revenue": 25.5,
            "context": {"page": {"url": "https://x.example/"}},
        },
    ]


def test_passthrough_names_the_field_it_cannot_normalize():
    mapping = PassthroughMapping({}, stream_name="s", config_path="mappings.s")
    with pytest.raises(MappingError) as caught:
        mapping.map({"type": "read", "user_id": "u", "timestamp": "soon", "product_ids": ["p"]})
    assert caught.value.field == "timestamp"


def test_normalize_interaction_keeps_the_raw_value_of_a_field_it_cannot_convert():
    record, problems = normalize_interaction({"revenue": "lots", "user_id": "u"})
    assert record == {"revenue": "lots", "user_id": "u"}
    assert problems == ["revenue: 'lots' is not a number"]


@pytest.mark.parametrize("text", ["Infinity", "-Infinity", "NaN"])
def test_a_decimal_that_is_not_finite_is_not_a_number(text):
    with pytest.raises(ValueError, match="not a finite number"):
        to_number(decimal.Decimal(text))
