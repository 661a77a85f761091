"""Miso's interaction record: allowed fields per type, the JSON Schema, and its validator.

The per-type tables below are the single source of truth. The JSON Schema (draft 2020-12)
is generated from them, so the validator, the sandbox API and the mapping configuration
checks can never disagree about which field belongs to which type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import math
import re
import typing as t

import jsonschema

COMMON_FIELDS = ("type", "user_id", "anonymous_id", "timestamp", "miso_id", "context")
ITEM_FIELDS = ("product_ids", "product_group_ids")

#: Extra fields each interaction type accepts besides COMMON_FIELDS (Miso OpenAPI 1.1.4).
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "product_detail_page_view": (*ITEM_FIELDS, "duration"),
    "search": ("search",),
    "add_to_cart": (*ITEM_FIELDS, "quantities"),
    "remove_from_cart": ITEM_FIELDS,
    "checkout": (*ITEM_FIELDS, "quantities", "revenue"),
    "refund": ITEM_FIELDS,
    "subscribe": ITEM_FIELDS,
    "unsubscribe": ITEM_FIELDS,
    "read": (*ITEM_FIELDS, "duration"),
    "watch": (*ITEM_FIELDS, "duration"),
    "listen": (*ITEM_FIELDS, "duration"),
    "complete": ITEM_FIELDS,
    "add_to_collection": ITEM_FIELDS,
    "remove_from_collection": ITEM_FIELDS,
    "like": ITEM_FIELDS,
    "dislike": ITEM_FIELDS,
    "share": ITEM_FIELDS,
    "rate": (*ITEM_FIELDS, "rating"),
    "bookmark": ITEM_FIELDS,
    "feedback": ("question_id", "result_type", "value"),
    "impression": ITEM_FIELDS,
    "viewable_impression": ITEM_FIELDS,
    "click": ITEM_FIELDS,
    "submit": ITEM_FIELDS,
    "home_page_view": ("duration",),
    "category_page_view": ("duration", "category"),
    "promo_page_view": (*ITEM_FIELDS, "duration"),
    "product_image_view": ITEM_FIELDS,
    "custom": (*ITEM_FIELDS, "custom_action_name"),
}

INTERACTION_TYPES: tuple[str, ...] = tuple(TYPE_FIELDS)

#: Fields a type must carry (Miso's prose and this project's policy, see README).
TYPE_REQUIRED: dict[str, tuple[str, ...]] = {
    "custom": ("custom_action_name",),
    "rate": ("rating",),
    "search": ("search",),
    "category_page_view": ("category",),
}

#: Item-centric types: they need product_ids or product_group_ids. The performance
#: events, promo_page_view and custom may describe non-catalog subjects and are exempt.
ITEM_REQUIRED_TYPES = frozenset(
    {
        "product_detail_page_view", "add_to_cart", "remove_from_cart", "checkout", "refund",
        "subscribe", "unsubscribe", "add_to_collection", "remove_from_collection", "read",
        "watch", "listen", "complete", "like", "dislike", "share", "rate", "bookmark",
        "product_image_view",
    },
)  # fmt: skip

ALL_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(COMMON_FIELDS + tuple(f for fs in TYPE_FIELDS.values() for f in fs)),
)

#: Fields whose values are JSON objects or arrays (a source may give them as JSON text).
STRUCTURED_FIELDS = frozenset(
    {"context", "search", "product_ids", "product_group_ids", "category", "quantities"},
)

TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
IPV4_PATTERN = r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$"

_ID_LIST = {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 512}}
_SCALAR = {"type": ["string", "number", "boolean"]}
_MAX_RATING = 5

_CONTEXT = {
    "type": "object",
    "properties": {
        "campaign": {
            "type": "object",
            "properties": {
                key: {"type": "string"} for key in ("name", "source", "medium", "term", "content")
            },
        },
        "truncated_ip": {"type": "string", "pattern": IPV4_PATTERN},
        "locale": {"type": "string"},
        "region": {"type": "string"},
        "page": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "referrer": {"type": "string"},
                "title": {"type": "string"},
            },
        },
        "user_agent": {"type": "string"},
        "custom_context": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    _SCALAR,
                    {"type": "array", "items": {"type": "number"}},
                    {"type": "array", "items": {"type": "string"}},
                    {
                        "type": "array",
                        "items": {"type": "object", "additionalProperties": _SCALAR},
                    },
                ],
            },
        },
    },
}

_FIELD_SCHEMAS: dict[str, dict[str, t.Any]] = {
    "type": {"enum": list(INTERACTION_TYPES)},
    "user_id": {"type": "string", "minLength": 1, "maxLength": 512},
    "anonymous_id": {"type": "string", "minLength": 1, "maxLength": 1024},
    "timestamp": {"type": "string", "pattern": TIMESTAMP_PATTERN},
    "miso_id": {"type": "string", "pattern": UUID_PATTERN},
    "product_ids": _ID_LIST,
    "product_group_ids": _ID_LIST,
    "duration": {"type": "number", "minimum": 0},
    "quantities": {
        "anyOf": [
            {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}},
            {"type": "number", "exclusiveMinimum": 0},
        ],
    },
    "revenue": {"type": "number"},
    "rating": {"type": "number", "minimum": 0, "maximum": _MAX_RATING},
    "search": {
        "type": "object",
        "properties": {
            "keywords": {"type": "string"},
            "filters": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "anyOf": [
            {"required": ["keywords"], "properties": {"keywords": {"minLength": 1}}},
            {"required": ["filters"], "properties": {"filters": {"minProperties": 1}}},
        ],
    },
    "category": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
    "custom_action_name": {"type": "string", "minLength": 1},
    "question_id": {"type": "string", "maxLength": 512},
    "result_type": {"type": "string"},
    "value": {"type": "string"},
    "context": _CONTEXT,
}


def not_finite(value: float | decimal.Decimal) -> str:
    """Say why NaN or Infinity cannot be sent (JSON has neither; orjson would write null).

    Args:
        value: A float or Decimal that is not finite.

    Returns:
        E.g. ``NaN is not a finite number (JSON has no NaN or Infinity)``.

    """
    nan = value.is_nan() if isinstance(value, decimal.Decimal) else math.isnan(value)
    shown = "NaN" if nan else ("-Infinity" if value < 0 else "Infinity")
    return f"{shown} is not a finite number (JSON has no NaN or Infinity)"


def allowed_fields(interaction_type: str) -> tuple[str, ...]:
    """Return every top-level field an interaction of this type may carry.

    Args:
        interaction_type: One of INTERACTION_TYPES.

    Returns:
        The common fields followed by the type's own fields.

    """
    return COMMON_FIELDS + TYPE_FIELDS[interaction_type]


def _type_rule(interaction_type: str) -> dict[str, t.Any]:
    then: dict[str, t.Any] = {"propertyNames": {"enum": list(allowed_fields(interaction_type))}}
    if interaction_type in TYPE_REQUIRED:
        then["required"] = list(TYPE_REQUIRED[interaction_type])
    if interaction_type in ITEM_REQUIRED_TYPES:
        then["anyOf"] = [
            {"required": [field], "properties": {field: {"minItems": 1}}} for field in ITEM_FIELDS
        ]
    return {"if": {"properties": {"type": {"const": interaction_type}}}, "then": then}


def interaction_schema() -> dict[str, t.Any]:
    """Build the JSON Schema (draft 2020-12) of one record for ``POST /v1/interactions``.

    Returns:
        A fresh schema dict; callers may modify it.

    """
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:target-miso:interaction:v1",
        "title": "One record for POST /v1/interactions",
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {field: dict(_FIELD_SCHEMAS[field]) for field in ALL_FIELDS},
        "anyOf": [{"required": ["user_id"]}, {"required": ["anonymous_id"]}],
        "allOf": [_type_rule(name) for name in INTERACTION_TYPES],
    }


def _is_finite_number(checker: object, instance: object) -> bool:
    return jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number") and (
        type(instance) is int or math.isfinite(instance)  # type: ignore[arg-type]
    )


#: Draft 2020-12, where a number is finite: JSON has no NaN or Infinity, and Miso refuses
#: them (the standard library reads them; orjson would send them as null).
FiniteNumberValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _is_finite_number),
)


def _field_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


class InteractionValidator:
    """Check interaction records against the schema and explain every failure.

    ``reasons()`` is on the hot path: it runs a compiled yes/no check first and only asks
    jsonschema for the (slower) detailed errors when a record is invalid.
    """

    def __init__(self, max_future_seconds: float | None = None) -> None:
        """Set the future limit of timestamps.

        Args:
            max_future_seconds: A ``timestamp`` more than this many seconds ahead of the
                clock is refused (the ``max_future_timestamp_seconds`` setting); None: no limit.

        """
        self.max_future_seconds = max_future_seconds
        #: The latest timestamp allowed, in the normalized form (``...sssZ``): normalized
        #: timestamps compare as strings, so the hot path parses nothing. Moved forward
        #: (with the clock) only when a timestamp passes it.
        self._future_bound = "" if max_future_seconds is None else self._next_bound()

    def _next_bound(self) -> str:
        ahead = dt.timedelta(seconds=self.max_future_seconds or 0)
        moment = dt.datetime.now(dt.timezone.utc) + ahead
        return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"

    def _too_far_ahead(self, timestamp: str) -> bool:
        # Called only for a timestamp past the bound, or one not in the normalized form.
        if timestamp[-1:] != "Z" or len(timestamp) != len(self._future_bound):
            try:
                moment = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            except ValueError:
                return False  # the pattern check reports it
            moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
            moment = moment.astimezone(dt.timezone.utc)
            timestamp = f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
        if timestamp <= self._future_bound:
            return False
        self._future_bound = self._next_bound()
        return timestamp > self._future_bound

    def _future_reasons(self, timestamp: str) -> list[str]:
        if not self._too_far_ahead(timestamp):
            return []
        return [
            f"timestamp: more than {self.max_future_seconds:g} s in the future (later than "
            f"{self._future_bound}); max_future_timestamp_seconds sets the limit (null: none)",
        ]

    @functools.cached_property
    def _is_valid(self) -> t.Callable[[t.Any], bool]:
        # Built on first use: compiling it cost 0.2 s of every run's start-up, and the hot
        # path never needs it (tests/miso/test_schema.py checks the schema itself).
        return FiniteNumberValidator(interaction_schema()).is_valid

    def reasons(self, record: dict[str, t.Any]) -> list[str]:
        """Return why this record would be refused by Miso; empty when it is valid.

        Args:
            record: One interaction record, already normalized.

        Returns:
            One short sentence per problem, each naming the field.

        """
        if is_valid_interaction(record):
            reasons = _count_mismatch(record)
        else:
            reasons = _count_mismatch(record) + self._explain(record)
        bound = self._future_bound
        if bound:
            timestamp = record.get("timestamp")
            if type(timestamp) is str and (timestamp > bound or timestamp[-1:] != "Z"):
                reasons += self._future_reasons(timestamp)
        return reasons

    def is_valid(self, record: dict[str, t.Any]) -> bool:
        """Ask jsonschema itself: the slow, authoritative answer (used by tests and the sandbox).

        Args:
            record: One interaction record.

        Returns:
            True when the record matches the JSON Schema.

        """
        return self._is_valid(record)

    def _explain(self, record: dict[str, t.Any]) -> list[str]:
        interaction_type = record.get("type")
        if interaction_type not in TYPE_FIELDS:
            if "type" not in record:
                return ["type: missing; every interaction needs a type"]
            return [f"type: {interaction_type!r} is not a Miso interaction type"]
        allowed = set(allowed_fields(interaction_type))
        reasons = [
            f"{field}: not allowed on type {interaction_type!r}"
            for field in record
            if field not in allowed and field in _FIELD_SCHEMAS
        ]
        reasons += [
            f"{field}: not a Miso interaction field"
            for field in record
            if field not in _FIELD_SCHEMAS
        ]
        if not record.get("user_id") and not record.get("anonymous_id"):
            reasons.append(
                "user_id/anonymous_id: neither is set (Miso would merge the record into "
                "one shared visitor)",
            )
        for field in TYPE_REQUIRED.get(interaction_type, ()):
            if field not in record:
                reasons.append(f"{field}: required on type {interaction_type!r}")
        if interaction_type in ITEM_REQUIRED_TYPES and not any(
            record.get(field) for field in ITEM_FIELDS
        ):
            reasons.append(
                f"product_ids: type {interaction_type!r} needs product_ids or "
                "product_group_ids (non-empty)",
            )
        for field, value in record.items():
            if field not in allowed or field not in _FIELD_SCHEMAS:
                continue
            sub = FiniteNumberValidator(_FIELD_SCHEMAS[field])
            for error in sub.iter_errors(value):
                path = _field_path(error)
                where = f"{field}.{path}" if path else field
                reasons.append(f"{where}: {_describe(error, field, path)}")
        return reasons or ["record: does not match the interaction schema"]


def _is_not_finite(value: object) -> t.TypeGuard[float | decimal.Decimal]:
    return isinstance(value, (float, decimal.Decimal)) and not (
        math.isfinite(value) if isinstance(value, float) else value.is_finite()
    )


def _describe(error: jsonschema.ValidationError, field: str, path: str) -> str:
    """Say which rule a value breaks, in words (jsonschema's anyOf message names none)."""
    instance = error.instance
    if _is_not_finite(instance):
        return not_finite(instance)
    if error.validator == "pattern":
        return f"{instance!r} is not in the expected format"
    if field == "search" and not path and error.validator == "anyOf":
        return "needs non-empty keywords or at least one filter"
    if field == "quantities":
        return _quantities_problem(instance)
    if field == "context" and path.startswith("custom_context.") and error.validator == "anyOf":
        return (
            f"{_shown(instance)} is not a value custom_context takes (a string, a finite number, "
            "a boolean, or a list of numbers, of strings or of flat objects)"
        )
    return error.message


def _quantities_problem(value: object) -> str:
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        where = f"item {index}: " if isinstance(value, list) else ""
        if _is_not_finite(item):
            return where + not_finite(item)
        if not _is_number(item):
            return f"{where}{_shown(item)} is not a number; each quantity is a number above 0"
        if item <= 0:
            return f"{where}{item} is not above 0; each quantity must be greater than 0"
    return "expected a number above 0, or a list of them"


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _count_mismatch(record: dict[str, t.Any]) -> list[str]:
    """Miso needs one quantity per product; JSON Schema cannot say that."""
    quantities = record.get("quantities")
    products = record.get("product_ids")
    if isinstance(quantities, list) and isinstance(products, list):
        if len(quantities) != len(products):
            return [
                f"quantities: {len(quantities)} values for {len(products)} product_ids "
                "(Miso needs one per product)",
            ]
    return []


# --- The fast check --------------------------------------------------------------------
# jsonschema needs ~500 us per record on this schema (29 if/then branches), fastjsonschema
# ~50 us; the hand-written check below needs a few. It implements exactly the generated
# schema, built from the same tables, and tests/miso/test_schema.py proves the two agree on
# generated records. Keep them in step: change a table, never one side alone.

_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)
_UUID_RE = re.compile(UUID_PATTERN)
_IPV4_RE = re.compile(IPV4_PATTERN)
_ALLOWED = {name: frozenset(allowed_fields(name)) for name in INTERACTION_TYPES}
_CAMPAIGN_KEYS = ("name", "source", "medium", "term", "content")


def _is_number(value: object) -> bool:
    # Finite only: NaN and Infinity are not JSON numbers (FiniteNumberValidator agrees).
    kind = type(value)
    if kind is int:
        return True
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_str(value: object, min_length: int = 0, max_length: int | None = None) -> bool:
    if type(value) is not str:
        return False
    size = len(value)
    return size >= min_length and (max_length is None or size <= max_length)


def _is_id_list(value: object) -> bool:
    return type(value) is list and all(_is_str(item, 1, 512) for item in value)


def _is_scalar(value: object) -> bool:
    return type(value) is str or type(value) is bool or _is_number(value)


def _is_custom_value(value: object) -> bool:
    if _is_scalar(value):
        return True
    if type(value) is not list:
        return False
    return (
        all(_is_number(item) for item in value)
        or all(type(item) is str for item in value)
        or all(type(item) is dict and all(_is_scalar(v) for v in item.values()) for item in value)
    )


def _is_page(value: object) -> bool:
    if type(value) is not dict or not _is_str(value.get("url"), 1):
        return False
    return not any(k in value and type(value[k]) is not str for k in ("referrer", "title"))


def _is_campaign(value: object) -> bool:
    return type(value) is dict and not any(
        k in value and type(value[k]) is not str for k in _CAMPAIGN_KEYS
    )


def _is_custom_context(value: object) -> bool:
    return type(value) is dict and all(_is_custom_value(v) for v in value.values())


_CONTEXT_CHECKS: dict[str, t.Callable[[t.Any], bool]] = {
    "page": _is_page,
    "campaign": _is_campaign,
    "truncated_ip": lambda v: type(v) is str and _IPV4_RE.match(v) is not None,
    "locale": lambda v: type(v) is str,
    "region": lambda v: type(v) is str,
    "user_agent": lambda v: type(v) is str,
    "custom_context": _is_custom_context,
}


def _is_context(context: object) -> bool:
    if type(context) is not dict:
        return False
    for key, value in context.items():
        check = _CONTEXT_CHECKS.get(key)
        if check is not None and not check(value):
            return False
    return True


def _is_search(search: object) -> bool:
    if type(search) is not dict:
        return False
    keywords = search.get("keywords")
    filters = search.get("filters")
    if "keywords" in search and type(keywords) is not str:
        return False
    if "filters" in search and (
        type(filters) is not dict
        or not all(type(v) is list and all(type(i) is str for i in v) for v in filters.values())
    ):
        return False
    return bool(keywords) or bool(filters)


def _is_quantities(value: object) -> bool:
    if type(value) is list:
        return all(_is_number(item) and item > 0 for item in value)
    return _is_number(value) and value > 0  # type: ignore[operator]


_FIELD_CHECKS: dict[str, t.Callable[[t.Any], bool]] = {
    "user_id": lambda v: _is_str(v, 1, 512),
    "anonymous_id": lambda v: _is_str(v, 1, 1024),
    "timestamp": lambda v: type(v) is str and _TIMESTAMP_RE.match(v) is not None,
    "miso_id": lambda v: type(v) is str and _UUID_RE.match(v) is not None,
    "product_ids": _is_id_list,
    "product_group_ids": _is_id_list,
    "duration": lambda v: _is_number(v) and v >= 0,
    "quantities": _is_quantities,
    "revenue": _is_number,
    "rating": lambda v: _is_number(v) and 0 <= v <= _MAX_RATING,
    "search": _is_search,
    "category": lambda v: type(v) is list and len(v) > 0 and all(_is_str(i, 1) for i in v),
    "custom_action_name": lambda v: _is_str(v, 1),
    "question_id": lambda v: _is_str(v, 0, 512),
    "result_type": lambda v: type(v) is str,
    "value": lambda v: type(v) is str,
    "context": _is_context,
}


def is_valid_interaction(record: dict[str, t.Any]) -> bool:  # noqa: PLR0911 - early rejections, one per rule
    """Tell whether a record matches the interaction JSON Schema, quickly.

    Args:
        record: One interaction record.

    Returns:
        The same answer as jsonschema on ``interaction_schema()``.

    """
    if type(record) is not dict:
        return False
    interaction_type = record.get("type")
    allowed = _ALLOWED.get(interaction_type) if type(interaction_type) is str else None
    if allowed is None or not ("user_id" in record or "anonymous_id" in record):
        return False
    for field, value in record.items():
        if field not in allowed:
            return False
        check = _FIELD_CHECKS.get(field)
        if check is not None and not check(value):
            return False
    # A str here: _ALLOWED knows the type.
    for field in TYPE_REQUIRED.get(t.cast("str", interaction_type), ()):
        if field not in record:
            return False
    if interaction_type in ITEM_REQUIRED_TYPES:
        return bool(record.get("product_ids")) or bool(record.get("product_group_ids"))
    return True
