"""``preset: segment``: Segment warehouse tables (tracks, pages, identifies, one table per event).

Segment writes each track call twice: into ``tracks`` (common columns only) and into the
event's own table (``order_completed``, ``product_viewed``...) with one column per property.
Interactions come from the event tables and from ``pages``; ``tracks``, ``identifies`` and
the other tables give none (counted as skipped), so selecting them does no harm.

In an event table the Spec properties ``url``, ``title`` and ``referrer`` describe the
event's object (the product's URL, the video's title); the page the event happened on is
``context_page_*``. Only in ``pages`` are ``url``/``title``/``referrer`` the page itself.
"""

from __future__ import annotations

import re
import typing as t

from target_miso.mappings.base import Columns, Mapping, MappingConfigError, MappingError
from target_miso.mappings.declarative.fields import build_interaction
from target_miso.miso.schema import INTERACTION_TYPES, ITEM_REQUIRED_TYPES, allowed_fields
from target_miso.normalize import parse_json_text, to_number

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

#: E-commerce spec v2 events (table name = snake_cased event name) -> Miso type.
EVENT_TYPES: dict[str, str] = {
    "product_viewed": "product_detail_page_view",
    "product_added": "add_to_cart",
    "product_removed": "remove_from_cart",
    "order_completed": "checkout",
    "order_refunded": "refund",
    "products_searched": "search",
    "product_list_viewed": "impression",
    "product_clicked": "click",
    "product_added_to_wishlist": "add_to_collection",
    "product_removed_from_wishlist": "remove_from_collection",
    "wishlist_product_added_to_cart": "add_to_cart",
    "product_shared": "share",
    "product_reviewed": "rate",
    "video_content_completed": "watch",
}

#: Earlier names of the v2 events above, which Segment's e-commerce spec v2 documents as
#: their aliases (e-commerce spec v1), plus two v1-style names that can mean nothing else.
V1_ALIASES: dict[str, str] = {
    "viewed_product": "product_viewed",
    "added_product": "product_added",
    "removed_product": "product_removed",
    "completed_order": "order_completed",
    "viewed_product_category": "product_list_viewed",
    "clicked_product": "product_clicked",
    "refunded_order": "order_refunded",
    "searched_products": "products_searched",
}
#: Keys that name a product, best first: the Spec's database id (v2 ``product_id``, the
#: camelCase ``productId`` of Segment's own examples, v1 ``id``), then the ``sku``.
PRODUCT_ID_KEYS = ("product_id", "productId", "id", "sku")
#: Types that say nothing without the products they were about (besides ITEM_REQUIRED_TYPES).
_NEED_PRODUCTS = frozenset({*ITEM_REQUIRED_TYPES, "impression", "click"})

#: Tables that hold no interaction of their own.
NON_EVENT_TABLES = frozenset(
    {"tracks", "identifies", "users", "groups", "aliases", "accounts", "screens"},
)
_WISHLIST_EVENTS = ("product_added_to_wishlist",)
_OPTIONS = (
    "table",
    "events",
    "v1_aliases",
    "wishlist_type",
    "revenue_columns",
    "rating_max",
    "product_id_keys",
    "page_rules",
)
_IPV4 = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}$")
_CAMPAIGN_KEYS = ("name", "source", "medium", "term", "content")
_PAGE_KEYS = ("url", "referrer", "title")
#: Read in every table that holds interactions: the messageId, who, when, the context.
COMMON_COLUMNS = (
    "id", "user_id", "anonymous_id", "timestamp", "original_timestamp", "received_at",
    *(f"context_page_{key}" for key in _PAGE_KEYS), "context_user_agent", "context_locale",
    "context_ip", *(f"context_campaign_{key}" for key in _CAMPAIGN_KEYS),
)  # fmt: skip


def table_of(stream_name: str) -> str:
    """Find the warehouse table a stream reads (tap-postgres and tap-snowflake: schema-table).

    Args:
        stream_name: The Singer stream name, e.g. ``shop-order_completed``.

    Returns:
        The table name in lower case, e.g. ``order_completed``.

    """
    return re.split(r"[-.]", stream_name)[-1].lower()


def snake_case(event_name: str) -> str:
    """Name an event the way Segment names its table (``Order Completed`` -> ``order_completed``).

    Args:
        event_name: The event as tracked.

    Returns:
        The slug.

    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", event_name.strip())
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")


def truncate_ip(ip: object) -> str | None:
    """Zero the last octet of an IPv4 address (Miso's ``truncated_ip``); drop anything else.

    Args:
        ip: The address as stored (``context_ip``).

    Returns:
        E.g. ``203.0.113.0``, or None for IPv6 and malformed values.

    """
    match = _IPV4.match(ip.strip()) if isinstance(ip, str) else None
    return f"{match[1]}.{match[2]}.{match[3]}.0" if match else None


class SegmentMapping(Mapping):
    """Map Segment warehouse rows to Miso interactions."""

    preset = "segment"
    option_names = _OPTIONS

    def __init__(
        self,
        options: MappingType[str, t.Any],
        *,
        stream_name: str,
        config_path: str,
    ) -> None:
        """Read the options.

        Args:
            options: ``table``, ``events``, ``v1_aliases``, ``wishlist_type``,
                ``revenue_columns``, ``rating_max``, ``product_id_keys`` and ``page_rules``
                (see docs/mappings.md).
            stream_name: The Singer stream.
            config_path: ``mappings.<stream>``.

        Raises:
            MappingConfigError: On an unknown option or a wrong value.

        """
        super().__init__(options, stream_name=stream_name, config_path=config_path)
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            reason = f"unknown option (allowed: preset, {', '.join(_OPTIONS)})"
            raise MappingConfigError(f"{config_path}.{unknown[0]}", reason)
        self.table = str(options.get("table") or table_of(stream_name)).lower()
        self.event_types = self._read_events(options)
        self.aliases = self._read_aliases(options)
        self.product_id_keys = self._read_keys(options.get("product_id_keys", PRODUCT_ID_KEYS))
        # Columns are the properties snake_cased by Segment; ``id`` is the messageId there.
        self.product_id_columns = tuple(
            dict.fromkeys(
                snake_case(key) for key in self.product_id_keys if snake_case(key) != "id"
            ),
        )
        self.revenue_columns = self._read_columns(
            options.get("revenue_columns", ["total", "revenue"])
        )
        rating_max = options.get("rating_max", 5)
        if (
            isinstance(rating_max, bool)
            or not isinstance(rating_max, (int, float))
            or rating_max <= 0
        ):
            raise MappingConfigError(
                f"{config_path}.rating_max", "expected a positive number, e.g. 5 or 10"
            )
        self.rating_scale = 5 / rating_max
        self.page_rules = self._read_page_rules(options.get("page_rules"))
        self._seen_ids: set[str] = set()

    def _read_events(self, options: MappingType[str, t.Any]) -> dict[str, str]:
        event_types = dict(EVENT_TYPES)
        wishlist = options.get("wishlist_type", "add_to_collection")
        if wishlist not in ("add_to_collection", "bookmark"):
            path = f"{self.config_path}.wishlist_type"
            raise MappingConfigError(path, "expected add_to_collection or bookmark")
        for event in _WISHLIST_EVENTS:
            event_types[event] = wishlist
        overrides = options.get("events") or {}
        if not isinstance(overrides, dict):
            raise MappingConfigError(
                f"{self.config_path}.events", "expected an object of event -> type"
            )
        for event, miso_type in overrides.items():
            if miso_type != "skip" and miso_type not in INTERACTION_TYPES:
                raise MappingConfigError(
                    f"{self.config_path}.events.{event}",
                    f"{miso_type!r} is not a Miso interaction type (or `skip`)",
                )
            event_types[snake_case(str(event))] = miso_type
        return event_types

    def _read_aliases(self, options: MappingType[str, t.Any]) -> dict[str, str]:
        v1_aliases = options.get("v1_aliases", True)
        if not isinstance(v1_aliases, bool):
            raise MappingConfigError(f"{self.config_path}.v1_aliases", "expected true or false")
        if not v1_aliases:
            return {}
        # A name given in ``events`` is taken as written, not as the alias of another.
        overridden = {snake_case(str(event)) for event in options.get("events") or {}}
        return {old: new for old, new in V1_ALIASES.items() if old not in overridden}

    def _read_columns(self, setting: object) -> tuple[str, ...]:
        if isinstance(setting, str):
            setting = [setting]
        if not isinstance(setting, list) or not all(isinstance(c, str) and c for c in setting):
            path = f"{self.config_path}.revenue_columns"
            raise MappingConfigError(path, "expected a list of column names, e.g. [total, revenue]")
        return tuple(setting)

    def _read_keys(self, setting: object) -> tuple[str, ...]:
        if isinstance(setting, str):
            setting = [setting]
        if (
            not isinstance(setting, (list, tuple))
            or not setting
            or not all(isinstance(key, str) and key for key in setting)
        ):
            path = f"{self.config_path}.product_id_keys"
            reason = "expected a list of keys, best first, e.g. [product_id, productId, id, sku]"
            raise MappingConfigError(path, reason)
        return tuple(setting)

    def _read_page_rules(self, setting: object) -> t.Any:
        if setting is None:
            return None
        from target_miso.mappings.declarative.pages import read_page_rules  # noqa: PLC0415

        return read_page_rules(setting, f"{self.config_path}.page_rules")

    def columns(self) -> Columns:
        """Return the columns the preset reads in this stream's table, with its options.

        Returns:
            No column for ``tracks``, ``identifies`` and the other tables without
            interactions (their rows are only counted);
            in ``pages`` the common columns and the page's ``url``, ``referrer``, ``title``;
            in an event table the common columns, the event's name, the product id columns
            (``product_id_keys`` as Segment names the columns), ``products``, ``quantity``,
            ``asset_id``, the ``revenue_columns``, ``query`` and ``rating``.

        """
        if self.table in NON_EVENT_TABLES:
            return Columns(())
        if self.table == "pages":
            return Columns((*COMMON_COLUMNS, *_PAGE_KEYS))
        names = (
            *COMMON_COLUMNS, "event", "event_text", *self.product_id_columns, "quantity",
            "products", "asset_id", *self.revenue_columns, "query", "rating",
        )  # fmt: skip
        return Columns(tuple(dict.fromkeys(names)))

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one warehouse row.

        Args:
            record: The row as the tap sent it (flat columns, arrays as JSON text).

        Returns:
            One interaction, or none for rows that carry no interaction.

        Raises:
            MappingError: If a value cannot be read (names the column).

        """
        if self.table in NON_EVENT_TABLES:
            self.skipped[f"segment: {self.table} rows (no interaction)"] += 1
            return []
        message_id = record.get("id")
        if message_id is not None and message_id in self._seen_ids:
            self.skipped["segment: duplicate id (messageId)"] += 1
            return []
        if self.table == "pages":
            values = self._page(record)
        else:
            values = self._track(record)
        if values is None:
            return []
        interaction_type, fields = values
        fields.update(self._common(record))
        allowed = allowed_fields(interaction_type)
        interaction = build_interaction(
            interaction_type,
            {path: value for path, value in fields.items() if path.split(".")[0] in allowed},
        )
        if message_id is not None:
            self._seen_ids.add(message_id)
        return [interaction]

    def _track(self, record: dict[str, t.Any]) -> tuple[str, dict[str, object]] | None:
        event = record.get("event") or (
            snake_case(record["event_text"]) if record.get("event_text") else self.table
        )
        event = snake_case(str(event))
        event = self.aliases.get(event, event)
        interaction_type = self.event_types.get(event)
        if interaction_type is None or interaction_type == "skip":
            self.skipped[f"segment: event {event} not mapped"] += 1
            return None
        product_id = _first(record, *self.product_id_columns)
        if product_id is not None:
            product_ids: object = product_id
            quantities: object = record.get("quantity")
        else:
            products = self._identified(event, _products(record.get("products")))
            product_ids = [_first(p, *self.product_id_keys) for p in products]
            product_ids = product_ids or record.get("asset_id")
            quantities = [p.get("quantity") or 1 for p in products]
        fields: dict[str, object] = {
            "product_ids": product_ids,
            "quantities": quantities,
            "revenue": _first(record, *self.revenue_columns),
            "search.keywords": record.get("query"),
            "custom_action_name": record.get("event_text") or event,
        }
        if record.get("rating") is not None:
            fields["rating"] = _scaled(record["rating"], self.rating_scale)
        missing = _missing(interaction_type, fields)
        if missing:
            # A valid Segment event that Miso cannot take: skipped by design, not set aside.
            self.skipped[f"segment: {event} without {missing}"] += 1
            return None
        return interaction_type, fields

    def _identified(self, event: str, products: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        # The Spec makes every product key optional; a product that names no id is left out
        # (Miso needs the id) and counted, so a key this preset does not read shows up.
        kept = [p for p in products if _first(p, *self.product_id_keys) is not None]
        left_out = len(products) - len(kept)
        if left_out:
            keys = ", ".join(self.product_id_keys)
            self.skipped[f"segment: {event} product without {keys} (left out)"] += left_out
        return kept

    def _page(self, record: dict[str, t.Any]) -> tuple[str, dict[str, object]] | None:
        url = record.get("url") or record.get("context_page_url")
        if self.page_rules is None or not url:
            self.skipped["segment: page without a matching page rule"] += 1
            return None
        match = self.page_rules.match(url)
        if match is None:
            self.skipped["segment: page without a matching page rule"] += 1
            return None
        return match.type, dict(match.fields)

    def _page_context(self, record: dict[str, t.Any]) -> dict[str, object]:
        # url/title/referrer are the page only in ``pages``; elsewhere they are the object's.
        in_pages = self.table == "pages"
        return {
            f"context.page.{key}": _first(record, key, f"context_page_{key}")
            if in_pages
            else record.get(f"context_page_{key}")
            for key in ("url", "referrer", "title")
        }

    def _common(self, record: dict[str, t.Any]) -> dict[str, object]:
        common: dict[str, object] = {
            "user_id": record.get("user_id"),
            "anonymous_id": record.get("anonymous_id"),
            "timestamp": _first(record, "timestamp", "original_timestamp", "received_at"),
            **self._page_context(record),
            "context.user_agent": record.get("context_user_agent"),
            "context.locale": record.get("context_locale"),
            "context.truncated_ip": truncate_ip(record.get("context_ip")),
        }
        for key in _CAMPAIGN_KEYS:
            common[f"context.campaign.{key}"] = record.get(f"context_campaign_{key}")
        return common


def _missing(interaction_type: str, fields: dict[str, object]) -> str | None:
    """Say what the Miso type needs that the row does not have, if anything."""
    if interaction_type in _NEED_PRODUCTS and _empty(fields.get("product_ids")):
        return f"products (Miso's {interaction_type} needs product ids)"
    if interaction_type == "search" and _empty(fields.get("search.keywords")):
        return "a query (Miso's search needs keywords)"
    if interaction_type == "rate" and fields.get("rating") is None:
        return "a rating (Miso's rate needs one)"
    return None


def _empty(value: object) -> bool:
    return value is None or value in ("", [], "[]")


def _first(record: dict[str, t.Any], *columns: str) -> object:
    for column in columns:
        value = record.get(column)
        if value is not None and value != "":
            return value
    return None


def _products(value: object) -> list[dict[str, t.Any]]:
    """Read the ``products`` column (JSON text in every Segment warehouse)."""
    try:
        products = parse_json_text(value)
    except ValueError as error:
        raise MappingError("products", str(error)) from None
    if products is None:
        return []
    if not isinstance(products, list):
        raise MappingError("products", f"expected a JSON array, got {type(products).__name__}")
    for index, product in enumerate(products):
        if not isinstance(product, dict):
            reason = f"expected an object, got {type(product).__name__}"
            raise MappingError(f"products[{index}]", reason)
    return products


def _scaled(rating: object, scale: float) -> float | int:
    try:
        number = to_number(rating)
    except ValueError as error:
        raise MappingError("rating", str(error)) from None
    return number if scale == 1 else round(number * scale, 3)
