"""Read a Snowplow event the same way whichever warehouse layout it comes in.

The 128 atomic columns are the same everywhere; what differs is where self-describing
events ("unstruct") and entities ("contexts") live and how their keys are spelled:

* TSV-shaped (the enriched TSV loaded into a table, Snowplow's S3 files, the shipped
  Postgres view over the shredded tables): ``unstruct_event``, ``contexts`` and
  ``derived_contexts`` hold self-describing JSON envelopes, as text or parsed.
* Snowflake: ``unstruct_event_<vendor>_<name>_<major>`` / ``contexts_...`` columns holding
  JSON text with the keys as sent (camelCase).
* BigQuery: the same columns as nested records with snake_case keys, and ``_1_0_0``
  (full version) column names from the older loader.

Schemas are named by one key, ``<vendor with . and - as _>_<name>`` (e.g.
``com_snowplowanalytics_snowplow_web_page``), and every entity's keys are snake_cased, so
``totalResults`` and ``total_results`` read the same.
"""

from __future__ import annotations

import functools
import re
import typing as t

import orjson

from target_miso.mappings.base import MappingError

_IGLU = re.compile(r"^iglu:([^/]+)/([^/]+)/jsonschema/\d+-\d+-\d+$")
_WIDE = re.compile(r"^(contexts|unstruct_event)_(.+?)_\d+(?:_\d+_\d+)?$")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake(key: str) -> str:
    """``totalResults`` -> ``total_results``; snake_case keys are returned unchanged."""
    if key.islower():
        return key
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def _snake_keys(data: object) -> dict[str, t.Any]:
    if not isinstance(data, dict):
        return {}
    snaked = _snake_all(tuple(data))
    # Entities of one schema share their keys: one cached answer per key set, and no copy
    # when they are snake_cased already (entities are read-only).
    return data if snaked is None else dict(zip(snaked, data.values(), strict=True))


@functools.lru_cache(maxsize=1024)  # the only cache: a key set, not each key, is looked up
def _snake_all(keys: tuple[str, ...]) -> tuple[str, ...] | None:
    """Return the keys snake_cased, or None when they are already."""
    snaked = tuple(snake(key) for key in keys)
    return None if snaked == keys else snaked


@functools.lru_cache(maxsize=1024)
def schema_key(iglu_uri: str) -> str | None:
    """``iglu:com.acme/button_press/jsonschema/1-0-0`` -> ``com_acme_button_press``."""
    found = _IGLU.match(iglu_uri)
    if found is None:
        return None
    vendor, name = found.groups()
    return f"{vendor}_{name}".replace(".", "_").replace("-", "_").lower()


@functools.lru_cache(maxsize=4096)
def _wide_column(column: str) -> tuple[str, str] | None:
    """``contexts_com_acme_user_1`` -> ("contexts", "com_acme_user"); other columns: None."""
    if not column.startswith(("contexts_", "unstruct_event_")):
        return None
    found = _WIDE.match(column)
    if found is None:
        return None
    return found.group(1), found.group(2).lower()


def _parsed(column: str, value: object) -> object:
    if isinstance(value, (str, bytes)):
        if not value:
            return None
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise MappingError(column, "is not valid JSON") from None
    return value


class SnowplowEvent:
    """One row, with its self-describing event and entities read on demand."""

    __slots__ = ("_contexts", "_derived_pending", "_unstruct", "record")

    def __init__(self, record: dict[str, t.Any]) -> None:
        """Wrap a row as the tap sent it (nothing is parsed until asked for).

        Args:
            record: The row.

        """
        self.record = record
        self._contexts: dict[str, list[dict[str, t.Any]]] | None = None
        self._unstruct: tuple[str | None, dict[str, t.Any]] | None = None
        self._derived_pending = False

    def get(self, column: str) -> t.Any:
        """Return an atomic column's value; empty strings read as None (as in the TSV)."""
        value = self.record.get(column)
        return None if value == "" else value

    def text(self, column: str) -> str | None:
        """Return an atomic column as stripped text (Redshift pads CHAR columns), or None."""
        value = self.record.get(column)
        if value is None or value == "":
            return None
        if type(value) is not str:
            value = str(value)
        elif value[-1] != " " and value[0] != " ":  # the common case: nothing to strip
            return value
        return value.strip() or None

    def unstruct(self) -> tuple[str | None, dict[str, t.Any]]:
        """Return the self-describing event: its schema key and its data (keys snake_cased).

        Raises:
            MappingError: If the event's JSON cannot be read (names the column).

        """
        if self._unstruct is None:
            self._unstruct = self._read_unstruct()
        return self._unstruct

    def entities(self, key: str, *, enriched: bool = True) -> list[dict[str, t.Any]]:
        """Every entity of one schema attached to the event (keys snake_cased; read-only).

        Args:
            key: The schema key, e.g. ``com_snowplowanalytics_snowplow_web_page``.
            enriched: Also look in ``derived_contexts`` (enrichment output). False for an
                entity only trackers send, so that asking for it on every event does not
                parse the enrichments' JSON.

        Raises:
            MappingError: If a contexts column cannot be read (names the column).

        """
        if self._contexts is None:
            self._contexts = self._read_contexts()
        found = self._contexts.get(key)
        if found is None and enriched and self._derived_pending:
            # Enrichment output (ua_parser, YAUAA, ...) is parsed only when asked for.
            self._derived_pending = False
            self._add_derived()
            found = self._contexts.get(key)
        return found or []

    def entity(self, key: str, *, enriched: bool = True) -> dict[str, t.Any]:
        """Return the first entity of one schema, or an empty dict (``enriched``: as entities)."""
        found = self.entities(key, enriched=enriched)
        return found[0] if found else {}

    def _read_unstruct(self) -> tuple[str | None, dict[str, t.Any]]:
        record = self.record
        envelope = record.get("unstruct_event")
        if envelope not in (None, ""):
            outer = _parsed("unstruct_event", envelope)
            inner = outer.get("data") if isinstance(outer, dict) else None
            if not isinstance(inner, dict) or not isinstance(inner.get("schema"), str):
                raise MappingError("unstruct_event", "is not a self-describing event envelope")
            return schema_key(inner["schema"]), _snake_keys(inner.get("data"))
        for column, value in record.items():
            if value is None or value == "":
                continue
            wide = _wide_column(column)
            if wide is not None and wide[0] == "unstruct_event":
                return wide[1], _snake_keys(_parsed(column, value))
        return None, {}

    def _read_contexts(self) -> dict[str, list[dict[str, t.Any]]]:
        record = self.record
        if "contexts" in record or "derived_contexts" in record:  # TSV-shaped: envelopes only
            self._derived_pending = record.get("derived_contexts") not in (None, "")
            text = record.get("contexts")
            if type(text) is str:
                return _contexts_of_text(text)
            return _read_envelope("contexts", text)
        found: dict[str, list[dict[str, t.Any]]] = {}
        for column, value in record.items():
            if value is None or value == "" or not column.startswith("contexts_"):
                continue
            wide = _wide_column(column)
            if wide is None:
                continue
            items = _parsed(column, value)
            if isinstance(items, dict):  # a single entity written as an object
                items = [items]
            if not isinstance(items, list):
                raise MappingError(column, "is not a list of entities")
            found.setdefault(wide[1], []).extend(_snake_keys(item) for item in items)
        return found

    def _add_derived(self) -> None:
        derived = _read_envelope("derived_contexts", self.record.get("derived_contexts"))
        if derived:
            # A new dict: the one read from ``contexts`` may be shared with other events.
            merged = dict(self._contexts or {})
            for key, entities in derived.items():
                merged[key] = [*merged.get(key, ()), *entities]
            self._contexts = merged


def _read_envelope(column: str, envelope: object) -> dict[str, list[dict[str, t.Any]]]:
    """Return the entities of a contexts envelope, by schema key."""
    if envelope is None or envelope == "":
        return {}
    outer = _parsed(column, envelope)
    items = outer.get("data") if isinstance(outer, dict) else outer
    if not isinstance(items, list):
        raise MappingError(column, "is not a self-describing contexts envelope")
    found: dict[str, list[dict[str, t.Any]]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("schema"), str):
            key = schema_key(item["schema"])
            if key is not None:
                found.setdefault(key, []).append(_snake_keys(item.get("data")))
    return found


# A page view's pings repeat its ``contexts`` text verbatim: it is parsed once. The answer
# is shared between those events, so nothing may change it (entities are read-only).
_contexts_of_text = functools.lru_cache(maxsize=256)(functools.partial(_read_envelope, "contexts"))
