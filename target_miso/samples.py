"""Sample Snowplow events: one logical set, rendered as each warehouse layout stores it.

Used by the demo (``scripts/demo.sh``), the tests (the same events in every layout must
give the same interactions) and the benchmark (realistic 114-column rows at volume).

A logical event is atomic column values plus an optional self-describing event and its
entities, with keys as the trackers send them (camelCase where the schema says so). The
renderers write them as:

* ``render_tsv_shaped``: every enriched TSV column as text, JSON envelopes in
  ``contexts`` / ``unstruct_event`` / ``derived_contexts`` (S3 files, a COPY of the TSV,
  the shipped Postgres view over the shredded tables);
* ``render_snowflake``: typed atomic columns, ``unstruct_event_*_1`` / ``contexts_*_1``
  columns of JSON text with camelCase keys, timestamps as plain strings;
* ``render_bigquery``: nested records with snake_case keys, NUMERIC money columns as
  strings, and optionally the older ``_1_0_0`` column names.
"""

from __future__ import annotations

import datetime as dt
import gzip as gzip_module
import itertools
import json
import random
import re
import typing as t
import uuid
from pathlib import Path

#: The 131 fields of an enriched TSV line, in order (Snowplow's enriched TSV format).
ENRICHED_TSV_COLUMNS: tuple[str, ...] = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx", "network_userid",
    "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude", "geo_longitude",
    "geo_region_name", "ip_isp", "ip_organization", "ip_domain", "ip_netspeed", "page_url",
    "page_title", "page_referrer", "page_urlscheme", "page_urlhost", "page_urlport",
    "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme", "refr_urlhost",
    "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment", "refr_medium",
    "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term", "mkt_content",
    "mkt_campaign", "contexts", "se_category", "se_action", "se_label", "se_property",
    "se_value", "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total", "tr_tax",
    "tr_shipping", "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku", "ti_name",
    "ti_category", "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max",
    "pp_yoffset_min", "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version",
    "br_type", "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash",
    "br_features_java", "br_features_director", "br_features_quicktime",
    "br_features_realplayer", "br_features_windowsmedia", "br_features_gears",
    "br_features_silverlight", "br_cookies", "br_colordepth", "br_viewwidth", "br_viewheight",
    "os_name", "os_family", "os_manufacturer", "os_timezone", "dvce_type", "dvce_ismobile",
    "dvce_screenwidth", "dvce_screenheight", "doc_charset", "doc_width", "doc_height",
    "tr_currency", "tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_currency",
    "ti_price_base", "base_currency", "geo_timezone", "mkt_clickid", "mkt_network", "etl_tags",
    "dvce_sent_tstamp", "refr_domain_userid", "refr_dvce_tstamp", "derived_contexts",
    "domain_sessionid", "derived_tstamp", "event_vendor", "event_name", "event_format",
    "event_version", "event_fingerprint", "true_tstamp",
)  # fmt: skip
JSON_COLUMNS = ("contexts", "unstruct_event", "derived_contexts")
#: The 128 atomic columns every warehouse has.
ATOMIC_COLUMNS = tuple(column for column in ENRICHED_TSV_COLUMNS if column not in JSON_COLUMNS)
_INTEGERS = frozenset({
    "txn_id", "domain_sessionidx", "page_urlport", "refr_urlport", "ti_quantity", "pp_xoffset_min",
    "pp_xoffset_max", "pp_yoffset_min", "pp_yoffset_max", "br_colordepth", "br_viewwidth",
    "br_viewheight", "dvce_screenwidth", "dvce_screenheight", "doc_width", "doc_height",
})  # fmt: skip
_MONEY = frozenset({"tr_total", "tr_tax", "tr_shipping", "ti_price", "tr_total_base",
                    "tr_tax_base", "tr_shipping_base", "ti_price_base"})  # fmt: skip
_FLOATS = frozenset({"geo_latitude", "geo_longitude", "se_value"})
_TIMESTAMPS = frozenset(column for column in ATOMIC_COLUMNS if column.endswith("_tstamp"))

WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
ECOMMERCE_ACTION = (
    "iglu:com.snowplowanalytics.snowplow.ecommerce/snowplow_ecommerce_action/jsonschema/1-0-2"
)
PRODUCT = "iglu:com.snowplowanalytics.snowplow.ecommerce/product/jsonschema/1-0-0"
TRANSACTION = "iglu:com.snowplowanalytics.snowplow.ecommerce/transaction/jsonschema/1-0-0"
REFUND = "iglu:com.snowplowanalytics.snowplow.ecommerce/refund/jsonschema/1-0-0"
PROMOTION = "iglu:com.snowplowanalytics.snowplow.ecommerce/promotion/jsonschema/1-0-0"
ECOMMERCE_USER = "iglu:com.snowplowanalytics.snowplow.ecommerce/user/jsonschema/1-0-0"
SITE_SEARCH = "iglu:com.snowplowanalytics.snowplow/site_search/jsonschema/1-0-0"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
MEDIA_END = "iglu:com.snowplowanalytics.snowplow.media/end_event/jsonschema/1-0-0"
MEDIA_PLAYER = "iglu:com.snowplowanalytics.snowplow/media_player/jsonschema/2-0-0"
MEDIA_SESSION = "iglu:com.snowplowanalytics.snowplow.media/session/jsonschema/1-0-0"
CLIENT_SESSION = "iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2"
UA_PARSER = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"
_CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
_UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"

MISO_ID = "6f1c1f2e-8f5e-4a55-9a8e-0d1c9c3b2a11"
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0 Safari/537.36"
)

#: The mapping options the samples are written for (the demo and meltano.yml use them too).
SAMPLE_MAPPING_OPTIONS: dict[str, t.Any] = {
    "preset": "snowplow",
    "page_rules": [
        {"pattern": r"^/product/(?P<product_id>[^/?#]+)", "type": "product_detail_page_view"},
        {"pattern": r"^/category/(?P<category>[^?#]+)", "type": "category_page_view"},
        {"pattern": r"^/$", "type": "home_page_view"},
    ],
    "struct_rules": [
        {"category": "product", "action": "like", "type": "like"},
    ],
}


class LogicalEvent(t.NamedTuple):
    """One event as the tracker and enrichment made it, before any loader shaped it."""

    atomic: dict[str, t.Any]
    unstruct: tuple[str, dict[str, t.Any]] | None = None
    contexts: tuple[tuple[str, dict[str, t.Any]], ...] = ()
    derived_contexts: tuple[tuple[str, dict[str, t.Any]], ...] = ()


_START = dt.datetime(2024, 5, 1, 10, 0, 0)


def _at(seconds: float) -> str:
    # A real clock from 10:00 (a million benchmark rows run past the hour, and the day).
    moment = _START + dt.timedelta(milliseconds=round(seconds * 1000))
    return f"{moment:%Y-%m-%d %H:%M:%S}.{moment.microsecond // 1000:03d}"


def _event(number: int, name: str, seconds: float, **atomic: t.Any) -> dict[str, t.Any]:
    event = {
        "page_view": "page_view", "page_ping": "page_ping", "transaction": "transaction",
        "transaction_item": "transaction_item", "event": "struct",
    }.get(name, "unstruct")  # fmt: skip
    values: dict[str, t.Any] = {
        "app_id": "shop", "platform": "web", "etl_tstamp": _at(seconds + 2),
        "collector_tstamp": _at(seconds + 0.5), "dvce_created_tstamp": _at(seconds),
        "dvce_sent_tstamp": _at(seconds + 0.2), "derived_tstamp": _at(seconds + 0.3),
        "event": event, "event_id": str(uuid.UUID(int=number)), "v_tracker": "js-3.23.0",
        "v_collector": "ssc-3.2.0-kinesis", "v_etl": "snowplow-enrich-kinesis-5.0.0",
        "domain_userid": "d-visitor-1", "network_userid": "n-visitor-1", "domain_sessionidx": 3,
        "domain_sessionid": "s-session-1", "user_ipaddress": "203.0.113.42",
        "useragent": USER_AGENT, "br_lang": "en-US", "br_viewwidth": 1280, "br_viewheight": 720,
        "dvce_screenwidth": 1920, "dvce_screenheight": 1080, "doc_charset": "UTF-8",
        "os_timezone": "Europe/Berlin", "event_vendor": "com.snowplowanalytics.snowplow",
        "event_name": name, "event_format": "jsonschema", "event_version": "1-0-0",
        "event_fingerprint": f"fp{number}", "geo_country": "DE", "geo_latitude": 52.52,
    }  # fmt: skip
    values.update(atomic)
    url = values.get("page_url")
    if url:
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        path, _, query = ("/" + path).partition("?")
        values.update(page_urlscheme=scheme, page_urlhost=host, page_urlport=443,
                      page_urlpath=path, page_urlquery=query or None)  # fmt: skip
    return values


def _page(number: int, seconds: float, path: str, page_id: str, **atomic: t.Any) -> LogicalEvent:
    url = f"https://shop.example{path}"
    values = _event(number, "page_view", seconds, page_url=url, page_title=f"Shop {path}", **atomic)
    return LogicalEvent(values, contexts=((WEB_PAGE, {"id": page_id}),),
                        derived_contexts=((UA_PARSER, {"useragentFamily": "Chrome"}),))  # fmt: skip


def _ping(number: int, seconds: float, path: str, page_id: str, **atomic: t.Any) -> LogicalEvent:
    values = _event(number, "page_ping", seconds, page_url=f"https://shop.example{path}",
                    pp_yoffset_max=900, **atomic)  # fmt: skip
    return LogicalEvent(values, contexts=((WEB_PAGE, {"id": page_id}),))


def _ecommerce(number: int, seconds: float, action: str, products: list[dict], page_id: str | None,
               **extra: t.Any) -> LogicalEvent:  # fmt: skip
    contexts = [(PRODUCT, product) for product in products]
    if page_id:
        contexts.append((WEB_PAGE, {"id": page_id}))
    contexts += extra.pop("contexts", [])
    values = _event(number, "snowplow_ecommerce_action", seconds, **extra)
    values["event_vendor"] = "com.snowplowanalytics.snowplow.ecommerce"
    return LogicalEvent(
        values, unstruct=(ECOMMERCE_ACTION, {"type": action}), contexts=tuple(contexts)
    )


def _product(sku: str, **extra: t.Any) -> dict[str, t.Any]:
    return {"id": sku, "category": "Women/Shoes", "price": 29.95, "currency": "EUR", **extra}


SPRING_SALE = {
    "id": "spring-sale",
    "name": "Spring sale",
    "product_ids": ["sku-10", "sku-11"],
    "position": 1,
}


def sample_events() -> list[LogicalEvent]:
    """Return the logical event set behind the demo and the layout tests.

    See expected_interactions.
    """
    shoe_page = "https://shop.example/product/sku-1"
    return [
        _page(
            1,
            0,
            "/product/sku-1?utm_source=newsletter",
            "pv-1",
            mkt_source="newsletter",
            mkt_medium="email",
            mkt_campaign="spring",
        ),
        _ping(2, 10, "/product/sku-1", "pv-1"),
        _ping(3, 20, "/product/sku-1", "pv-1"),
        _ping(4, 24, "/product/sku-1", "pv-1"),  # same 10-second bucket as the one before
        _ping(5, 31, "/product/sku-1", "pv-1"),
        # The e-commerce plugin reports the same product view: counted once, as the plugin's
        # event (product_view_source: ecommerce), with the page's engaged time.
        _ecommerce(
            6,
            1,
            "product_view",
            [_product("sku-1")],
            "pv-1",
            page_url=f"{shoe_page}?utm_source=newsletter",
            mkt_source="newsletter",
            mkt_medium="email",
            mkt_campaign="spring",
        ),
        _page(7, 40, "/category/women/shoes", "pv-2", user_ipaddress="198.51.x.x"),
        _page(8, 60, "/", "pv-3", user_id="u-42", user_ipaddress="2001:db8::1"),
        _ping(9, 70, "/", "pv-3"),
        _page(10, 80, "/about", "pv-4"),  # no page rule matches
        _ecommerce(
            11,
            90,
            "add_to_cart",
            [_product("sku-1", quantity=2), _product("sku-2")],
            "pv-1",
            page_url=shoe_page,
        ),
        _ecommerce(
            12,
            100,
            "list_view",
            [_product("sku-4", position=2), _product("sku-3", position=1)],
            "pv-2",
        ),
        _ecommerce(
            13,
            110,
            "transaction",
            [_product("sku-1", quantity=2)],
            None,
            user_id="u-42",
            contexts=[
                (
                    TRANSACTION,
                    {
                        "transaction_id": "t-1",
                        "revenue": 59.9,
                        "currency": "EUR",
                        "payment_method": "card",
                        "total_quantity": 2,
                    },
                )
            ],
        ),
        LogicalEvent(
            _event(
                14,
                "transaction",
                120,
                tr_orderid="o-1",
                tr_total=30.5,
                tr_currency="EUR",
                user_ipaddress="6b3d0c2f8e9a",
            )
        ),
        LogicalEvent(
            _event(
                15,
                "transaction_item",
                120,
                ti_orderid="o-1",
                ti_sku="sku-5",
                ti_price=10.5,
                ti_quantity=1,
            )
        ),
        LogicalEvent(
            _event(
                16,
                "transaction_item",
                120,
                ti_orderid="o-1",
                ti_sku="sku-6",
                ti_price=6.5,
                ti_quantity=3,
            )
        ),
        LogicalEvent(
            _event(17, "site_search", 130, event_vendor="com.snowplowanalytics.snowplow"),
            unstruct=(
                SITE_SEARCH,
                {
                    "terms": ["red", "shoes"],
                    "filters": {"color": "red", "inStock": True},
                    "totalResults": 12,
                    "pageResults": 10,
                },
            ),
        ),
        LogicalEvent(
            _event(
                18,
                "event",
                140,
                event_vendor="com.google.analytics",
                se_category="product",
                se_action="like",
                se_label="sku-7",
            )
        ),
        LogicalEvent(
            _event(
                19,
                "event",
                141,
                event_vendor="com.google.analytics",
                se_category="video",
                se_action="seek",
                se_value=12.5,
            )
        ),
        LogicalEvent(
            _event(20, "end_event", 150, event_vendor="com.snowplowanalytics.snowplow.media"),
            unstruct=(MEDIA_END, {}),
            contexts=(
                (
                    MEDIA_PLAYER,
                    {
                        "currentTime": 120.0,
                        "duration": 120.0,
                        "ended": True,
                        "paused": False,
                        "label": "vid-1",
                        "mediaType": "video",
                    },
                ),
                (MEDIA_SESSION, {"mediaSessionId": "ms-1", "timePlayed": 95.5}),
            ),
        ),
        # A mobile app event: no cookie ids, the anonymous id is the client session's user.
        _ecommerce(
            21,
            160,
            "add_to_cart",
            [_product("sku-8")],
            None,
            platform="mob",
            domain_userid=None,
            network_userid=None,
            user_ipaddress=None,
            useragent=None,
            contexts=[
                (
                    CLIENT_SESSION,
                    {"userId": "mob-user-1", "sessionId": "mob-s-1", "sessionIndex": 1},
                )
            ],
        ),
        # Snowplow delivered event 11 twice: one interaction.
        _ecommerce(
            11,
            90,
            "add_to_cart",
            [_product("sku-1", quantity=2), _product("sku-2")],
            "pv-1",
            page_url=shoe_page,
        ),
        LogicalEvent(
            _event(22, "link_click", 170),
            unstruct=(LINK_CLICK, {"targetUrl": "https://elsewhere.example/"}),
        ),
        # No plugin event on this product page: the URL rule's product view counts.
        _page(23, 180, f"/product/sku-9?miso_id={MISO_ID}", "pv-5", user_id="u-42"),
        _ecommerce(
            24, 190, "remove_from_cart", [_product("sku-2", quantity=1)], "pv-1", page_url=shoe_page
        ),
        _ecommerce(
            25,
            200,
            "list_click",
            [_product("sku-3", position=1)],
            "pv-2",
            page_url="https://shop.example/category/women/shoes",
        ),
        _ecommerce(
            26,
            210,
            "refund",
            [_product("sku-1", quantity=1)],
            None,
            user_id="u-42",
            contexts=[
                (
                    REFUND,
                    {
                        "transaction_id": "t-1",
                        "currency": "EUR",
                        "refund_amount": 29.95,
                        "refund_reason": "too small",
                    },
                )
            ],
        ),
        _ecommerce(27, 220, "promo_view", [], None, contexts=[(PROMOTION, SPRING_SALE)]),
        _ecommerce(28, 230, "promo_click", [], None, contexts=[(PROMOTION, SPRING_SALE)]),
        _ecommerce(29, 240, "checkout_step", [], None),  # skipped: no Miso type
    ]


def expected_interactions() -> list[dict[str, t.Any]]:
    """Return what the default sample mapping must give for sample_events(), sorted by timestamp.

    Written out by hand (not computed by the preset), so a test comparing the two can fail.
    """

    def ts(seconds: float) -> str:
        return _at(seconds + 0.3).replace(" ", "T") + "Z"

    def page(path: str, **extra: t.Any) -> dict[str, t.Any]:
        return {"page": {"url": f"https://shop.example{path}", "title": f"Shop {path}"}, **extra}

    web = {"user_agent": USER_AGENT, "locale": "en-US", "truncated_ip": "203.0.113.0"}
    visitor = {"anonymous_id": "d-visitor-1"}
    shoe = {"page": {"url": "https://shop.example/product/sku-1"}, **web}
    return [
        # The plugin's product view replaces the URL rule's, and takes the page's pings.
        {"type": "product_detail_page_view", **visitor, "timestamp": ts(1),
         "context": {"page": {"url": "https://shop.example/product/sku-1?utm_source=newsletter"},
                     **web,
                     "campaign": {"name": "spring", "source": "newsletter", "medium": "email"}},
         "product_ids": ["sku-1"], "duration": 25},
        {"type": "category_page_view", **visitor, "timestamp": ts(40),
         "context": {**page("/category/women/shoes"), **web, "truncated_ip": "198.51.0.0"},
         "category": ["women", "shoes"]},
        {"type": "home_page_view", "user_id": "u-42", **visitor, "timestamp": ts(60),
         "context": {**page("/"), "user_agent": USER_AGENT, "locale": "en-US"}, "duration": 5},
        {"type": "add_to_cart", **visitor, "timestamp": ts(90), "context": shoe,
         "product_ids": ["sku-1", "sku-2"], "quantities": [2, 1]},
        {"type": "impression", **visitor, "timestamp": ts(100),
         "context": web, "product_ids": ["sku-3", "sku-4"]},
        {"type": "checkout", "user_id": "u-42", **visitor, "timestamp": ts(110), "context": web,
         "product_ids": ["sku-1"], "quantities": [2], "revenue": 59.9},
        {"type": "checkout", **visitor, "timestamp": ts(120),
         "context": {"user_agent": USER_AGENT, "locale": "en-US",
                     "custom_context": {"order_id": "o-1"}},
         "product_ids": ["sku-5", "sku-6"], "quantities": [1, 3], "revenue": 30.5},
        {"type": "search", **visitor, "timestamp": ts(130), "context": web,
         "search": {"keywords": "red shoes", "filters": {"color": ["red"], "inStock": ["true"]}}},
        {"type": "like", **visitor, "timestamp": ts(140), "context": web, "product_ids": ["sku-7"]},
        {"type": "watch", **visitor, "timestamp": ts(150), "context": web,
         "product_ids": ["vid-1"], "duration": 95.5},
        {"type": "add_to_cart", "anonymous_id": "mob-user-1", "timestamp": ts(160),
         "context": {"locale": "en-US"}, "product_ids": ["sku-8"], "quantities": [1]},
        {"type": "product_detail_page_view", "user_id": "u-42", **visitor, "miso_id": MISO_ID,
         "timestamp": ts(180), "context": {**page(f"/product/sku-9?miso_id={MISO_ID}"), **web},
         "product_ids": ["sku-9"]},
        {"type": "remove_from_cart", **visitor, "timestamp": ts(190), "context": shoe,
         "product_ids": ["sku-2"]},
        {"type": "click", **visitor, "timestamp": ts(200),
         "context": {"page": {"url": "https://shop.example/category/women/shoes"}, **web},
         "product_ids": ["sku-3"]},
        {"type": "refund", "user_id": "u-42", **visitor, "timestamp": ts(210), "context": web,
         "product_ids": ["sku-1"]},
        {"type": "impression", **visitor, "timestamp": ts(220), "context": web,
         "product_ids": ["sku-10", "sku-11"]},
        {"type": "click", **visitor, "timestamp": ts(230), "context": web,
         "product_ids": ["sku-10", "sku-11"]},
    ]  # fmt: skip


# --- Renderers ------------------------------------------------------------------------------


def _schema_key(iglu: str) -> tuple[str, str, str]:
    """(column stem, major, full version) of an Iglu URI: ("com_acme_thing", "1", "1_0_0")."""
    vendor, name, _, version = iglu.removeprefix("iglu:").split("/")
    stem = f"{vendor}_{name}".replace(".", "_").replace("-", "_").lower()
    return stem, version.split("-")[0], version.replace("-", "_")


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower()


def _text(column: str, value: t.Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def render_tsv_shaped(events: t.Iterable[LogicalEvent]) -> list[dict[str, str | None]]:
    """Rows with every enriched TSV column as text (None for empty), JSON envelopes inline."""
    rows = []
    for event in events:
        row = {column: _text(column, event.atomic.get(column)) for column in ENRICHED_TSV_COLUMNS}
        if event.unstruct:
            schema, data = event.unstruct
            row["unstruct_event"] = json.dumps(
                {"schema": _UNSTRUCT, "data": {"schema": schema, "data": data}}
            )
        for column, entities in (
            ("contexts", event.contexts),
            ("derived_contexts", event.derived_contexts),
        ):
            if entities:
                items = [{"schema": schema, "data": data} for schema, data in entities]
                row[column] = json.dumps({"schema": _CONTEXTS, "data": items})
        rows.append(row)
    return rows


def _typed(column: str, value: t.Any, *, money_as_text: bool, timestamp_format: str) -> t.Any:
    if value is None:
        return None
    if column in _TIMESTAMPS:
        return timestamp_format.format(value)
    if column in _MONEY:
        return f"{value}" if money_as_text else float(value)
    if column in _INTEGERS:
        return int(value)
    if column in _FLOATS:
        return float(value)
    return value


def render_snowflake(events: t.Iterable[LogicalEvent]) -> list[dict[str, t.Any]]:
    """Rows as tap-snowflake emits the Snowflake loader's wide table."""
    rows = []
    for event in events:
        row = {
            column: _typed(column, event.atomic.get(column), money_as_text=False,
                           timestamp_format="{}000")  # TIMESTAMP_NTZ as a plain string
            for column in ATOMIC_COLUMNS
        }  # fmt: skip
        row["load_tstamp"] = row["collector_tstamp"]
        if event.unstruct:
            stem, major, _ = _schema_key(event.unstruct[0])
            row[f"unstruct_event_{stem}_{major}"] = json.dumps(event.unstruct[1])
        grouped: dict[str, list[dict]] = {}
        for schema, data in (*event.contexts, *event.derived_contexts):
            stem, major, _ = _schema_key(schema)
            grouped.setdefault(f"contexts_{stem}_{major}", []).append(data)
        row.update({column: json.dumps(items) for column, items in grouped.items()})
        rows.append(row)
    return rows


def render_bigquery(
    events: t.Iterable[LogicalEvent], *, full_version_names: bool = False
) -> list[dict[str, t.Any]]:
    """Rows as tap-bigquery emits the BigQuery loader's table (v2, or v1 with ``_1_0_0`` names)."""

    def snake_keys(data: dict[str, t.Any]) -> dict[str, t.Any]:
        return {_snake(key): value for key, value in data.items()}

    rows = []
    for event in events:
        row = {
            column: _typed(column, event.atomic.get(column), money_as_text=True,
                           timestamp_format="{}000+00:00")
            for column in ATOMIC_COLUMNS
        }  # fmt: skip
        for column in _TIMESTAMPS:
            if row.get(column):
                row[column] = row[column].replace(" ", "T")
        row["load_tstamp"] = row["collector_tstamp"]
        if event.unstruct:
            stem, major, full = _schema_key(event.unstruct[0])
            row[f"unstruct_event_{stem}_{full if full_version_names else major}"] = snake_keys(
                event.unstruct[1]
            )
        for schema, data in (*event.contexts, *event.derived_contexts):
            stem, major, full = _schema_key(schema)
            column = f"contexts_{stem}_{full if full_version_names else major}"
            row.setdefault(column, []).append(snake_keys(data))
        rows.append(row)
    return rows


def write_enriched_tsv(
    path: str | Path,
    rows: t.Iterable[dict[str, t.Any]],
    gzip: bool = True,
    *,
    compress: bool | None = None,
) -> None:
    """Write TSV-shaped rows as Snowplow's S3 loader does: headerless tab-separated lines.

    Args:
        path: The file to write.
        rows: Rows from ``render_tsv_shaped`` (missing columns are written empty).
        gzip: Compress the file (the S3 loader's files are gzip).
        compress: The same as ``gzip`` (an older name, still accepted).

    """
    if compress is not None:
        gzip = compress
    lines = (
        "\t".join(row.get(column) or "" for column in ENRICHED_TSV_COLUMNS) + "\n" for row in rows
    )
    opener = gzip_module.open if gzip else open
    with opener(path, "wt", encoding="utf-8") as out:
        out.writelines(lines)


# --- Volume for the benchmark ---------------------------------------------------------------

#: 114 columns: the enriched fields without the browser-feature flags and a few rarely used ones.
BENCHMARK_COLUMNS = tuple(
    column for column in ENRICHED_TSV_COLUMNS
    if not column.startswith("br_features_")
    and column not in ("tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_price_base",
                       "base_currency", "etl_tags", "mkt_network", "mkt_clickid")
)  # fmt: skip

#: The share of benchmark events whose visitor is logged in (has a user_id).
_LOGGED_IN_SHARE = 0.3
#: The benchmark's Singer lines have a STATE after every this many records.
_STATE_EVERY = 10_000


def benchmark_rows(count: int, seed: int = 1) -> t.Iterator[dict[str, str | None]]:
    """Realistic TSV-shaped rows: 55% page views, 25% pings, 10% e-commerce, 5% search, 5% other.

    Pings and e-commerce events belong to one of the last page views (same page view id,
    URL and visitor), as on a real site, so pings add durations and the plugin's product
    views meet their pages' URL-rule views. Visitors and addresses repeat the way real
    traffic does (a few thousand of each).
    """
    rng = random.Random(seed)  # noqa: S311 - sample data
    numbers = itertools.count(1_000_000)
    kinds = (
        ["page_view"] * 55
        + ["page_ping"] * 25
        + ["ecommerce"] * 10
        + ["search"] * 5
        + ["struct"] * 5
    )
    recent: list[tuple[str, str, dict[str, t.Any]]] = []  # (page view id, path, visitor columns)
    for index in range(count):
        number = next(numbers)
        seconds = index * 0.01
        kind = rng.choice(kinds) if recent else "page_view"
        sku = f"sku-{rng.randrange(20_000)}"
        visitor = f"d-{rng.randrange(5_000):06d}"
        common = {
            "domain_userid": visitor,
            "domain_sessionid": f"s-{visitor}",
            "user_id": f"u-{visitor}" if rng.random() < _LOGGED_IN_SHARE else None,
            "user_ipaddress": f"203.0.{rng.randrange(16)}.{rng.randrange(256)}",
        }
        if kind == "page_view":
            path = rng.choice([f"/product/{sku}", "/category/women/shoes", "/", f"/product/{sku}"])
            page_id = f"pv-{number}"
            event = _page(number, seconds, path, page_id, **common)
            recent = [*recent[-49:], (page_id, path, common)]
        elif kind == "page_ping":
            page_id, path, common = rng.choice(recent)
            event = _ping(number, seconds, path, page_id)
            event.atomic.update(common)
        elif kind == "ecommerce":
            page_id, path, common = recent[-1]
            page_sku = path.rsplit("/", 1)[-1] if path.startswith("/product/") else sku
            action = rng.choice(["add_to_cart", "product_view", "transaction", "list_view"])
            products = [
                _product(page_sku, quantity=1),
                _product(f"sku-{rng.randrange(20_000)}", position=2),
            ]
            if action == "product_view":
                products = products[:1]
            extra = {}
            if action == "transaction":
                transaction = {"transaction_id": f"t-{index}", "revenue": 42.5, "currency": "EUR"}
                extra = {"contexts": [(TRANSACTION, transaction)]}
            event = _ecommerce(number, seconds, action, products, page_id,
                               page_url=f"https://shop.example{path}",
                               **common, **extra)  # fmt: skip
        elif kind == "search":
            search = {"terms": ["red", "shoes"], "filters": {"color": "red"}, "totalResults": 12}
            event = LogicalEvent(
                _event(number, "site_search", seconds, **common), unstruct=(SITE_SEARCH, search)
            )
        else:
            struct = {"se_category": "product", "se_action": "like", "se_label": sku}
            event = LogicalEvent(_event(number, "event", seconds, **struct, **common))
        row = render_tsv_shaped([event])[0]
        yield {column: row[column] for column in BENCHMARK_COLUMNS}


def benchmark_singer_lines(count: int, stream: str = "atomic-events") -> t.Iterator[str]:
    """Singer messages as str lines without newline: SCHEMA, RECORDs, a STATE every 10,000."""
    schema = {
        "type": "object",
        "properties": {column: {"type": ["string", "null"]} for column in BENCHMARK_COLUMNS},
    }
    yield json.dumps(
        {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["event_id"]}
    )
    last = None
    for index, row in enumerate(benchmark_rows(count)):
        yield json.dumps({"type": "RECORD", "stream": stream, "record": row})
        last = row["collector_tstamp"]
        if index % _STATE_EVERY == _STATE_EVERY - 1:
            yield json.dumps(
                {"type": "STATE", "value": {"bookmarks": {stream: {"replication_key_value": last}}}}
            )
    yield json.dumps(
        {"type": "STATE", "value": {"bookmarks": {stream: {"replication_key_value": last}}}}
    )


def write_demo_files(directory: str | Path) -> list[Path]:
    """Write the sample events as two S3-loader files (gzip enriched TSV) into a directory."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    rows = render_tsv_shaped(sample_events())
    files = [folder / "part-0001.tsv.gz", folder / "part-0002.tsv.gz"]
    write_enriched_tsv(files[0], rows[:12])
    write_enriched_tsv(files[1], rows[12:])
    return files


if __name__ == "__main__":
    import sys

    for written in write_demo_files(sys.argv[1] if len(sys.argv) > 1 else "output/demo/events"):
        print(written)
