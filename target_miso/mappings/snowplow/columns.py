"""The columns the Snowplow preset reads, so that a tap selects only those (column pruning).

Every warehouse has the same atomic columns; self-describing events and entities live in
``contexts`` / ``unstruct_event`` / ``derived_contexts`` envelopes (TSV-shaped rows, the
Postgres view) or in one column per schema (``contexts_<vendor>_<name>_<major>``,
``unstruct_event_...``: Snowflake, BigQuery), given here as globs. The preset reads only the
schemas listed below; any other event or entity column can stay in the warehouse.

``sql/snowplow/postgres_events_view.sql`` repeats ``ALL_ATOMIC`` and ``READ_SCHEMAS`` (the
narrowed views): tests/snowplow/test_columns.py keeps them equal.
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import Columns
from target_miso.mappings.snowplow.common import CLIENT_SESSION, ECOMMERCE_USER
from target_miso.mappings.snowplow.ecommerce import (
    ECOMMERCE_ACTION,
    PRODUCT,
    PROMOTION,
    TRANSACTION,
)
from target_miso.mappings.snowplow.struct import STRUCT_COLUMNS

if t.TYPE_CHECKING:
    from target_miso.mappings.snowplow.struct import StructRule

SNOWPLOW = "com_snowplowanalytics_snowplow"
MEDIA = "com_snowplowanalytics_snowplow_media"
WEB_PAGE = f"{SNOWPLOW}_web_page"
MEDIA_PLAYER = f"{SNOWPLOW}_media_player"
MEDIA_SESSION = f"{MEDIA}_session"
SITE_SEARCH = f"{SNOWPLOW}_site_search"
ADD_TO_CART = f"{SNOWPLOW}_add_to_cart"
REMOVE_FROM_CART = f"{SNOWPLOW}_remove_from_cart"
MEDIA_END = f"{MEDIA}_end_event"
MEDIA_PLAYER_EVENT = f"{SNOWPLOW}_media_player_event"

#: Entities the preset reads (schema keys: ``event.schema_key``).
READ_ENTITIES = (
    WEB_PAGE, CLIENT_SESSION, PRODUCT, PROMOTION, TRANSACTION, ECOMMERCE_USER, MEDIA_PLAYER,
    MEDIA_SESSION,
)  # fmt: skip
#: Self-describing events the preset maps.
READ_EVENTS = (
    ECOMMERCE_ACTION, SITE_SEARCH, ADD_TO_CART, REMOVE_FROM_CART, MEDIA_END, MEDIA_PLAYER_EVENT,
)  # fmt: skip
READ_SCHEMAS = READ_ENTITIES + READ_EVENTS

#: Read by pings' durations (``ping_duration``).
PING_TIME = "dvce_created_tstamp"
#: Every atomic column the preset may read, with any options: which event, its time, who,
#: the page, the context fields, the struct event, legacy orders.
ALL_ATOMIC = (
    "event_id", "event", "event_name", "collector_tstamp", "derived_tstamp", PING_TIME,
    "user_id", "domain_userid", "network_userid", "domain_sessionid",
    "page_url", "page_referrer", "page_title", "useragent", "br_lang", "user_ipaddress",
    "mkt_campaign", "mkt_source", "mkt_medium", "mkt_term", "mkt_content",
    *STRUCT_COLUMNS.values(),
    "tr_orderid", "tr_total", "ti_orderid", "ti_sku", "ti_quantity",
)  # fmt: skip
#: Read only when the options ask: the pings' time, and the struct columns that a struct
#: rule's template names (the event's category and action are always read).
BY_OPTION = frozenset({PING_TIME, *STRUCT_COLUMNS.values()} - {"se_category", "se_action"})
#: Atomic columns read whatever the options.
ALWAYS = tuple(column for column in ALL_ATOMIC if column not in BY_OPTION)
#: The JSON envelopes of TSV-shaped rows (S3 files, a COPY of the TSV, the Postgres view).
ENVELOPES = ("contexts", "derived_contexts", "unstruct_event")
#: The per-schema columns of Snowflake and BigQuery: a major version (``_1``) or the full
#: one (``_1_0_0``, BigQuery loader v1) after the schema key.
WIDE = tuple(f"contexts_{key}_[0-9]*" for key in READ_ENTITIES) + tuple(
    f"unstruct_event_{key}_[0-9]*" for key in READ_EVENTS
)


def snowplow_columns(*, ping_duration: bool, struct_rules: list[StructRule]) -> Columns:
    """Return the columns the preset reads with these options.

    Args:
        ping_duration: Whether page pings add to their page view's duration.
        struct_rules: The compiled ``struct_rules``: their templates say which of
            ``se_label``, ``se_property`` and ``se_value`` are read.

    Returns:
        Atomic columns and envelopes by name, per-schema columns as globs.

    """
    placeholders = {name for rule in struct_rules for template in rule.templates
                    for name in template.uses}  # fmt: skip
    wanted = set(ALWAYS) | {STRUCT_COLUMNS[name] for name in placeholders}
    if ping_duration:
        wanted.add(PING_TIME)
    names = tuple(column for column in ALL_ATOMIC if column in wanted)
    return Columns(names + ENVELOPES, WIDE)
