"""Catalog streams: how a table becomes Miso product or user records (see docs/catalog.md).

A ``mappings`` entry with ``kind: products`` or ``kind: users`` makes its stream a catalog
stream. Its options, all checked at start-up::

    kind: products | users
    fields: {<miso field>: <value>}     # as in custom mappings: column, expression, const
    filter: "<expression>"              # optional; rows where it is false are skipped
    delete_missing: false               # on a full-table sync, delete ids absent from it
    max_delete_fraction: 0.1            # refuse to delete more than this share of the catalog
    delete_dry_run: false               # only list what would be deleted
    delete_filtered: false              # true: rows the filter skips count as gone (deleted)

Values are read with the declarative mappings' machinery (``ValueSpec``, expressions) and
coerced to the shape each Miso field takes: ids and strings to text, lists from JSON text
or one value, dates to RFC 3339, numbers from Decimals. A ``custom_attributes.<name>``
value keeps its source type (text stays text, even when it looks like JSON or a number);
``{column: ..., json: true}`` parses JSON text where the user asks for it.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import typing as t

import orjson

from target_miso.catalog.schema import CATALOG_KINDS, FIELDS
from target_miso.mappings.base import MappingConfigError, MappingError, raise_errors
from target_miso.mappings.declarative.expressions import Expression, Scope, new_evaluator
from target_miso.mappings.declarative.fields import ValueSpec, field_entries
from target_miso.normalize import parse_json_text, plain, to_number, to_utc_timestamp

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

INTERACTIONS = "interactions"
_OPTIONS = (
    "kind", "fields", "filter", "delete_missing", "max_delete_fraction", "delete_dry_run",
    "delete_filtered",
)  # fmt: skip
_STRING_LISTS = frozenset(
    {"related_ids", "tags", "authors", "publishers", "collections", "headers", "paragraphs",
     "anchors"},
)  # fmt: skip
_DATES = frozenset({"created_at", "published_at", "updated_at"})
_NUMBERS = frozenset({"original_price", "sale_price", "margin", "rating", "age"})
_STRUCTURED = frozenset({"location", "children", "custom_attributes"})


def stream_kind(options: MappingType[str, t.Any] | None, path: str) -> str:
    """Read an entry's ``kind``: interactions (the default), products or users.

    Args:
        options: The stream's ``mappings`` entry.
        path: Its setting path.

    Returns:
        The kind.

    Raises:
        MappingConfigError: If the kind is unknown.

    """
    kind = (options or {}).get("kind", INTERACTIONS)
    if kind != INTERACTIONS and kind not in CATALOG_KINDS:
        raise MappingConfigError(
            f"{path}.kind",
            f"{kind!r} is not a kind (use interactions, products or users)",
        )
    return kind


class CatalogOptions:
    """The checked options of one catalog stream."""

    def __init__(self, options: MappingType[str, t.Any], path: str) -> None:
        """Read and check every option.

        Args:
            options: The stream's ``mappings`` entry.
            path: Its setting path, e.g. ``mappings.public-products``.

        Raises:
            MappingConfigError: On the first mistake, with its setting path.

        """
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            reason = f"unknown option for a catalog stream (allowed: {', '.join(_OPTIONS)})"
            raise MappingConfigError(f"{path}.{unknown[0]}", reason)
        self.path = path
        self.kind: str = stream_kind(options, path)
        self.id_field = CATALOG_KINDS[self.kind]
        self.fields = _read_fields(self.kind, options.get("fields"), f"{path}.fields")
        self.filter = (
            Expression(options["filter"], f"{path}.filter") if "filter" in options else None
        )
        self.delete_missing = _boolean(options, "delete_missing", path)
        self.delete_dry_run = _boolean(options, "delete_dry_run", path)
        self.delete_filtered = _boolean(options, "delete_filtered", path)
        self.max_delete_fraction = _fraction(options.get("max_delete_fraction", 0.1), path)


def _fraction(value: object, path: str) -> float:
    # The SDK reads config files with Decimals; Meltano may pass numbers as text.
    try:
        fraction = float(value) if not isinstance(value, bool) else -1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        fraction = -1.0
    if not 0 <= fraction <= 1:
        raise MappingConfigError(
            f"{path}.max_delete_fraction",
            f"expected a number from 0 to 1, got {value!r}",
        )
    return fraction


def _boolean(options: MappingType[str, t.Any], name: str, path: str) -> bool:
    value = options.get(name, False)
    if not isinstance(value, bool):
        raise MappingConfigError(f"{path}.{name}", f"expected true or false, got {value!r}")
    return value


def _read_fields(kind: str, setting: object, path: str) -> dict[str, ValueSpec]:
    if not isinstance(setting, dict) or not setting:
        raise MappingConfigError(
            path,
            f"expected an object of Miso {kind[:-1]} field -> column or expression",
        )
    allowed = FIELDS[kind]
    specs = {}
    for field_path, value in field_entries(setting):  # custom_attributes: {name: ...} too
        top, _, rest = str(field_path).partition(".")
        if top not in allowed:
            known = ", ".join(allowed)
            raise MappingConfigError(
                f"{path}.{field_path}",
                f"{top!r} is not a Miso {kind[:-1]} field ({known})",
            )
        if rest and top != "custom_attributes":
            raise MappingConfigError(
                f"{path}.{field_path}",
                f"{top!r} holds a whole value; only custom_attributes.<name> places a value "
                "inside a field",
            )
        specs[str(field_path)] = ValueSpec(value, f"{path}.{field_path}")
    if CATALOG_KINDS[kind] not in {p.partition(".")[0] for p in specs}:
        raise MappingConfigError(path, f"missing {CATALOG_KINDS[kind]!r}: every record needs one")
    return specs


class CatalogMapping:
    """Maps the rows of one catalog stream to Miso product or user records."""

    def __init__(self, options: CatalogOptions, stream_name: str) -> None:
        """Prepare the mapping.

        Args:
            options: The stream's checked options.
            stream_name: The Singer stream.

        """
        self.options = options
        self.stream_name = stream_name
        self._columns: dict[str, str] = {}
        for spec in options.fields.values():
            for name in spec.columns:
                self._columns.setdefault(name, spec.path)
        if options.filter is not None:
            for name in options.filter.columns:
                self._columns.setdefault(name, options.filter.path)
        self._evaluator = new_evaluator()

    def bind_schema(self, schema: dict[str, t.Any]) -> None:
        """Check that every name the expressions read is a column of the stream.

        Args:
            schema: The stream's JSON Schema.

        Raises:
            MappingConfigError: If an expression reads a name that is not a column.

        """
        properties = schema.get("properties") or {}
        if not properties:
            return
        for name, path in sorted(self._columns.items()):
            if name not in properties:
                reason = (
                    f"{name!r} is not a column of stream '{self.stream_name}' (quote constants, "
                    f"e.g. \"'{name}'\"; columns with odd names: record['name'])"
                )
                raise MappingConfigError(path, reason)

    def map(self, record: dict[str, t.Any]) -> dict[str, t.Any] | None:
        """Map one row.

        Args:
            record: The row as the tap sent it.

        Returns:
            The catalog record, or None when the filter skips the row.

        Raises:
            MappingError: If a value cannot be computed or coerced (names the field).

        """
        scope = Scope(record, self._columns, self.stream_name, self._evaluator)
        if self.options.filter is not None and not self.options.filter.evaluate(scope, "filter"):
            return None
        mapped: dict[str, t.Any] = {}
        errors: list[MappingError] = []  # every failing field is named, not only the first
        for field_path, spec in self.options.fields.items():
            try:
                value = spec.read(record, scope, field_path)
            except MappingError as error:
                errors.append(error)
                continue
            if value is None or value == "":
                continue
            top, _, key = field_path.partition(".")
            try:
                if key:
                    # A custom attribute keeps its source type: "Ana Ruiz" and "8841" stay
                    # text (Miso wants one type per attribute across the catalog); JSON text
                    # is parsed only with ``json: true``.
                    value = plain(value)
                    if value is not None:
                        mapped.setdefault(top, {})[key] = value
                    continue
                value = coerce(top, value)
            except ValueError as error:
                errors.append(MappingError(field_path, str(error)))
                continue
            if value is not None:
                mapped[top] = value
        raise_errors(errors)
        return mapped

    def record_id(self, record: dict[str, t.Any]) -> str | None:
        """Compute only the id of a row (for rows the mapping set aside or the filter skipped).

        Args:
            record: The row as the tap sent it.

        Returns:
            The id as ``map`` gives it, or None when the row has none (null or empty).

        Raises:
            MappingError: If the id's expression fails on this row.

        """
        id_field = self.options.id_field
        scope = Scope(record, self._columns, self.stream_name, self._evaluator)
        value = self.options.fields[id_field].read(record, scope, id_field)
        if value is None or value == "":
            return None
        text = _text(value)
        return text if isinstance(text, str) and text else None


def coerce(field: str, value: object) -> object:  # noqa: PLR0911 - flat dispatch on the field
    """Give a raw warehouse value the shape a Miso catalog field takes.

    Args:
        field: The top-level Miso field.
        value: The raw value (not None).

    Returns:
        The coerced value, or None when nothing is left of it.

    Raises:
        ValueError: If the value cannot take that shape.

    """
    if field in _DATES:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, str) and len(value) == 10:  # noqa: PLR2004 - a plain date
            return value
        return to_utc_timestamp(value)
    if field in _NUMBERS:
        number = to_number(value)
        return int(number) if field == "age" and float(number).is_integer() else number
    if field in _STRING_LISTS:
        return _strings(value)
    if field == "categories":
        items = _list(value)
        if items and all(not isinstance(item, (list, tuple)) for item in items):
            items = [items]  # one path, broad to narrow
        return [s for s in (_strings(item) for item in items) if s] or None
    if field in _STRUCTURED:
        return plain(parse_json_text(value))
    if field == "enable_question_answering":
        return value
    return _text(value)


def _list(value: object) -> list[t.Any]:
    if isinstance(value, str):
        # A JSON array as text (Snowflake, Redshift); any other text is one value.
        parsed = parse_json_text(value) if value.lstrip().startswith("[") else [value]
        return list(parsed) if isinstance(parsed, list) else [parsed]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _strings(value: object) -> list[str] | None:
    texts = [_text(item) for item in _list(value) if item is not None and item != ""]
    return [item for item in texts if isinstance(item, str)] or None


def _text(value: object) -> object:
    """Ids and names read as numbers (``123``, ``Decimal('123')``) become ``"123"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(to_number(value))
    if isinstance(value, dt.datetime):
        return to_utc_timestamp(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def content_hash(value: object) -> str:
    """Fingerprint content: equal values, equal hashes, any key order.

    Used for validated catalog records (change detection) and for rejected rows with their
    reasons (``rejected.py``), which may hold what JSON cannot: non-text keys and other types
    are written as text, big integers, lone surrogates and deep nesting by ``repr``.

    Args:
        value: A catalog record, or any row.

    Returns:
        32 hex characters of BLAKE2b over the value's canonical JSON (sorted keys).

    """
    try:
        canonical = orjson.dumps(
            value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str
        )
    except (TypeError, RecursionError):
        canonical = repr(value).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()
