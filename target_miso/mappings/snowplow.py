"""preset: snowplow -- Snowplow events (``atomic.events``) to Miso interactions, no code needed.

What maps to what (docs/snowplow.md has the full table and every option):

* page views -> the type of the first matching URL rule (``page_rules``), with the
  page's engaged time from its page pings as ``duration``;
* the e-commerce plugin's actions -> product_detail_page_view, impression, click,
  add_to_cart, remove_from_cart, checkout (with quantities and revenue), refund;
* legacy ``transaction`` + ``transaction_item`` rows -> one checkout per order;
* site_search -> search; struct events -> ``struct_rules``; media end events -> watch/listen;
* anything else is skipped and counted by event name.

Rows arrive in any of the warehouse layouts (see ``snowplow_event``). Page views (waiting
for their pings) and legacy orders (waiting for their items) are held until ``flush()``,
which the target calls before every checkpoint. Event ids are deduplicated within the run
and across runs (``seen_events``).
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import re
import typing as t
import urllib.parse

from target_miso.mappings.base import Held, Mapping, MappingConfigError, MappingError
from target_miso.mappings.rules import compile_page_rules
from target_miso.mappings.seen_events import SeenEvents
from target_miso.mappings.snowplow_event import SnowplowEvent
from target_miso.normalize import to_number, to_utc_timestamp
from target_miso.schema import INTERACTION_TYPES, TYPE_FIELDS

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

SNOWPLOW = "com_snowplowanalytics_snowplow"
ECOMMERCE = "com_snowplowanalytics_snowplow_ecommerce"
MEDIA = "com_snowplowanalytics_snowplow_media"
WEB_PAGE = f"{SNOWPLOW}_web_page"
CLIENT_SESSION = f"{SNOWPLOW}_client_session"
ECOMMERCE_ACTION = f"{ECOMMERCE}_snowplow_ecommerce_action"

#: The e-commerce plugin's action types and the Miso type each becomes.
ECOMMERCE_TYPES = {
    "product_view": "product_detail_page_view",
    "list_view": "impression",
    "list_click": "click",
    "add_to_cart": "add_to_cart",
    "remove_from_cart": "remove_from_cart",
    "transaction": "checkout",
    "refund": "refund",
    "promo_view": "impression",
    "promo_click": "click",
}

DEFAULT_DEDUPE_STORE = ".target-miso/snowplow-event-ids.sqlite"
_OPTIONS = {
    "page_rules": None,
    "struct_rules": None,
    "product_view_source": "auto",
    "ping_duration": True,
    "ping_heartbeat_seconds": 10,
    "ping_min_visit_seconds": 5,
    "media_id_field": "label",
    "dedupe_store": DEFAULT_DEDUPE_STORE,
    "dedupe_retention_days": 30,
}
_PRODUCT_VIEW_SOURCES = ("auto", "page_rules", "ecommerce", "both")
_STRUCT_RULE_KEYS = frozenset({"category", "action", "type", "product_id", "quantity", "rating"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CAMPAIGN = (("name", "mkt_campaign"), ("source", "mkt_source"), ("medium", "mkt_medium"),
             ("term", "mkt_term"), ("content", "mkt_content"))  # fmt: skip
_EPOCH = dt.datetime(1970, 1, 1)


class _HeldPageView:
    __slots__ = ("interaction", "ping_buckets", "source")

    def __init__(self, interaction: dict[str, t.Any], source: dict[str, t.Any]) -> None:
        self.interaction = interaction
        self.source = source
        self.ping_buckets: set[int] = set()


class _HeldOrder:
    __slots__ = ("common", "items", "revenue", "source")

    def __init__(self) -> None:
        self.common: dict[str, t.Any] | None = None
        self.source: dict[str, t.Any] | None = None
        self.revenue: object = None
        self.items: list[tuple[str, object]] = []


class StructRule:
    """``{category, action, type, product_id, quantity, rating}``: one struct event rule."""

    def __init__(self, setting: object, path: str) -> None:
        """Check one rule.

        Args:
            setting: The rule as written.
            path: Its setting path.

        Raises:
            MappingConfigError: On any mistake.
        """
        if not isinstance(setting, dict):
            raise MappingConfigError(path, "expected an object with category, action and type")
        unknown = sorted(set(setting) - _STRUCT_RULE_KEYS)
        if unknown:
            allowed = ", ".join(sorted(_STRUCT_RULE_KEYS))
            raise MappingConfigError(f"{path}.{unknown[0]}", f"unknown key (allowed: {allowed})")
        self.category = str(setting.get("category", "*"))
        self.action = str(setting.get("action", "*"))
        self.type = setting.get("type")
        if self.type not in INTERACTION_TYPES:
            raise MappingConfigError(f"{path}.type", f"{self.type!r} is not a Miso interaction type")
        fields = TYPE_FIELDS[self.type]
        # Which struct column fills which field; product ids default to the label.
        self.columns: dict[str, str] = {}
        defaults = {"product_id": "se_label"} if "product_ids" in fields else {}
        for key, field in (("product_id", "product_ids"), ("quantity", "quantities"),
                           ("rating", "rating")):  # fmt: skip
            column = setting.get(key, defaults.get(key))
            if column is None:
                continue
            if field not in fields:
                reason = f"type {self.type!r} has no {field}"
                raise MappingConfigError(f"{path}.{key}", reason)
            if column not in ("se_label", "se_property", "se_value", "se_category", "se_action"):
                reason = "expected a struct column: se_label, se_property or se_value"
                raise MappingConfigError(f"{path}.{key}", reason)
            self.columns[field] = column
        if self.type == "rate" and "rating" not in self.columns:
            self.columns["rating"] = "se_value"

    def matches(self, category: object, action: object) -> bool:
        """Whether the rule applies to this category and action (``*`` matches any)."""
        return self.category in ("*", category) and self.action in ("*", action)


class SnowplowMapping(Mapping):
    """Map Snowplow events to Miso interactions."""

    preset = "snowplow"

    def __init__(
        self,
        options: MappingType[str, t.Any],
        *,
        stream_name: str,
        config_path: str,
    ) -> None:
        """Read and check the options (see docs/snowplow.md).

        Args:
            options: The stream's mapping options, without ``preset``.
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
        settings = {**_OPTIONS, **options}
        self.page_rules = compile_page_rules(settings["page_rules"], f"{config_path}.page_rules")
        rules = settings["struct_rules"] or []
        if not isinstance(rules, list):
            raise MappingConfigError(f"{config_path}.struct_rules", "expected a list of rules")
        self.struct_rules = [
            StructRule(rule, f"{config_path}.struct_rules[{index}]") for index, rule in enumerate(rules)
        ]
        self.product_view_source = settings["product_view_source"]
        if self.product_view_source not in _PRODUCT_VIEW_SOURCES:
            reason = f"expected one of {', '.join(_PRODUCT_VIEW_SOURCES)}"
            raise MappingConfigError(f"{config_path}.product_view_source", reason)
        self.ping_duration = bool(settings["ping_duration"])
        self.heartbeat = _positive(settings, "ping_heartbeat_seconds", config_path)
        self.min_visit = _positive(settings, "ping_min_visit_seconds", config_path)
        self.media_id_field = str(settings["media_id_field"])
        retention = _positive(settings, "dedupe_retention_days", config_path)
        self.seen = SeenEvents(settings["dedupe_store"], retention)
        self._page_views: dict[object, _HeldPageView] = {}
        self._orders: dict[str, _HeldOrder] = {}
        # (page view, product) pairs already sent as a product view, for product_view_source auto.
        self._product_views: collections.OrderedDict[tuple[object, str], None] = collections.OrderedDict()

    # --- The seam --------------------------------------------------------------------

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one event row.

        Args:
            record: The row as the tap sent it.

        Returns:
            The interactions it gives now (page views and orders come later, from flush).

        Raises:
            MappingError: If a column the event needs cannot be read (names the column).
        """
        event = SnowplowEvent(record)
        event_id = event.text("event_id")
        if event_id is None:
            raise MappingError("event_id", "missing; every Snowplow event has one")
        name = event.text("event_name") or event.text("event") or ""
        if self.seen.check_and_add(event_id):
            self.skipped["snowplow: duplicate event_id"] += 1
            return []
        if name == "page_view":
            return self._page_view(event)
        if name == "page_ping":
            self._page_ping(event)
            return []
        if name in ("transaction", "transaction_item"):
            self._legacy_order(event, name)
            return []
        if name == "event" or event.text("event") == "struct":
            return self._struct(event)
        return self._self_describing(event, name)

    def flush(self) -> list[Held]:
        """Give back held page views (with their ping durations) and legacy orders."""
        held: list[Held] = []
        for view in self._page_views.values():
            if view.ping_buckets:
                engaged = self.heartbeat * (len(view.ping_buckets) - 1) + self.min_visit
                view.interaction["duration"] = engaged
            held.append((view.interaction, view.source))
        self._page_views.clear()
        for order_id, order in self._orders.items():
            interaction = self._checkout(order_id, order)
            if interaction is not None:
                held.append((interaction, order.source or {}))
        self._orders.clear()
        return held

    def commit(self) -> None:
        """Everything handed out is delivered or set aside: remember its event ids."""
        self.seen.commit()

    def close(self) -> None:
        """Close the event id store."""
        self.seen.close()

    # --- Events ----------------------------------------------------------------------

    def _page_view(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        url = event.text("page_url")
        found = self.page_rules.match(url) if url and len(self.page_rules) else None
        if found is None:
            self.skipped["snowplow: page_view without a matching page rule"] += 1
            return []
        if found.type == "product_detail_page_view" and self.product_view_source == "ecommerce":
            self.skipped["snowplow: page_view of a product (product_view_source: ecommerce)"] += 1
            return []
        interaction = {"type": found.type, **self._common(event)}
        for field, value in found.fields.items():
            _place(interaction, field, value)
        key = _page_view_key(event)
        if self._is_repeat_product_view(key, interaction):
            return []
        if self.ping_duration and "duration" in TYPE_FIELDS[found.type]:
            self._page_views[key] = _HeldPageView(interaction, _identity(event))
            return []
        return [interaction]

    def _page_ping(self, event: SnowplowEvent) -> None:
        view = self._page_views.get(_page_view_key(event))
        if view is None:
            self.skipped["snowplow: page_ping after its page view was sent, or of an unmapped page"] += 1
            return
        moment = event.get("dvce_created_tstamp") or event.get("collector_tstamp")
        try:
            seconds = _epoch_seconds(moment)
        except ValueError:
            raise MappingError("dvce_created_tstamp", "is not a date-time") from None
        view.ping_buckets.add(int(seconds // self.heartbeat))
        self.skipped["snowplow: page_ping (added to its page view's duration)"] += 1

    def _legacy_order(self, event: SnowplowEvent, name: str) -> None:
        if name == "transaction":
            order_id = event.text("tr_orderid")
            if order_id is None:
                raise MappingError("tr_orderid", "missing on a transaction event")
            order = self._orders.setdefault(order_id, _HeldOrder())
            order.common = self._common(event)
            order.source = _identity(event)
            order.revenue = _number(event, "tr_total")
            return
        order_id, sku = event.text("ti_orderid"), event.text("ti_sku")
        if order_id is None or sku is None:
            raise MappingError("ti_orderid" if order_id is None else "ti_sku", "missing on a transaction_item event")
        order = self._orders.setdefault(order_id, _HeldOrder())
        order.items.append((sku, _number(event, "ti_quantity") or 1))
        if order.common is None:
            order.common = self._common(event)
            order.source = _identity(event)

    def _checkout(self, order_id: str, order: _HeldOrder) -> dict[str, t.Any] | None:
        if not order.items:
            self.skipped["snowplow: transaction without items"] += 1
            return None
        interaction = {
            "type": "checkout",
            **(order.common or {}),
            "product_ids": [sku for sku, _ in order.items],
            "quantities": [quantity for _, quantity in order.items],
        }
        if order.revenue is not None:
            interaction["revenue"] = order.revenue
        interaction.setdefault("context", {}).setdefault("custom_context", {})["order_id"] = order_id
        return interaction

    def _struct(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        category, action = event.text("se_category"), event.text("se_action")
        for rule in self.struct_rules:
            if rule.matches(category, action):
                interaction = {"type": rule.type, **self._common(event)}
                for field, column in rule.columns.items():
                    value = event.text(column)
                    if value is None:
                        continue
                    if field == "product_ids":
                        interaction[field] = [value]
                    else:
                        number = _number(event, column)
                        interaction[field] = [number] if field == "quantities" else number
                return [interaction]
        self.skipped[f"snowplow: struct {category}/{action} (no struct rule)"] += 1
        return []

    def _self_describing(self, event: SnowplowEvent, name: str) -> list[dict[str, t.Any]]:
        key, data = event.unstruct()
        if key == ECOMMERCE_ACTION:
            return self._ecommerce(event, data)
        if key == f"{SNOWPLOW}_site_search":
            return self._search(event, data)
        if key in (f"{SNOWPLOW}_add_to_cart", f"{SNOWPLOW}_remove_from_cart"):
            sku = data.get("sku")
            if not sku:
                raise MappingError("unstruct_event", f"{name}: sku is missing")
            interaction_type = "add_to_cart" if key.endswith("add_to_cart") else "remove_from_cart"
            interaction = {"type": interaction_type, **self._common(event), "product_ids": [str(sku)]}
            if interaction_type == "add_to_cart":
                interaction["quantities"] = [_to_number("quantity", data.get("quantity") or 1)]
            return [interaction]
        if key == f"{MEDIA}_end_event" or (
            key == f"{SNOWPLOW}_media_player_event" and data.get("type") == "ended"
        ):
            return self._media(event)
        self.skipped[f"snowplow: {name or key or 'unknown event'}"] += 1
        return []

    def _ecommerce(self, event: SnowplowEvent, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        action = data.get("type")
        interaction_type = ECOMMERCE_TYPES.get(action)  # type: ignore[arg-type]
        if interaction_type is None:
            self.skipped[f"snowplow: ecommerce {action}"] += 1
            return []
        if action == "product_view" and self.product_view_source == "page_rules":
            self.skipped["snowplow: ecommerce product_view (product_view_source: page_rules)"] += 1
            return []
        products = event.entities(f"{ECOMMERCE}_product")
        if action in ("promo_view", "promo_click"):
            promotion = event.entity(f"{ECOMMERCE}_promotion")
            product_ids = [str(i) for i in promotion.get("product_ids") or [] if i not in (None, "")]
        else:
            if action == "list_view":
                products = sorted(products, key=lambda product: _position(product.get("position")))
            product_ids = [str(p["id"]) for p in products if p.get("id") not in (None, "")]
        if action in ("product_view", "list_click"):
            product_ids = product_ids[:1]
        if not product_ids:
            self.skipped[f"snowplow: ecommerce {action} without products"] += 1
            return []
        interaction = {"type": interaction_type, **self._common(event), "product_ids": product_ids}
        if action in ("add_to_cart", "transaction"):
            interaction["quantities"] = [
                _to_number("product.quantity", p.get("quantity") or 1)
                for p in products if p.get("id") not in (None, "")
            ]
        if action == "transaction":
            revenue = event.entity(f"{ECOMMERCE}_transaction").get("revenue")
            if revenue is not None:
                interaction["revenue"] = _to_number("transaction.revenue", revenue)
        if action == "product_view" and self._is_repeat_product_view(_page_view_key(event), interaction):
            return []
        return [interaction]

    def _is_repeat_product_view(self, key: object, interaction: dict[str, t.Any]) -> bool:
        """Count a page's product view once when both a URL rule and the plugin report it."""
        if interaction["type"] != "product_detail_page_view" or self.product_view_source != "auto":
            return False
        pair = (key, interaction["product_ids"][0])
        if pair in self._product_views:
            self.skipped["snowplow: product view reported twice (page rule and ecommerce)"] += 1
            return True
        self._product_views[pair] = None
        if len(self._product_views) > 100_000:  # bounded: pages are viewed in order
            self._product_views.popitem(last=False)
        return False

    def _search(self, event: SnowplowEvent, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        terms = data.get("terms") or []
        keywords = " ".join(str(term) for term in terms if term not in (None, "")) if isinstance(terms, list) else str(terms)
        filters = {}
        if isinstance(data.get("filters"), dict):
            for name, value in data["filters"].items():
                values = value if isinstance(value, list) else [value]
                filters[name] = [_filter_text(item) for item in values if item is not None]
        search: dict[str, t.Any] = {}
        if keywords:
            search["keywords"] = keywords
        if any(filters.values()):
            search["filters"] = {name: values for name, values in filters.items() if values}
        if not search:
            self.skipped["snowplow: site_search without terms or filters"] += 1
            return []
        return [{"type": "search", **self._common(event), "search": search}]

    def _media(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        player = event.entity(f"{SNOWPLOW}_media_player")
        media_id = player.get(self.media_id_field)
        if media_id in (None, ""):
            self.skipped[f"snowplow: media end without media_player.{self.media_id_field}"] += 1
            return []
        interaction_type = "listen" if player.get("media_type") == "audio" else "watch"
        interaction = {"type": interaction_type, **self._common(event), "product_ids": [str(media_id)]}
        played = event.entity(f"{MEDIA}_session").get("time_played")
        if played is None:
            played = player.get("current_time")
        if played is not None:
            interaction["duration"] = _to_number("media time played", played)
        return [interaction]

    # --- Fields every interaction carries ----------------------------------------------

    def _common(self, event: SnowplowEvent) -> dict[str, t.Any]:
        # Runs for every interaction: plain dict lookups, no helper calls where avoidable.
        get = event.record.get
        text = event.text
        common: dict[str, t.Any] = {}
        user_id = text("user_id")
        if user_id:
            common["user_id"] = user_id
        anonymous_id = text("domain_userid") or text("network_userid")
        if anonymous_id is None:
            session_user = event.entity(CLIENT_SESSION).get("user_id")
            anonymous_id = str(session_user) if session_user else None
        if anonymous_id:
            common["anonymous_id"] = anonymous_id
        column = "derived_tstamp" if get("derived_tstamp") not in (None, "") else "collector_tstamp"
        try:
            common["timestamp"] = to_utc_timestamp(get(column))
        except ValueError as error:
            raise MappingError(column, str(error)) from None
        context: dict[str, t.Any] = {}
        url = text("page_url")
        if url:
            page = {"url": url}
            referrer, title = get("page_referrer"), get("page_title")
            if referrer:
                page["referrer"] = str(referrer)
            if title:
                page["title"] = str(title)
            context["page"] = page
            if "miso_id=" in url:
                miso_id = _miso_id(url)
                if miso_id:
                    common["miso_id"] = miso_id
        user_agent, locale = text("useragent"), text("br_lang")
        if user_agent:
            context["user_agent"] = user_agent
        if locale:
            context["locale"] = locale
        ip = truncated_ip(text("user_ipaddress"))
        if ip:
            context["truncated_ip"] = ip
        if get("mkt_campaign") or get("mkt_source") or get("mkt_medium") or get("mkt_term") or get("mkt_content"):
            campaign = {key: str(get(source)) for key, source in _CAMPAIGN if get(source)}
            context["campaign"] = campaign
        if context:
            common["context"] = context
        return common


# --- Helpers ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)  # visitors come back: most addresses repeat
def truncated_ip(value: str | None) -> str | None:
    """An IPv4 address with its last octet zeroed, as Miso's ``truncated_ip`` wants.

    Snowplow's IP anonymisation writes ``x`` for masked octets (``1.2.x.x``): those become
    0. IPv6 addresses, hashes (the PII enrichment) and anything else give None.

    Args:
        value: ``user_ipaddress`` as stored.

    Returns:
        For example ``203.0.113.0``, or None.
    """
    if not value or value.count(".") != 3:  # noqa: PLR2004
        return None
    octets = value.split(".")
    for index, octet in enumerate(octets[:3]):
        if octet in ("x", "X"):
            octets[index] = "0"
        elif not (octet.isdigit() and len(octet) <= 3 and int(octet) <= 255):  # noqa: PLR2004
            return None
    last = octets[3]
    if not (last in ("x", "X") or (last.isdigit() and len(last) <= 3 and int(last) <= 255)):  # noqa: PLR2004
        return None
    return f"{int(octets[0])}.{int(octets[1])}.{int(octets[2])}.0"


# What a held interaction keeps of its source row (for the rejects file, should Miso refuse
# it): holding whole 131-column rows until the next checkpoint would cost hundreds of MB.


def _identity(event: SnowplowEvent) -> dict[str, t.Any]:
    get = event.record.get
    identity = {"event_id": get("event_id"), "event_name": get("event_name"),
                "collector_tstamp": get("collector_tstamp"), "page_url": get("page_url")}  # fmt: skip
    order_id = get("tr_orderid") or get("ti_orderid")
    if order_id:
        identity["order_id"] = order_id
    return identity


def _page_view_key(event: SnowplowEvent) -> object:
    page_id = event.entity(WEB_PAGE).get("id")
    if page_id:
        return page_id
    return (event.text("domain_sessionid"), event.text("page_url"))


def _miso_id(url: str) -> str | None:
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("miso_id") or []
    return values[0] if values and _UUID.match(values[0]) else None


def _place(interaction: dict[str, t.Any], path: str, value: object) -> None:
    *parents, leaf = path.split(".")
    target = interaction
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


def _number(event: SnowplowEvent, column: str) -> int | float | None:
    value = event.get(column)
    if value is None:
        return None
    return _to_number(column, value)


def _to_number(field: str, value: object) -> int | float:
    try:
        return to_number(value)
    except ValueError as error:
        raise MappingError(field, str(error)) from None


def _position(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")


def _filter_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _epoch_seconds(value: object) -> float:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = str(value).strip().replace("Z", "+00:00")
        moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (moment - _EPOCH).total_seconds()


def _positive(settings: dict[str, t.Any], name: str, config_path: str) -> float:
    value = settings[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise MappingConfigError(f"{config_path}.{name}", "expected a positive number")
    return value
