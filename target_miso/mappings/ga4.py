"""``preset: ga4``: rows of the GA4 BigQuery export (``events_*``) as tap-bigquery emits them.

One row per event: ``event_name``, ``event_timestamp`` (integer microseconds),
``user_pseudo_id``, ``user_id``, ``event_params`` (a list of ``{key, value: {string_value,
int_value, float_value, double_value}}``), ``items``, ``ecommerce``, ``device``,
``collected_traffic_source``. Nested values may also arrive as JSON text. GA4 exports no
event id, so nothing here can recognise a row read twice (see docs/mappings.md).
"""

from __future__ import annotations

import datetime as dt
import typing as t

from target_miso.mappings.base import Columns, Mapping, MappingConfigError, MappingError
from target_miso.mappings.declarative.fields import build_interaction
from target_miso.miso.schema import INTERACTION_TYPES, ITEM_REQUIRED_TYPES, allowed_fields
from target_miso.normalize import parse_json_text, to_number

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

#: GA4 recommended events -> Miso type (page_view and video events are handled apart).
EVENT_TYPES: dict[str, str] = {
    "view_item": "product_detail_page_view",
    "view_item_list": "impression",
    "select_item": "click",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "purchase": "checkout",
    "refund": "refund",
    "view_search_results": "search",
    "search": "search",
    "view_promotion": "impression",
    "select_promotion": "click",
    "add_to_wishlist": "add_to_collection",
    "share": "share",
}
#: Types that say nothing without the items they were about: rows without items are skipped.
_NEED_ITEMS = frozenset({*ITEM_REQUIRED_TYPES, "impression", "click"})
#: What GA4 writes for a value that was not sent.
_NOT_SET = "(not set)"
_VALUE_KEYS = ("string_value", "int_value", "double_value", "float_value")
_CAMPAIGN_KEYS = ("name", "source", "medium", "term", "content")
_OPTIONS = ("page_rules", "events", "wishlist_type", "video_events", "video_id_param")
_VIDEO_EVENTS = ("video_start", "video_progress", "video_complete")
#: The columns the preset reads, whatever its options (they choose events and params, which
#: live in ``event_name`` and ``event_params``), in the export's order; ``event_ts`` (no
#: export column: a view's) is read when ``event_timestamp`` is null.
COLUMNS = (
    "event_timestamp", "event_name", "event_params", "user_id", "user_pseudo_id", "device",
    "collected_traffic_source", "ecommerce", "items", "event_ts",
)  # fmt: skip


def event_params(value: object) -> dict[str, object]:
    """Flatten GA4's ``event_params`` into ``{key: value}``.

    Args:
        value: The list of ``{key, value: {string_value, int_value, ...}}`` (or its JSON text).

    Returns:
        Each key with the one value field that is set.

    Raises:
        MappingError: If the column is not such a list.

    """
    try:
        params = parse_json_text(value)
    except ValueError as error:
        raise MappingError("event_params", str(error)) from None
    if params is None:
        return {}
    if not isinstance(params, list):
        raise MappingError("event_params", f"expected a list, got {type(params).__name__}")
    flat: dict[str, object] = {}
    for param in params:
        if not isinstance(param, dict) or not param.get("key"):
            continue
        holder = param.get("value") or {}
        for value_key in _VALUE_KEYS:
            if isinstance(holder, dict) and holder.get(value_key) is not None:
                flat[param["key"]] = holder[value_key]
                break
    return flat


def from_micros(value: object) -> dt.datetime:
    """Read ``event_timestamp``: microseconds since 1970, UTC.

    Args:
        value: An integer (or its text or Decimal).

    Returns:
        The moment.

    Raises:
        MappingError: If the value is not a number of microseconds.

    """
    try:
        micros = int(to_number(value))
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=micros)
    except (ValueError, OverflowError) as error:
        raise MappingError(
            "event_timestamp", f"{value!r} is not microseconds since 1970 ({error})"
        ) from None


def _structured(record: dict[str, t.Any], column: str, kind: type) -> t.Any:
    try:
        value = parse_json_text(record.get(column))
    except ValueError as error:
        raise MappingError(column, str(error)) from None
    return value if isinstance(value, kind) else kind()


class GA4Mapping(Mapping):
    """Map GA4 export rows to Miso interactions."""

    preset = "ga4"
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
            options: ``page_rules``, ``events``, ``wishlist_type``, ``video_events`` and
                ``video_id_param`` (see docs/mappings.md).
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
        self.event_types = dict(EVENT_TYPES)
        wishlist = options.get("wishlist_type", "add_to_collection")
        if wishlist not in ("add_to_collection", "bookmark"):
            raise MappingConfigError(
                f"{config_path}.wishlist_type", "expected add_to_collection or bookmark"
            )
        self.event_types["add_to_wishlist"] = wishlist
        video_events = options.get("video_events", ["video_complete"])
        if not isinstance(video_events, list) or not set(video_events) <= set(_VIDEO_EVENTS):
            reason = f"expected a list of GA4 video events ({', '.join(_VIDEO_EVENTS)})"
            raise MappingConfigError(f"{config_path}.video_events", reason)
        for name in video_events:
            self.event_types[name] = "watch"
        overrides = options.get("events") or {}
        if not isinstance(overrides, dict):
            raise MappingConfigError(
                f"{config_path}.events", "expected an object of event_name -> type"
            )
        for name, miso_type in overrides.items():
            if miso_type != "skip" and miso_type not in INTERACTION_TYPES:
                raise MappingConfigError(
                    f"{config_path}.events.{name}",
                    f"{miso_type!r} is not a Miso interaction type (or `skip`)",
                )
            self.event_types[str(name)] = miso_type
        self.video_id_param = str(options.get("video_id_param", "video_url"))
        self.page_rules = None
        if options.get("page_rules") is not None:
            from target_miso.mappings.declarative.pages import read_page_rules  # noqa: PLC0415

            self.page_rules = read_page_rules(options["page_rules"], f"{config_path}.page_rules")

    def columns(self) -> Columns:
        """Return the export columns the preset reads (the same with any options).

        Returns:
            ``COLUMNS``.

        """
        return Columns(COLUMNS)

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one export row.

        Args:
            record: The row as tap-bigquery sent it.

        Returns:
            One interaction, or none for events that do not map.

        Raises:
            MappingError: If a value cannot be read (names the column).

        """
        name = str(record.get("event_name") or "")
        params = event_params(record.get("event_params"))
        if name == "page_view" and "page_view" not in self.event_types:
            found = self._page_view(params)
        else:
            found = self._event(name, record, params)
        if found is None:
            return []
        interaction_type, fields = found
        fields.update(self._common(record, params))
        allowed = allowed_fields(interaction_type)
        return [
            build_interaction(
                interaction_type,
                {path: value for path, value in fields.items() if path.split(".")[0] in allowed},
            ),
        ]

    def _page_view(self, params: dict[str, object]) -> tuple[str, dict[str, object]] | None:
        url = params.get("page_location")
        match = self.page_rules.match(str(url)) if self.page_rules and url else None
        if match is None:
            self.skipped["ga4: page_view without a matching page rule"] += 1
            return None
        return match.type, dict(match.fields)

    def _event(
        self,
        name: str,
        record: dict[str, t.Any],
        params: dict[str, object],
    ) -> tuple[str, dict[str, object]] | None:
        interaction_type = self.event_types.get(name)
        if interaction_type is None or interaction_type == "skip":
            self.skipped[f"ga4: event {name or '(none)'} not mapped"] += 1
            return None
        items = self._items(name, record)
        ecommerce = _structured(record, "ecommerce", dict)
        product_ids: object = [item["item_id"] for item in items]
        if not items:
            product_ids = params.get("item_id") or params.get("content_id")
        if interaction_type == "watch":
            product_ids = params.get(self.video_id_param)
        if interaction_type in _NEED_ITEMS and product_ids in (None, "", []):
            # A valid GA4 event that Miso cannot take: skipped by design, not set aside.
            what = self.video_id_param if interaction_type == "watch" else "items"
            self.skipped[f"ga4: {name} without {what}"] += 1
            return None
        if interaction_type == "search" and params.get("search_term") in (None, ""):
            self.skipped[f"ga4: {name} without search_term"] += 1
            return None
        fields: dict[str, object] = {
            "product_ids": product_ids,
            "quantities": [item.get("quantity") or 1 for item in items] or None,
            "revenue": _first(ecommerce.get("purchase_revenue"), params.get("value")),
            "search.keywords": params.get("search_term"),
            "custom_action_name": name,
        }
        return interaction_type, fields

    def _items(self, name: str, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        items = []
        for index, item in enumerate(_structured(record, "items", list)):
            if not isinstance(item, dict):
                reason = f"expected an object, got {type(item).__name__}"
                raise MappingError(f"items[{index}]", reason)
            if item.get("item_id") in (None, "", _NOT_SET):
                # GA4 takes an item named by item_name alone; Miso needs the id. Counted.
                self.skipped[f"ga4: {name} item without item_id (left out)"] += 1
            else:
                items.append(item)
        return items

    @staticmethod
    def _common(record: dict[str, t.Any], params: dict[str, object]) -> dict[str, object]:
        device = _structured(record, "device", dict)
        traffic = _structured(record, "collected_traffic_source", dict)
        timestamp: object = record.get("event_ts")
        if record.get("event_timestamp") is not None:
            timestamp = from_micros(record["event_timestamp"])
        common: dict[str, object] = {
            "user_id": record.get("user_id"),
            "anonymous_id": record.get("user_pseudo_id"),
            "timestamp": timestamp,
            "context.page.url": params.get("page_location"),
            "context.page.referrer": params.get("page_referrer"),
            "context.page.title": params.get("page_title"),
            "context.locale": device.get("language"),
        }
        for key in _CAMPAIGN_KEYS:
            manual = traffic.get(f"manual_campaign_{key}" if key == "name" else f"manual_{key}")
            param = params.get("campaign" if key == "name" else key)
            common[f"context.campaign.{key}"] = _campaign_value(_first(manual, param))
        return common


def _campaign_value(value: object) -> object:
    # GA4 writes placeholders such as "(direct)", "(none)" and "(not set)" for no campaign.
    if isinstance(value, str) and value.startswith("(") and value.endswith(")"):
        return None
    return value


def _first(*values: object) -> object:
    for value in values:
        if value is not None and value != "":
            return value
    return None
