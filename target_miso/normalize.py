"""Value normalization shared by every mapping: timestamps, numbers, JSON text, empties.

Sources disagree on how they write the same value (a datetime or a string with a space,
``Decimal`` or a numeric string, a dict or its JSON text); Miso accepts one form. Each helper
raises ``ValueError`` with a short reason when a value cannot be converted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
import typing as t

from target_miso.miso.schema import ALL_FIELDS, STRUCTURED_FIELDS, not_finite

_UTC = dt.timezone.utc
# Already what Miso wants (the common case when a source is re-read): no parsing needed.
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
# "2024-05-01 10:00:00.123456" (or with T, fewer digits, none): naive, so taken as UTC.
_NAIVE = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?\Z")
_NUMBER_FIELDS = frozenset({"duration", "revenue", "rating"})
#: Fields that hold a list: one value becomes a one-item list (as in every preset).
LIST_FIELDS = frozenset({"product_ids", "product_group_ids", "category", "quantities"})
#: Text fields whose value may come as a number (ids): ``12345`` becomes ``"12345"``.
ID_FIELDS = frozenset(
    {"user_id", "anonymous_id", "miso_id", "custom_action_name", "question_id", "result_type"}
    | {"value"},
)
#: Fields whose text is sent as it is (others parse JSON text, or read numbers or times).
_TEXT_FIELDS = frozenset(ALL_FIELDS) - set(STRUCTURED_FIELDS) - _NUMBER_FIELDS - {"timestamp"}
_ID_LIST_FIELDS = frozenset({"product_ids", "product_group_ids"})


def to_utc_timestamp(value: object) -> str:
    """Write a point in time as Miso wants it: UTC, RFC 3339, milliseconds, ``Z``.

    Args:
        value: A ``datetime`` (naive values are taken as UTC) or an ISO 8601 string with
            ``T`` or a space, with or without fraction and offset.

    Returns:
        For example ``2024-05-01T10:00:00.123Z``.

    Raises:
        ValueError: If the value is not a point in time.

    """
    if isinstance(value, str):
        if _CANONICAL.match(value):
            return value
        naive = _NAIVE.match(value)
        if naive:  # a zone-less UTC time, the warehouses' usual form: no strftime needed
            day, time_of_day = naive.group(1), naive.group(2)
            try:
                dt.datetime.fromisoformat(f"{day}T{time_of_day}")  # a real date and time?
            except ValueError:
                msg = f"{value!r} is not an ISO 8601 date-time"
                raise ValueError(msg) from None
            return f"{day}T{time_of_day}.{(naive.group(3) or '')[:3]:0<3}Z"
        text = value.strip()
        if len(text) < 19:  # noqa: PLR2004 - shorter than YYYY-MM-DD HH:MM:SS
            msg = f"{value!r} is not a date-time with seconds"
            raise ValueError(msg)
        if text.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not read "Z"
            text = text[:-1] + "+00:00"
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            msg = f"{value!r} is not an ISO 8601 date-time"
            raise ValueError(msg) from None
    elif isinstance(value, dt.datetime):
        moment = value
    else:
        msg = f"{value!r} is not a date-time (give a datetime or an ISO 8601 string)"
        raise ValueError(msg)
    if moment.tzinfo is not None:
        moment = moment.astimezone(_UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def to_number(value: object) -> int | float:
    """Turn a Decimal, a numeric string or a number into a JSON number.

    Args:
        value: The value to convert.

    Returns:
        An int when the value is integral and was given as an int, else a float.

    Raises:
        ValueError: If the value is not numeric.

    """
    if type(value) is int or type(value) is float:
        return value  # NaN and Infinity included: validation sets them aside, naming them
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(not_finite(value))
        exponent = t.cast("int", value.as_tuple().exponent)  # an int for finite values
        return int(value) if value == value.to_integral_value() and exponent >= 0 else float(value)
    if isinstance(value, str):
        number = _parse_number(value)
        if number is not None:
            if not math.isfinite(number):  # 'NaN', 'Infinity', '1e999': said so, by name
                raise ValueError(not_finite(number))
            return number
    msg = f"{value!r} is not a number"
    raise ValueError(msg)


def _parse_number(text: str) -> int | float | None:
    # An integer where the text is one ("5"), else a float ("5.0", "1e3", "NaN"), else None.
    # Texts with a point or an exponent go straight to float (no failed int() on the way).
    for parse in (float,) if any(c in text for c in ".eE") else (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return None


def parse_json_text(value: object) -> object:
    """Parse JSON text (as Snowflake taps and TSV files give objects and arrays).

    Args:
        value: A string holding JSON, or an already structured value.

    Returns:
        The structured value.

    Raises:
        ValueError: If a string is not valid JSON.

    """
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        try:
            return json.loads(stripped, parse_float=float)
        except json.JSONDecodeError:
            msg = f"{_preview(value)} is not valid JSON"
            raise ValueError(msg) from None
    return value


def plain(value: object) -> object:  # noqa: PLR0911 - flat dispatch on the value's type
    """Make a value JSON-ready: Decimals become numbers, empties and nulls disappear.

    Args:
        value: Any value read from a Singer record.

    Returns:
        The cleaned value, or None when nothing is left of it.

    """
    kind = type(value)
    if kind is str:
        return value or None
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        cleaned = {}
        for key, item in value.items():  # type: ignore[attr-defined]
            # Most values are plain strings and numbers: keep them without a call.
            item_kind = type(item)
            if item_kind is str:
                if item:
                    cleaned[key] = item
                continue
            if item_kind is not int and item_kind is not float and item_kind is not bool:
                kept = plain(item)
                if kept is not None:
                    cleaned[key] = kept
                continue
            cleaned[key] = item
        return cleaned or None
    if kind is list:
        items = [item for item in map(plain, value) if item is not None]  # type: ignore[call-overload]
        return items or None
    if isinstance(value, decimal.Decimal):
        return to_number(value)
    if isinstance(value, dt.datetime):
        return to_utc_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def normalize_field(field: str, value: object) -> object:  # noqa: PLR0911 - flat dispatch on the field
    """Normalize one top-level interaction field by what Miso expects there.

    Args:
        field: The Miso field name.
        value: The raw value.

    Returns:
        The normalized value, or None when the field should be dropped.

    Raises:
        ValueError: If the value cannot take the form Miso needs.

    """
    if value is None or value == "":
        return None
    if field == "timestamp":
        return to_utc_timestamp(value)
    if type(value) is str and field in _TEXT_FIELDS:
        return value
    if type(value) is int and field in _TEXT_FIELDS:
        return str(value)  # an id read as a number: its exact digits, however many
    if field in STRUCTURED_FIELDS:
        value = parse_json_text(value)
        if field == "quantities":
            return _numbers(value)
        if field in _ID_LIST_FIELDS and type(value) is list:
            value = [str(item) if type(item) is int else item for item in value]
    elif field in _NUMBER_FIELDS:
        return to_number(value)
    return plain(value)


def normalize_interaction(
    record: t.Mapping[str, object],
    fields: t.Container[str] | None = None,
) -> tuple[dict[str, object], list[str]]:
    """Normalize every field of an interaction-shaped record (the passthrough preset).

    As in every preset, list fields given one value become one-item lists and ids given as
    numbers become text.

    Args:
        record: Field name to raw value.
        fields: Keep only these fields (None: all).

    Returns:
        The normalized record and the reasons of fields that could not be normalized
        (those fields keep their raw value so the rejects file shows it).

    """
    out: dict[str, object] = {}
    problems: list[str] = []
    for field, value in record.items():
        if value is None or (fields is not None and field not in fields):
            continue
        try:
            if field in LIST_FIELDS:
                value = as_list(field, value)  # noqa: PLW2901 - the field's coerced value
            elif field in ID_FIELDS:
                value = as_id_text(value)  # noqa: PLW2901
            normalized = normalize_field(field, value)
        except ValueError as error:
            problems.append(f"{field}: {error}")
            out[field] = plain(value)
            continue
        if normalized is not None:
            out[field] = normalized
    return out, problems


def as_id_text(value: object) -> object:
    """Ids and names read as numbers (``123``, ``Decimal('123')``) become ``"123"``.

    Args:
        value: An id or name as the source gave it.

    Returns:
        The text of a number; any other value unchanged.

    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(to_number(value))
    return value


def as_list(field: str, value: object) -> object:
    """Give a list field its list: one value becomes a one-item list, ids become text.

    Args:
        field: ``product_ids``, ``product_group_ids``, ``category`` or ``quantities``.
        value: One value, a list, or a JSON array as text.

    Returns:
        The list (items of id fields as text, nulls and empties left out).

    Raises:
        ValueError: If text that starts like a JSON array is not valid JSON.

    """
    items: list[t.Any] | tuple[t.Any, ...]
    if isinstance(value, str):
        stripped = value.lstrip()
        # A JSON array as text (Segment, Snowflake, Redshift); any other text is one value.
        # JSON text that starts with "[" parses to a list.
        items = (
            t.cast("list[t.Any]", parse_json_text(value)) if stripped.startswith("[") else [value]
        )
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]
    if field == "quantities":
        return list(items)
    return [as_id_text(item) for item in items if item is not None and item != ""]


def _numbers(value: object) -> object:
    if isinstance(value, list):
        return [to_number(item) for item in value if item is not None] or None
    return to_number(value)


def _preview(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
