"""The fields every interaction from a Snowplow event carries: who, when, and the context.

* ``user_id`` and ``anonymous_id`` together, so Miso links a visitor's history to the
  account; ``user_id`` is the atomic ``user_id``, else the e-commerce plugin's ``user``
  entity's ``id`` unless ``is_guest`` is true (never its ``email``); ``anonymous_id`` is
  ``domain_userid``, else ``network_userid``, else the mobile ``client_session`` entity's
  ``userId``;
* ``timestamp``: ``derived_tstamp``, else ``collector_tstamp``;
* ``context``: ``page`` (url, referrer, title), ``user_agent``, ``locale`` (``br_lang``),
  ``campaign`` (``mkt_*``), ``truncated_ip`` (``user_ipaddress``);
* ``miso_id`` when the page URL carries a ``miso_id`` query parameter holding a UUID.
"""

from __future__ import annotations

import functools
import re
import typing as t
import urllib.parse

from target_miso.mappings.base import MappingError
from target_miso.normalize import to_utc_timestamp

if t.TYPE_CHECKING:
    from target_miso.mappings.snowplow.event import SnowplowEvent

CLIENT_SESSION = "com_snowplowanalytics_snowplow_client_session"
#: The e-commerce plugin's user entity (``setEcommerceUser``): ``id``, ``is_guest``, ``email``.
ECOMMERCE_USER = "com_snowplowanalytics_snowplow_ecommerce_user"
_TRUE_TEXTS = frozenset({"true", "t", "1"})
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_CAMPAIGN = (("name", "mkt_campaign"), ("source", "mkt_source"), ("medium", "mkt_medium"),
             ("term", "mkt_term"), ("content", "mkt_content"))  # fmt: skip
_MAX_OCTET = 255
_MAX_OCTET_DIGITS = 3


def common_fields(event: SnowplowEvent) -> dict[str, t.Any]:  # noqa: PLR0912 - hot path, kept flat
    """Return the identity, time and context fields of one event.

    Args:
        event: The event.

    Returns:
        The fields, ready to be merged into an interaction.

    Raises:
        MappingError: If the event has no readable timestamp (names the column).

    """
    # Runs for every interaction: plain dict lookups, no helper calls where avoidable.
    get = event.record.get
    text = event.text
    common: dict[str, t.Any] = {}
    user_id = text("user_id") or ecommerce_user_id(event)
    if user_id:
        common["user_id"] = user_id
    anonymous_id = text("domain_userid") or text("network_userid")
    if anonymous_id is None:
        session_user = event.entity(CLIENT_SESSION).get("user_id")
        anonymous_id = str(session_user) if session_user else None
    if anonymous_id:
        common["anonymous_id"] = anonymous_id
    common["timestamp"] = event_time(event)
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
            miso_id = miso_id_of(url)
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
    if (
        get("mkt_campaign")
        or get("mkt_source")
        or get("mkt_medium")
        or get("mkt_term")
        or get("mkt_content")
    ):
        context["campaign"] = {key: str(get(source)) for key, source in _CAMPAIGN if get(source)}
    if context:
        common["context"] = context
    return common


def ecommerce_user_id(event: SnowplowEvent) -> str | None:
    """Return the id of the logged-in user the e-commerce plugin's ``user`` entity names.

    None when there is no such entity, it has no ``id``, or ``is_guest`` is true (a guest
    has no account for the id to name). The ``email`` is never used: it is personal data,
    not a user id.
    """
    user = event.entity(ECOMMERCE_USER, enriched=False)  # trackers send it, never enrichments
    user_id = user.get("id")
    if user_id is None or _is_true(user.get("is_guest")):
        return None
    return str(user_id).strip() or None


def _is_true(value: object) -> bool:
    # JSON gives a boolean; a boolean column that a tap turned into text gives "true", "t", "1".
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXTS
    return value is True or (isinstance(value, (int, float)) and value == 1)


def event_time(event: SnowplowEvent) -> str:
    """``derived_tstamp`` (device clock corrected by the collector), else ``collector_tstamp``.

    Raises:
        MappingError: If neither is set or the one used is not a date-time.

    """
    get = event.record.get
    column = "derived_tstamp" if get("derived_tstamp") not in (None, "") else "collector_tstamp"
    value = get(column)
    if value in (None, ""):
        raise MappingError("collector_tstamp", "missing (and derived_tstamp is empty too)")
    try:
        return to_utc_timestamp(value)
    except ValueError as error:
        raise MappingError(column, str(error)) from None


def miso_id_of(url: str) -> str | None:
    """Return the ``miso_id`` query parameter of a URL when it is a UUID (on Miso result links)."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("miso_id") or []
    return values[0] if values and _UUID.match(values[0]) else None


@functools.lru_cache(maxsize=65_536)  # visitors come back: most addresses repeat
def truncated_ip(value: str | None) -> str | None:
    """Return an IPv4 address with its last octet zeroed, as Miso's ``truncated_ip`` wants.

    Snowplow's IP anonymisation writes ``x`` for masked octets (``1.2.x.x``): those become 0.
    An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) gives its IPv4 address. Other IPv6
    addresses give None: Miso's field is an IPv4 address (``format: ipv4``), so no truncation
    of an IPv6 address would be accepted. Hashes (the PII enrichment) and anything else that
    is not an address give None too.

    Args:
        value: ``user_ipaddress`` as stored.

    Returns:
        For example ``203.0.113.0``, or None.

    """
    if not value:
        return None
    if ":" in value:
        head, _, tail = value.rpartition(":")
        if head.lower() not in ("::ffff", "0:0:0:0:0:ffff"):
            return None
        value = tail
    octets = value.split(".")
    if len(octets) != 4:  # noqa: PLR2004
        return None
    numbers = []
    for octet in octets:
        if octet in ("x", "X"):
            numbers.append(0)
        elif (
            octet.isascii()
            and octet.isdigit()
            and len(octet) <= _MAX_OCTET_DIGITS
            and int(octet) <= _MAX_OCTET
        ):
            numbers.append(int(octet))
        else:
            return None
    return f"{numbers[0]}.{numbers[1]}.{numbers[2]}.0"
