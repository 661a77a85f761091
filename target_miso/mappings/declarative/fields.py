"""Where a value goes in an interaction (field paths) and where it comes from (value specs).

A *field path* names a Miso field or a place inside one: ``revenue``, ``context.page.url``,
``context.custom_context.app_id``, ``search.keywords``. ``build_interaction`` turns a
flat ``{path: value}`` dict into a normalized interaction; every preset uses it, so the
coercions (ids to strings, one-value lists, JSON text, timestamps) are the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import typing as t

from target_miso.mappings.base import MappingConfigError, MappingError, raise_errors
from target_miso.mappings.declarative.expressions import Expression
from target_miso.miso.schema import ALL_FIELDS, not_finite
from target_miso.normalize import as_id_text as _as_text
from target_miso.normalize import as_list as _as_list
from target_miso.normalize import normalize_field, parse_json_text, plain, to_number

if t.TYPE_CHECKING:
    from target_miso.mappings.declarative.expressions import Scope

#: Inside these objects any key is allowed (user-defined names).
_OPEN = "*"

#: Known places inside the structured fields; ``_OPEN`` accepts any key below it.
_NESTED: dict[str, t.Any] = {
    "context": {
        "page": {"url": None, "referrer": None, "title": None},
        "campaign": {key: None for key in ("name", "source", "medium", "term", "content")},
        "truncated_ip": None,
        "locale": None,
        "region": None,
        "user_agent": None,
        "custom_context": _OPEN,
    },
    "search": {"keywords": None, "filters": _OPEN},
}

#: Fields that hold a list; a single value becomes a one-item list.
LIST_FIELDS = frozenset({"product_ids", "product_group_ids", "category", "quantities"})
#: Fields whose items (or value) are strings: numbers read from the warehouse become text.
_TEXT_FIELDS = frozenset(
    {
        "user_id", "anonymous_id", "miso_id", "custom_action_name", "question_id", "result_type",
        "value", "product_ids", "product_group_ids", "category",
    },
)  # fmt: skip
_EPOCH_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000}
_SOURCE_KEYS = ("column", "expr", "const")
_MODIFIERS = ("key", "split", "epoch", "default", "json")
#: The keys that make an object a value rather than a step in a field path.
_VALUE_KEYS = frozenset(_SOURCE_KEYS + _MODIFIERS)


def field_entries(setting: t.Mapping[str, t.Any]) -> list[tuple[str, object]]:
    """List the ``(field path, value)`` pairs of a ``fields`` object; nesting spells a path.

    ``{context: {page: {url: page_url}}}`` means ``{context.page.url: page_url}``. That is
    the form a dotted key takes in Meltano: it splits ``context.page.url`` in meltano.yml
    into nested objects, and drops it from JSON given in ``TARGET_MISO_MAPPINGS``, where the
    nested form survives (docs/mappings.md#field-paths-under-meltano). An object holding one of
    ``column``, ``expr``, ``const`` or a modifier is a value; any other object goes on with
    the path.

    Args:
        setting: The ``fields`` object as written.

    Returns:
        The pairs, in the order written.

    """
    entries: list[tuple[str, object]] = []
    for key, value in setting.items():
        if isinstance(value, dict) and value and not (_VALUE_KEYS & value.keys()):
            entries.extend((f"{key}.{path}", inner) for path, inner in field_entries(value))
        else:
            entries.append((str(key), value))
    return entries


def check_field_path(field_path: str, setting_path: str) -> str:
    """Check that a field path names a Miso field or a known place inside one.

    Args:
        field_path: E.g. ``context.page.url``.
        setting_path: Where it was written, for the error.

    Returns:
        The top-level Miso field (``context`` for ``context.page.url``).

    Raises:
        MappingConfigError: If the path is not a Miso field.

    """
    top, *rest = field_path.split(".")
    if top == "type":
        raise MappingConfigError(setting_path, "set the interaction type with the `type` option")
    if top not in ALL_FIELDS:
        known = ", ".join(f for f in ALL_FIELDS if f != "type")
        raise MappingConfigError(setting_path, f"{top!r} is not a Miso interaction field ({known})")
    known_here: t.Any = _NESTED.get(top)
    walked = top
    for part in rest:
        if known_here is _OPEN:
            break
        if not isinstance(known_here, dict) or part not in known_here:
            choices = sorted(known_here) if isinstance(known_here, dict) else []
            hint = f" (known: {', '.join(choices)})" if choices else " (it holds a plain value)"
            raise MappingConfigError(setting_path, f"{walked!r} has no field {part!r}{hint}")
        known_here = known_here[part]
        walked = f"{walked}.{part}"
    return top


class ValueSpec:
    """How one field gets its value: a column, a constant or an expression, then modifiers.

    Settings forms: ``"expression"`` (a bare column name is the simplest expression), a
    number or boolean constant, or an object with one of ``column``/``expr``/``const`` and
    the optional modifiers ``key`` (take this key, dotted for nesting, from each object of
    a list), ``split`` (cut a string, or a number's text, into a list), ``epoch``
    (``s``/``ms``/``us``: a number of seconds, milliseconds or microseconds since 1970),
    ``default`` (used when the value is null or empty) and ``json`` (``true``: text is parsed
    as JSON; otherwise text stays text where a field takes any value, as custom attributes do).
    """

    def __init__(self, setting: object, path: str) -> None:
        """Read one value setting.

        Args:
            setting: The setting as written.
            path: Its setting path, for errors.

        Raises:
            MappingConfigError: If the setting has no valid form.

        """
        self.path = path
        self.column: str | None = None
        self.expression: Expression | None = None
        self.constant: object = None
        self.key: list[str] | None = None
        self.split: str | None = None
        self.epoch: int | None = None
        self.default: object = None
        self.json = False
        if isinstance(setting, str):
            self.expression = Expression(setting, path)
        elif isinstance(setting, (bool, int, float)):
            self.constant = setting
        elif isinstance(setting, dict):
            self._read_object(setting, path)
        else:
            raise MappingConfigError(
                path,
                f"expected an expression, a constant or an object with column/expr/const, "
                f"got {type(setting).__name__}",
            )

    def _read_object(self, setting: dict[str, t.Any], path: str) -> None:
        unknown = sorted(set(setting) - set(_SOURCE_KEYS) - set(_MODIFIERS))
        if unknown:
            allowed = ", ".join(_SOURCE_KEYS + _MODIFIERS)
            raise MappingConfigError(f"{path}.{unknown[0]}", f"unknown option (allowed: {allowed})")
        sources = [key for key in _SOURCE_KEYS if key in setting]
        if len(sources) != 1:
            raise MappingConfigError(path, "give exactly one of column, expr or const")
        if "column" in setting:
            if not isinstance(setting["column"], str) or not setting["column"]:
                raise MappingConfigError(f"{path}.column", "expected a column name")
            self.column = setting["column"]
        elif "expr" in setting:
            self.expression = Expression(setting["expr"], f"{path}.expr")
        else:
            self.constant = setting["const"]
        if "key" in setting:
            if not isinstance(setting["key"], str) or not setting["key"]:
                raise MappingConfigError(f"{path}.key", "expected a key name, e.g. product_id")
            self.key = setting["key"].split(".")
        if "split" in setting:
            if not isinstance(setting["split"], str) or not setting["split"]:
                raise MappingConfigError(f"{path}.split", "expected a separator, e.g. '/'")
            self.split = setting["split"]
        if "epoch" in setting:
            if setting["epoch"] not in _EPOCH_UNITS:
                raise MappingConfigError(f"{path}.epoch", "expected one of s, ms, us")
            self.epoch = _EPOCH_UNITS[setting["epoch"]]
        self.default = setting.get("default")
        self.json = _flag(setting, "json", path)

    @property
    def columns(self) -> frozenset[str]:
        """The record columns this value reads by name (for the schema check)."""
        if self.expression is not None:
            return self.expression.columns
        return frozenset()

    def read(self, record: dict[str, t.Any], scope: Scope, field: str) -> object:
        """Compute the value for one record.

        Args:
            record: The source record.
            scope: The record's expression names.
            field: The field path being filled, named in errors.

        Returns:
            The raw value (normalized later by ``build_interaction``), or None.

        Raises:
            MappingError: If the expression fails or a modifier does not apply.

        """
        if self.column is not None:
            value = record.get(self.column)
        elif self.expression is not None:
            value = self.expression.evaluate(scope, field)
        else:
            value = self.constant
        if value is None or value == "":
            value = self.default
        if value is None:
            return None
        if self.json and isinstance(value, str):
            try:
                value = parse_json_text(value)
            except ValueError as error:
                raise MappingError(field, str(error)) from None
            if value is None:
                return None
        if self.epoch is not None:
            value = _from_epoch(value, self.epoch, field)
        if self.split is not None:
            value = _split(value, self.split, field)
        if self.key is not None:
            value = _pluck(value, self.key, field)
        return value


def _flag(setting: dict[str, t.Any], name: str, path: str) -> bool:
    value = setting.get(name, False)
    if not isinstance(value, bool):
        raise MappingConfigError(f"{path}.{name}", "expected true or false")
    return value


def _split(value: object, separator: str, field: str) -> list[str]:
    # A number is split as the text it reads as (ids and codes are often stored as numbers);
    # a list or an object has no one text to split: a clear reject, not a silent no-op.
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise MappingError(field, not_finite(value))
        try:
            value = _as_text(value)
        except ValueError as error:  # a Decimal NaN or Infinity
            raise MappingError(field, str(error)) from None
    if not isinstance(value, str):
        reason = f"split {separator!r} needs text or a number, got a {type(value).__name__}"
        raise MappingError(field, reason)
    return [part.strip() for part in value.split(separator) if part.strip()]


def _from_epoch(value: object, per_second: int, field: str) -> dt.datetime:
    try:
        number = to_number(value)
        return dt.datetime.fromtimestamp(number / per_second, dt.timezone.utc)
    except (ValueError, OverflowError, OSError) as error:
        raise MappingError(field, f"{value!r} is not an epoch time ({error})") from None


def _pluck(value: object, key: list[str], field: str) -> list[object]:
    try:
        items = parse_json_text(value)
    except ValueError as error:
        raise MappingError(field, str(error)) from None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        dotted = ".".join(key)
        raise MappingError(field, f"cannot take key {dotted!r} from a {type(items).__name__}")
    plucked = []
    for item in items:
        found = item
        for part in key:
            found = found.get(part) if isinstance(found, dict) else None
        if found is not None and found != "":
            plucked.append(found)
    return plucked


def _leaf(top: str, rest: list[str], value: object) -> object:
    """Coerce a value placed inside a structured field."""
    if top == "context" and rest[0] == "custom_context":
        return value
    if top == "context" and len(rest) == 1 and isinstance(value, str):
        return value
    if top == "search" and rest[0] == "filters" and len(rest) > 1:
        values = _as_list("filters", value)
        return [str(v) for v in values] if isinstance(values, list) else values
    if top == "search" and rest == ["keywords"] and isinstance(value, list):
        return " ".join(str(v) for v in value if v is not None)
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        return _as_text(value)
    return value


def _set(target: dict[str, t.Any], parts: list[str], value: object) -> None:
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[parts[-1]] = value


def _place(raw: dict[str, t.Any], path: str, value: object) -> None:
    """Put one raw value at its field path, coerced to the shape that field takes."""
    top, *rest = path.split(".")
    if rest:
        whole = raw.get(top)
        if isinstance(whole, str):
            whole = parse_json_text(whole)
        if not isinstance(whole, dict):
            whole = {}
        raw[top] = whole
        _set(whole, rest, _leaf(top, rest, plain(value)))
    elif top in LIST_FIELDS:
        raw[top] = _as_list(top, value)
    elif top in _TEXT_FIELDS:
        raw[top] = _as_text(value)
    elif isinstance(value, dict):
        raw[top] = plain(value)  # a copy: places inside it may be set next
    else:
        raw[top] = value


def build_interaction(interaction_type: str, values: t.Mapping[str, object]) -> dict[str, t.Any]:
    """Assemble and normalize an interaction from ``{field path: raw value}``.

    Args:
        interaction_type: The Miso type.
        values: Raw values by field path; None values are left out.

    Returns:
        The interaction, ready for validation.

    Raises:
        MappingError: If values cannot take the form Miso needs (names every such field).

    """
    raw: dict[str, t.Any] = {}
    errors: list[MappingError] = []
    # Whole objects first (``context``), then the places inside them (``context.page.url``),
    # so that a specific setting refines a whole one whatever the order they were written in.
    for path, value in sorted(values.items(), key=lambda item: item[0].count(".")):
        if value is None or value == "":
            continue
        try:
            _place(raw, path, value)
        except ValueError as error:
            errors.append(MappingError(path, str(error)))
    interaction: dict[str, t.Any] = {"type": interaction_type}
    for field, value in raw.items():
        try:
            normalized = normalize_field(field, value)
        except ValueError as error:
            errors.append(MappingError(field, str(error)))
            continue
        if field == "context" and isinstance(normalized, dict):
            normalized = _clean_context(normalized)
        if normalized is not None:
            interaction[field] = normalized
    raise_errors(errors)  # every failing field is named, not only the first
    return interaction


def _clean_context(context: dict[str, t.Any]) -> dict[str, t.Any] | None:
    # Miso requires page.url whenever page is present: a page without a URL says nothing.
    page = context.get("page")
    if isinstance(page, dict) and not page.get("url"):
        context.pop("page")
    return context or None
