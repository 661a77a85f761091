"""Miso's product and user records: allowed fields, the JSON Schema, and a checker with reasons.

The field tables below (Miso OpenAPI 1.1.4, ``ProductRecord`` and ``UserRecord``) are the
single source of truth: the JSON Schema, the hand-written checker (it runs on every record
and must stay cheap, like the interaction one), the field checks of catalog mappings and
the sandbox all read them. Both records refuse unknown fields (``additionalProperties:
false``); ids are strings of 1 to 512 characters that must not start with ``_``, and
product ids must not contain ``,``.
"""

from __future__ import annotations

import re
import typing as t

import jsonschema

from target_miso.miso.schema import TIMESTAMP_PATTERN

#: Catalog kind -> its id field (the kind is also the endpoint: ``/v1/<kind>``).
CATALOG_KINDS: dict[str, str] = {"products": "product_id", "users": "user_id"}
KINDS = CATALOG_KINDS

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: A scheme and something after it: what ``format: uri`` means in practice for a URL field.
URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$"

_ID = {"type": "string", "minLength": 1, "maxLength": 512, "pattern": "^[^_]"}
_STRING = {"type": "string"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_NUMBER = {"type": "number"}
_DATE = {
    "anyOf": [
        {"type": "string", "pattern": TIMESTAMP_PATTERN},
        {"type": "string", "pattern": DATE_PATTERN},
    ],
}
_URI = {"type": "string", "minLength": 1, "maxLength": 65536, "pattern": URI_PATTERN}
_SCALAR = {"type": ["string", "number", "boolean"]}
_CUSTOM_ATTRIBUTES = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            _SCALAR,
            {"type": "array", "items": {"type": "number"}},
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": _SCALAR},
            {"type": "array", "items": {"type": "object"}},
            {"type": "null"},
        ],
    },
}
_LOCATION_ONE = {
    "type": "object",
    "required": ["lat", "lon"],
    "properties": {"lat": _NUMBER, "lon": _NUMBER},
}
_CHILD = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": _STRING,
        "url": _STRING,
        "title": _STRING,
        "description": _STRING,
        "html": _STRING,
        "headers": _STRINGS,
        "custom_attributes": _CUSTOM_ATTRIBUTES,
    },
}

PRODUCT_FIELDS: dict[str, dict[str, t.Any]] = {
    "product_id": {**_ID, "pattern": "^[^_][^,]*$"},
    "product_group_id": {"type": "string", "minLength": 1, "maxLength": 512},
    "parent_id": {"type": "string", "minLength": 1, "maxLength": 512},
    "related_ids": _STRINGS,
    "type": _STRING,
    "title": _STRING,
    "description": _STRING,
    "short_description": _STRING,
    "language": {"type": "string", "minLength": 2},
    "created_at": _DATE,
    "published_at": _DATE,
    "updated_at": _DATE,
    "categories": {"type": "array", "items": _STRINGS},
    "tags": _STRINGS,
    "url": _URI,
    "cover_image": _URI,
    "original_price": _NUMBER,
    "sale_price": _NUMBER,
    "margin": _NUMBER,
    "size": _STRING,
    "color": _STRING,
    "material": _STRING,
    "condition": {"enum": ["NEW", "USED", "REFURBISHED"]},
    "brand": _STRING,
    "authors": _STRINGS,
    "publishers": _STRINGS,
    "collections": _STRINGS,
    "availability": {"enum": ["IN_STOCK", "OUT_OF_STOCK", "PRE_ORDER"]},
    "location": {"anyOf": [_LOCATION_ONE, {"type": "array", "items": _LOCATION_ONE}]},
    "rating": {"type": "number", "minimum": 0, "maximum": 5},
    "html": _STRING,
    "subtitle": _STRING,
    "headers": _STRINGS,
    "paragraphs": _STRINGS,
    "anchors": _STRINGS,
    "children": {"type": "array", "items": _CHILD},
    "enable_question_answering": {"type": "boolean"},
    "custom_attributes": _CUSTOM_ATTRIBUTES,
}

USER_FIELDS: dict[str, dict[str, t.Any]] = {
    "user_id": _ID,
    "created_at": _DATE,
    "updated_at": _DATE,
    "name": _STRING,
    "profile_image": _URI,
    "age": {"type": "integer"},
    "gender": _STRING,
    "city": _STRING,
    "state": _STRING,
    "country": _STRING,
    "group_id": _STRING,
    "description": _STRING,
    "custom_attributes": _CUSTOM_ATTRIBUTES,
}

FIELDS: dict[str, dict[str, dict[str, t.Any]]] = {"products": PRODUCT_FIELDS, "users": USER_FIELDS}
#: Fields holding lists or objects: JSON text in them is parsed (Snowflake gives VARIANT as text).
STRUCTURED = frozenset(
    name
    for fields in FIELDS.values()
    for name, schema in fields.items()
    if schema.get("type") in ("array", "object") or ("anyOf" in schema and name == "location")
)
#: Date or date-time fields.
DATES = frozenset(
    name for fields in FIELDS.values() for name, schema in fields.items() if schema is _DATE
)


def catalog_schema(kind: str) -> dict[str, t.Any]:
    """Build the JSON Schema (draft 2020-12) of one record for ``POST /v1/{kind}``.

    Args:
        kind: ``products`` or ``users``.

    Returns:
        A fresh schema dict.

    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:target-miso:{kind}:v1",
        "title": f"One record for POST /v1/{kind}",
        "type": "object",
        "required": [CATALOG_KINDS[kind]],
        "additionalProperties": False,
        "properties": {name: dict(schema) for name, schema in FIELDS[kind].items()},
    }


def catalog_reasons(kind: str, record: dict[str, t.Any]) -> list[str]:
    """Why Miso would refuse this product or user record; empty when it is valid.

    Args:
        kind: ``products`` or ``users``.
        record: The record, already normalized.

    Returns:
        One short sentence per problem, each starting with the field name.

    """
    id_field = CATALOG_KINDS[kind]
    reasons = []
    if id_field not in record:
        reasons.append(f"{id_field}: missing; every record of {kind} needs one")
    else:
        reasons += [f"{id_field}: {why}" for why in id_problems(kind, record[id_field])]
    for field, value in record.items():
        if field == id_field:
            continue
        check = _CHECKS.get((kind, field))
        if check is None:
            reasons.append(f"{field}: not a Miso {kind[:-1]} field")
            continue
        problem = check(value)
        if problem:
            reasons.append(f"{field}: {problem}")
    return reasons


class CatalogValidator:
    """Check product or user records: ``reasons`` (fast, explained), ``is_valid`` (jsonschema)."""

    def __init__(self, kind: str) -> None:
        """Prepare the checks of one catalog.

        Args:
            kind: ``products`` or ``users``.

        """
        self.kind = kind
        self.id_field = CATALOG_KINDS[kind]
        self._schema = jsonschema.Draft202012Validator(catalog_schema(kind))

    def reasons(self, record: dict[str, t.Any]) -> list[str]:
        """Return why Miso would refuse this record; empty when it is valid.

        Args:
            record: One mapped product or user record.

        Returns:
            One short sentence per problem, each starting with the field name.

        """
        return catalog_reasons(self.kind, record)

    def is_valid(self, record: dict[str, t.Any]) -> bool:
        """Ask jsonschema itself: the slow, authoritative answer (for tests).

        Args:
            record: One record.

        Returns:
            True when the record matches the JSON Schema.

        """
        return self._schema.is_valid(record)


def id_problems(kind: str, value: object) -> list[str]:
    """Say what is wrong with a product or user id.

    Args:
        kind: ``products`` or ``users``.
        value: The id.

    Returns:
        The problems; empty when the id is fine.

    """
    if type(value) is not str:
        return [f"must be a string, got {type(value).__name__}"]
    problems = []
    if not 1 <= len(value) <= 512:  # noqa: PLR2004
        problems.append(f"must be 1 to 512 characters, got {len(value)}")
    if value.startswith("_"):
        problems.append("must not start with '_'")
    if kind == "products" and "," in value:
        problems.append("must not contain ','")
    return problems


# --- Field checks: each returns None when the value is fine, else the reason ----------------

_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
_DATE_RE = re.compile(DATE_PATTERN)
_URI_RE = re.compile(URI_PATTERN)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    return type(value) in (str, bool) or _is_number(value)


def _check_string(value: object) -> str | None:
    return None if type(value) is str else f"expected a string, got {type(value).__name__}"


def _check_strings(value: object) -> str | None:
    if type(value) is not list or not all(type(item) is str for item in value):
        return "expected an array of strings"
    return None


def _check_number(value: object) -> str | None:
    return None if _is_number(value) else f"expected a number, got {type(value).__name__}"


def _check_date(value: object) -> str | None:
    if type(value) is str and (_TIMESTAMP_RE.match(value) or _DATE_RE.match(value)):
        return None
    return f"{str(value)[:40]!r} is not an ISO 8601 date or date-time"


def _check_uri(value: object) -> str | None:
    if type(value) is str and 1 <= len(value) <= 65536 and _URI_RE.match(value):  # noqa: PLR2004
        return None
    return f"{str(value)[:60]!r} is not a URI (e.g. https://example.com/page)"


def _check_bounded_string(low: int, high: int | None = None) -> t.Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if type(value) is not str:
            return f"expected a string, got {type(value).__name__}"
        if len(value) < low or (high is not None and len(value) > high):
            return f"must be {low} to {high or 'any number of'} characters, got {len(value)}"
        return None

    return check


def _check_enum(*allowed: str) -> t.Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in allowed else f"{value!r} is not one of {', '.join(allowed)}"

    return check


def _check_categories(value: object) -> str | None:
    if type(value) is list and all(_check_strings(item) is None for item in value):
        return None
    return "expected an array of arrays of strings, broad to narrow (e.g. [['Toys', 'Dolls']])"


def _is_location(value: object) -> bool:
    return type(value) is dict and _is_number(value.get("lat")) and _is_number(value.get("lon"))


def _check_location(value: object) -> str | None:
    if _is_location(value) or (type(value) is list and all(_is_location(v) for v in value)):
        return None
    return "expected {lat, lon} numbers or a list of them"


def _check_rating(value: object) -> str | None:
    if _is_number(value) and 0 <= value <= 5:  # type: ignore[operator]  # noqa: PLR2004
        return None
    return f"{value!r} is not a number from 0 to 5"


def _check_age(value: object) -> str | None:
    if type(value) is int or (type(value) is float and value.is_integer()):
        return None
    return f"{value!r} is not an integer"


def _check_boolean(value: object) -> str | None:
    return None if type(value) is bool else f"expected true or false, got {value!r}"


def _custom_value_ok(value: object) -> bool:
    if value is None or _is_scalar(value):
        return True
    if type(value) is dict:
        return all(_is_scalar(item) for item in value.values())
    if type(value) is not list:
        return False
    return (
        all(_is_number(item) for item in value)
        or all(type(item) is str for item in value)
        or all(type(item) is dict for item in value)
    )


def _check_custom_attributes(value: object) -> str | None:
    if type(value) is not dict:
        return f"expected an object, got {type(value).__name__}"
    bad = [key for key, item in value.items() if not _custom_value_ok(item)]
    if bad:
        return (
            f"{bad[0]!r}: a value must be a string, number, boolean, an object of those, or "
            "an array of numbers, of strings or of objects"
        )
    return None


def _check_children(value: object) -> str | None:
    if type(value) is list and all(type(c) is dict and type(c.get("id")) is str for c in value):
        return None
    return "expected an array of objects, each with a string id"


# The shared field schemas of the tables above (matched by identity) and their checks.
_SHARED_CHECKS: tuple[tuple[dict[str, t.Any], t.Callable[[object], str | None]], ...] = (
    (_STRING, _check_string),
    (_STRINGS, _check_strings),
    (_NUMBER, _check_number),
    (_DATE, _check_date),
    (_URI, _check_uri),
    (_CUSTOM_ATTRIBUTES, _check_custom_attributes),
)


def _check_for(schema: dict[str, t.Any]) -> t.Callable[[object], str | None]:
    """Return the hand-written check for a field schema of the tables above."""
    for shared, check in _SHARED_CHECKS:
        if schema is shared:
            return check
    if "enum" in schema:
        return _check_enum(*schema["enum"])
    if schema.get("type") == "string":
        return _check_bounded_string(schema.get("minLength", 0), schema.get("maxLength"))
    msg = f"no check for {schema}"
    raise LookupError(msg)


_SPECIAL_CHECKS: dict[str, t.Callable[[object], str | None]] = {
    "categories": _check_categories,
    "location": _check_location,
    "rating": _check_rating,
    "age": _check_age,
    "enable_question_answering": _check_boolean,
    "children": _check_children,
}

_CHECKS: dict[tuple[str, str], t.Callable[[object], str | None]] = {
    (kind, field): _SPECIAL_CHECKS.get(field) or _check_for(schema)
    for kind, fields in FIELDS.items()
    for field, schema in fields.items()
    if field != CATALOG_KINDS[kind]
}
