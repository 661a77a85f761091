"""preset: snowplow -- Snowplow events (``atomic.events``) to Miso interactions, no code needed.

What maps to what (docs/snowplow.md has the full table and every option):

* page views -> the type of the first matching URL rule (``page_rules``), with the
  page's engaged time from its page pings as ``duration`` (only pings of the page view's
  session that come while it is alive count); a page view re-sent under the same
  ``web_page`` id is a duplicate;
* the e-commerce plugin's actions -> product_detail_page_view, impression, click,
  add_to_cart, remove_from_cart, checkout (with quantities and revenue), refund
  (``ecommerce.py``);
* legacy ``transaction`` + ``transaction_item`` rows -> one checkout per order;
* site_search -> search; struct events -> ``struct_rules`` (``struct.py``); media end
  events -> watch/listen;
* anything else is skipped and counted by event name.

Rows arrive in any of the warehouse layouts; ``event.py`` reads them all the same way, and
``columns.py`` says which columns that takes (so a tap can select only those). With
``payload_column`` the row arrives as JSON text in one column, serialized by the database
(the fast Postgres path, sql/snowplow/postgres_events_view.sql), and is parsed here.
Page views (waiting for their pings and for the e-commerce plugin's product view of the same
page) and legacy orders (waiting for their items) are held until ``flush()``, which the
target calls before every checkpoint. Event ids are deduplicated within the run, and across
runs for events delivered to the same Miso environment (``seen_events``).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import sqlite3
import typing as t

import orjson

from target_miso.mappings.base import Columns, Held, Mapping, MappingConfigError, MappingError
from target_miso.mappings.field_templates import place
from target_miso.mappings.rules import PageMatch, compile_page_rules
from target_miso.mappings.seen_events import SeenEvents
from target_miso.mappings.snowplow.columns import (
    ADD_TO_CART,
    ENVELOPES,
    MEDIA_END,
    MEDIA_PLAYER,
    MEDIA_PLAYER_EVENT,
    MEDIA_SESSION,
    REMOVE_FROM_CART,
    SITE_SEARCH,
    WEB_PAGE,
    snowplow_columns,
)
from target_miso.mappings.snowplow.common import common_fields, truncated_ip
from target_miso.mappings.snowplow.ecommerce import ECOMMERCE_ACTION, ecommerce_fields
from target_miso.mappings.snowplow.event import SnowplowEvent
from target_miso.mappings.snowplow.struct import compile_struct_rules, struct_values
from target_miso.miso.schema import TYPE_FIELDS
from target_miso.normalize import to_number

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

__all__ = ["SnowplowMapping", "truncated_ip"]

PRODUCT_VIEW = "product_detail_page_view"

DEFAULT_DEDUPE_STORE = ".target-miso/snowplow-event-ids.sqlite"
#: Every option and its default (docs/snowplow.md explains each).
OPTIONS: dict[str, t.Any] = {
    "page_rules": None,
    "struct_rules": None,
    "product_view_source": "ecommerce",
    "ping_duration": True,
    "ping_heartbeat_seconds": 10,
    "ping_min_visit_seconds": 5,
    "session_timeout_seconds": 1800,
    "media_id_field": "label",
    "dedupe_store": DEFAULT_DEDUPE_STORE,
    "dedupe_retention_days": 30,
    "dedupe_replay": False,
    "state_lookback_seconds": 0,
    "payload_column": None,
}
PRODUCT_VIEW_SOURCES = ("ecommerce", "page_rules", "both")
#: How many closed page views are remembered to explain late pings in the run summary
#: (~200 bytes each: 100,000 made peak RSS grow by 20 MB between 100k and 1M rows).
_CLOSED_PAGES_KEPT = 20_000
_EPOCH = dt.datetime(1970, 1, 1)
_LOGGER = logging.getLogger("target-miso")
#: Why a ping finds no page view once its page view left the closed-page memory.
FORGOTTEN_PAGE = f"page view forgotten ({_CLOSED_PAGES_KEPT:,} or more closed page views later)"
#: Why a closed page takes no more pings (the run summary's reasons; a page view whose
#: ``web_page`` id was closed with PAGE_SENT or PAGE_NOT_MAPPED was seen: a new one is a re-send).
PAGE_SENT = "page view already sent"
PAGE_NOT_MAPPED = "page view not mapped"
PRODUCT_VIEW_SENT = "product view already sent"
DUPLICATE_PAGE_VIEW = "snowplow: duplicate page view (same web_page id)"
OTHER_SESSION = "page_ping: another domain_sessionid than its page view"
TIMED_OUT = "page_ping: over session_timeout_seconds after its page view's last activity"


class _ForgottenPages:
    """The page views pushed out of the closed-page memory, in a fixed 1 MiB bit set.

    A Bloom filter: a page it never held is almost never taken for a forgotten one (about
    2% of lookups once a million pages were forgotten, more beyond), and it only labels a
    skipped ping in the run summary. Allocated at the first page forgotten.
    """

    __slots__ = ("_bits",)
    _SIZE_BITS = 1 << 23
    _PROBES = 4

    def __init__(self) -> None:
        self._bits: bytearray | None = None

    def _positions(self, key: object) -> t.Iterator[int]:
        digest = hash(key) & 0xFFFF_FFFF_FFFF_FFFF  # salted per process: only for this run
        step = (digest >> 32) | 1
        for probe in range(self._PROBES):
            yield (digest + probe * step) % self._SIZE_BITS

    def add(self, key: object) -> None:
        if self._bits is None:
            self._bits = bytearray(self._SIZE_BITS // 8)
        for position in self._positions(key):
            self._bits[position >> 3] |= 1 << (position & 7)

    def __contains__(self, key: object) -> bool:
        bits = self._bits
        return bits is not None and all(
            bits[position >> 3] & (1 << (position & 7)) for position in self._positions(key)
        )


class _HeldPage:
    """One page view waiting for the flush: its interaction, pings and plugin product views."""

    __slots__ = (
        "derived",
        "dropped_pings",
        "duplicate_ids",
        "last_active",
        "ping_buckets",
        "pings",
        "plugin_views",
        "sent_at_once",
        "session",
        "source",
        "started",
        "view",
        "view_seen",
    )

    def __init__(self) -> None:
        #: The page rule's interaction; None when no rule matched or the view was not seen.
        self.view: dict[str, t.Any] | None = None
        #: The view's ``derived_tstamp`` in epoch seconds (None: not set or not readable).
        self.derived: float | None = None
        #: Whether a page_view event of this page was read (a later one is a re-send).
        self.view_seen = False
        #: Whether the page view's interaction was sent at once (nothing to wait for).
        self.sent_at_once = False
        #: The page view's ``domain_sessionid``: pings of another session do not count.
        self.session: str | None = None
        #: When the page view happened, on the pings' clock, as stored (parsed only when a
        #: ping comes: most page views have none by their flush).
        self.started: object = None
        #: The latest ping that counted, in epoch seconds (None: none yet, the page view's
        #: time counts): a ping more than the session timeout later does not count.
        self.last_active: float | None = None
        self.pings = 0
        #: Pings that came from another session or after the page view timed out.
        self.dropped_pings = 0
        self.source: dict[str, t.Any] = {}
        self.ping_buckets: set[int] = set()
        self.plugin_views: list[Held] = []
        #: Event ids of re-sent copies of the page view (same web_page id): they share the
        #: fate of the interaction the page gives.
        self.duplicate_ids: tuple[str, ...] = ()

    def anchor(self, event: SnowplowEvent, *, page_view: bool) -> None:
        """Take the session and the start of activity from the page view (else the first event).

        Args:
            event: The page view, or the plugin product view that made this page.
            page_view: Whether the event is the page view (which always wins).

        """
        if page_view:
            self.view_seen = True
        elif self.session is not None or self.started is not None:
            return
        self.session = event.text("domain_sessionid")
        self.started = event.get("dvce_created_tstamp") or event.get("collector_tstamp")

    def event_ids(self) -> tuple[str, ...]:
        """Return the ids of the events held here (the page view's, then the plugin's)."""
        sources = [self.source] if self.view is not None else []
        sources += [source for _, source in self.plugin_views]
        return tuple(str(source["event_id"]) for source in sources if "event_id" in source)


class _HeldOrder:
    __slots__ = ("common", "event_ids", "items", "revenue", "source")

    def __init__(self) -> None:
        self.event_ids: list[str] = []
        self.common: dict[str, t.Any] | None = None
        self.source: dict[str, t.Any] | None = None
        self.revenue: object = None
        self.items: list[tuple[str, object]] = []


class SnowplowMapping(Mapping):
    """Map Snowplow events to Miso interactions."""

    preset = "snowplow"
    option_names = tuple(OPTIONS)

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
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            reason = f"unknown option (allowed: preset, {', '.join(OPTIONS)})"
            raise MappingConfigError(f"{config_path}.{unknown[0]}", reason)
        settings = {**OPTIONS, **options}
        self.page_rules = compile_page_rules(settings["page_rules"], f"{config_path}.page_rules")
        self.struct_rules = compile_struct_rules(
            settings["struct_rules"], f"{config_path}.struct_rules"
        )
        self.product_view_source = settings["product_view_source"]
        if self.product_view_source not in PRODUCT_VIEW_SOURCES:
            reason = f"expected one of {', '.join(PRODUCT_VIEW_SOURCES)}"
            raise MappingConfigError(f"{config_path}.product_view_source", reason)
        if not isinstance(settings["ping_duration"], bool):
            raise MappingConfigError(f"{config_path}.ping_duration", "expected true or false")
        self.ping_duration = settings["ping_duration"]
        self.heartbeat = _positive(settings, "ping_heartbeat_seconds", config_path)
        self.min_visit = _positive(settings, "ping_min_visit_seconds", config_path)
        self.session_timeout = _positive(settings, "session_timeout_seconds", config_path)
        self.media_id_field = str(settings["media_id_field"])
        retention = _positive(settings, "dedupe_retention_days", config_path)
        if not isinstance(settings["dedupe_replay"], bool):
            raise MappingConfigError(f"{config_path}.dedupe_replay", "expected true or false")
        store = settings["dedupe_store"]
        if store is not None and (not isinstance(store, str) or not store.strip()):
            raise MappingConfigError(f"{config_path}.dedupe_store", "expected a file path or null")
        self.state_lookback_seconds = _lookback(settings, retention, config_path)
        payload = settings["payload_column"]
        if payload is not None and (not isinstance(payload, str) or not payload):
            reason = "expected a column name or null"
            raise MappingConfigError(f"{config_path}.payload_column", reason)
        #: The column whose JSON text holds the row (None: the row's own columns).
        self.payload_column: str | None = payload
        #: The last record unpacked and its row, so that kept_source does not parse it again.
        self._unpacked: tuple[dict[str, t.Any], dict[str, t.Any]] | None = None
        self._missing_warned: frozenset[str] = frozenset()
        try:
            self.seen = SeenEvents(store, retention, replay=settings["dedupe_replay"])
        except (OSError, sqlite3.Error) as error:
            raise MappingConfigError(
                f"{config_path}.dedupe_store", f"cannot open: {error}"
            ) from None
        self._pages: dict[object, _HeldPage] = {}
        self._orders: dict[str, _HeldOrder] = {}
        # Page views no longer held, and why: explains pings that come too late.
        self._closed_pages: collections.OrderedDict[object, str] = collections.OrderedDict()
        self._forgotten_pages = _ForgottenPages()
        #: The page key of each page view held until the flush, by event_id: a duplicate
        #: copy read before the flush may still replace it (``_prefer_earlier_copy``).
        self._held_views: dict[str, object] = {}
        #: Set when the event being mapped went into an interaction sent later (held for the
        #: flush, or a re-sent page view of one sent): its id is not skipped, it is delivered.
        self._held_now = False

    # --- The seam --------------------------------------------------------------------

    def row_columns(self) -> Columns:
        """Return the columns of the row the preset reads with these options.

        Returns:
            Atomic columns, envelopes and per-schema globs (``columns.py``).

        """
        return snowplow_columns(ping_duration=self.ping_duration, struct_rules=self.struct_rules)

    def columns(self) -> Columns:
        """Return what the stream must carry: the row's columns, or only ``payload_column``.

        Returns:
            The columns to select in the tap.

        """
        if self.payload_column is not None:
            return Columns((self.payload_column,))
        return self.row_columns()

    def bind_schema(self, schema: dict[str, t.Any]) -> None:
        """Check the stream's columns against what the options read.

        Args:
            schema: The stream's JSON Schema.

        Raises:
            MappingConfigError: If ``payload_column`` is not a column of the stream.

        """
        properties = schema.get("properties") or {}
        if not properties:
            return
        if self.payload_column is not None:
            if self.payload_column not in properties:
                reason = (
                    f"{self.payload_column!r} is not a column of stream '{self.stream_name}' "
                    f"(its columns: {', '.join(sorted(properties)[:10])}); re-create the view "
                    "with sql/snowplow/postgres_events_view.sql, or remove the option"
                )
                raise MappingConfigError(f"{self.config_path}.payload_column", reason)
            return
        # A select list narrower than the options need (they changed since it was written)
        # would leave fields out of every interaction: say so once.
        missing = frozenset(
            name
            for name in self.row_columns().names
            if name not in properties and name not in ENVELOPES
        )
        if missing and missing != self._missing_warned:
            self._missing_warned = missing
            _LOGGER.warning(
                "Stream '%s' has no column %s, which %s reads with its options: interactions "
                "lack what they hold. Select them in the tap (`python -m target_miso.columns "
                "--config ... --stream %s` prints the list).",
                self.stream_name,
                ", ".join(sorted(missing)),
                self.config_path,
                self.stream_name,
            )

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one event row.

        Args:
            record: The row as the tap sent it.

        Returns:
            The interactions it gives now (held ones come later, from flush).

        Raises:
            MappingError: If a column the event needs cannot be read (names the column).

        """
        if self.payload_column is not None:
            record = self._unpack(record)
        event = SnowplowEvent(record)
        event_id = event.text("event_id")
        if event_id is None:
            raise MappingError("event_id", "missing; every Snowplow event has one")
        name = event.text("event_name") or event.text("event") or ""
        if self.seen.check_and_add(event_id):
            self.skipped["snowplow: duplicate event_id"] += 1
            if name == "page_view":
                self._prefer_earlier_copy(event, event_id)
            return []
        self._held_now = False
        try:
            given = self._dispatch(event, name)
        except MappingError:
            # Set aside, not delivered: a corrected copy of the row must not count as a duplicate.
            self.seen.forget(event_id)
            raise
        if not given and not self._held_now:
            # Skipped by design: not stored, so a run after a rule is added sends it.
            self.seen.skip(event_id)
        return given

    def _dispatch(self, event: SnowplowEvent, name: str) -> list[dict[str, t.Any]]:
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
        for key, page in self._pages.items():
            held.extend(self._close_page(key, page))
        self._pages.clear()
        self._held_views.clear()
        for order_id, order in self._orders.items():
            interaction = self._checkout(order_id, order)
            if interaction is None:
                for event_id in order.event_ids:
                    self.seen.skip(event_id)
                continue
            source = order.source or {}
            held.append((interaction, source))
            if "event_id" in source:  # every row of the order shares the checkout's fate
                self.seen.group(str(source["event_id"]), tuple(order.event_ids))
        self._orders.clear()
        return held

    def kept_source(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """Return the row's identifying columns, which a batch keeps instead of the whole row.

        Args:
            record: The row.

        Returns:
            event_id, event_name, collector_tstamp, page_url and tr_orderid (when set).

        """
        return _identity(self._row(record))

    def _unpack(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """Return the row held as JSON text in ``payload_column``, kept for ``kept_source``.

        Raises:
            MappingError: If the column is missing or not a JSON object (names the column).

        """
        row = _payload(record, t.cast("str", self.payload_column))
        self._unpacked = (record, row)
        return row

    def _row(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        # The event's row: unpacked from payload_column when the record holds it. Called
        # from delivery threads too (refused): it only reads what map() kept.
        if self.payload_column is None or self.payload_column not in record:
            return record
        unpacked = self._unpacked
        if unpacked is not None and unpacked[0] is record:
            return unpacked[1]
        try:
            return _payload(record, self.payload_column)
        except MappingError:
            return record

    def seal(self) -> int:
        """Take a checkpoint: the event ids seen so far belong to it."""
        return self.seen.seal()

    def commit(self, token: object = None) -> None:
        """Remember the event ids of a checkpoint whose interactions are delivered or set aside.

        Args:
            token: What ``seal`` returned for that checkpoint; None: everything so far.

        """
        self.seen.commit(t.cast("int | None", token))  # what seal() returned, or None

    def bind_environment(self, environment: str) -> None:
        """Look up and store event ids of this Miso environment only.

        Args:
            environment: From ``catalog.hashes.environment_key``.

        """
        self.seen.set_environment(environment)

    def refused(self, source: object) -> None:
        """Do not store the id of an event whose interaction was set aside (any thread).

        Args:
            source: The source row, or its identifying columns.

        """
        if isinstance(source, dict):
            event_id = SnowplowEvent(self._row(source)).text("event_id")
            if event_id is not None:
                self.seen.refuse(event_id)

    def close(self) -> None:
        """Close the event id store."""
        self.seen.close()

    # --- Page views and pings ----------------------------------------------------------

    def _page_view(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        key = _page_key(event)
        page = self._pages.get(key) if key is not None else None
        if self._is_resent(key, page):
            self._resent_page_view(event, key, page)
            return []
        url = event.text("page_url")
        found = self.page_rules.match(url) if url and len(self.page_rules) else None
        if found is None:
            self.skipped["page_view: no page rule matched"] += 1
            # Its pings may still time the e-commerce plugin's product view of the page.
            if self.ping_duration and key is not None:
                if page is None:
                    page = self._pages[key] = _HeldPage()
                page.anchor(event, page_view=True)
            return []
        interaction = _rule_view(event, found)
        if found.type == PRODUCT_VIEW and self.product_view_source == "ecommerce":
            wait = True  # the plugin's product view of this page may replace it
        else:
            wait = self.ping_duration and "duration" in TYPE_FIELDS[found.type]
        if not wait or key is None or (page is not None and page.view is not None):
            # (A held view under the same key here: the same session and URL without a
            # web_page id, which may well be a second page view.)
            if page is not None:
                page.anchor(event, page_view=True)
                page.sent_at_once = True
            elif key is not None:
                self._remember_closed(key, PAGE_SENT)
            return [interaction]
        if page is None:
            page = self._pages[key] = _HeldPage()
        page.anchor(event, page_view=True)
        page.view, page.source = interaction, _identity(event.record)
        page.derived = _derived_seconds(event)
        event_id = event.text("event_id")
        if event_id is not None:
            self._held_views[event_id] = key
        self._held_now = True
        return []

    def _is_resent(self, key: object, page: _HeldPage | None) -> bool:
        """Whether a page view's ``web_page`` id belongs to a page view already read.

        Only the web_page id says so: without one, the same session and URL may well be a
        second view of the page. Page views are remembered while held and in the bounded
        closed-page memory (not across runs, not once forgotten).
        """
        if not isinstance(key, str):
            return False
        if page is not None:
            return page.view_seen
        return self._closed_pages.get(key) in (PAGE_SENT, PAGE_NOT_MAPPED)

    def _resent_page_view(self, event: SnowplowEvent, key: object, page: _HeldPage | None) -> None:
        # One page view: the first copy read counts; this one's pings attach to it anyway
        # (same key). Its id shares the fate of what the first copy gives.
        self.skipped[DUPLICATE_PAGE_VIEW] += 1
        event_id = event.text("event_id")
        if page is not None and page.view is not None:
            if event_id is not None:
                page.duplicate_ids = (*page.duplicate_ids, event_id)
            self._held_now = True
        elif page.sent_at_once if page is not None else self._closed_pages.get(key) == PAGE_SENT:
            self._held_now = True  # the first copy was sent: this id is stored as delivered

    def _prefer_earlier_copy(self, event: SnowplowEvent, event_id: str) -> None:
        """Let a duplicate page view replace the held copy when its derived_tstamp is earlier.

        Snowplow's own data models keep, of the rows sharing an ``event_id``, the one with
        the earliest ``derived_tstamp``; doing the same here makes the copy sent independent
        of the order the rows were read in (an incremental run and a full refresh agree).
        It applies only while the first copy is held (until the checkpoint's flush), when
        both copies belong to the same page view (same page key) and the new copy maps to a
        held page view too; ties, unreadable timestamps and everything else keep the first
        copy. A copy read after the first was flushed is dropped (docs/snowplow.md).
        """
        key = self._held_views.get(event_id)
        page = self._pages.get(key) if key is not None else None
        if page is None or page.view is None or page.derived is None:
            return
        if page.source.get("event_id") != event_id:
            return
        derived = _derived_seconds(event)
        if derived is None or derived >= page.derived or _page_key(event) != key:
            return
        url = event.text("page_url")
        found = self.page_rules.match(url) if url and len(self.page_rules) else None
        if found is None or found.type != page.view["type"]:
            return
        try:
            interaction = _rule_view(event, found)
        except MappingError:
            return  # an unreadable copy never replaces a good one
        page.view, page.source, page.derived = interaction, _identity(event.record), derived

    def _page_ping(self, event: SnowplowEvent) -> None:
        if not self.ping_duration:
            self.skipped["page_ping: ping_duration is off"] += 1
            return
        key = _page_key(event)
        page = self._pages.get(key) if key is not None else None
        if page is None:
            self.skipped[f"page_ping: {self._why_no_page(key)}"] += 1
            return
        moment = event.get("dvce_created_tstamp") or event.get("collector_tstamp")
        column = "dvce_created_tstamp" if event.get("dvce_created_tstamp") else "collector_tstamp"
        try:
            seconds = _epoch_seconds(moment)
        except (TypeError, ValueError):
            raise MappingError(column, "is not a date-time") from None
        # A ping counts only while its page view is alive (docs/snowplow.md, page pings).
        session = event.text("domain_sessionid")
        if session is not None and page.session is not None and session != page.session:
            self.skipped[OTHER_SESSION] += 1
            page.dropped_pings += 1
            return
        last = page.last_active
        if last is None and page.started is not None:
            last = _seconds_or_none(page.started)
        if last is not None and seconds - last > self.session_timeout:
            self.skipped[TIMED_OUT] += 1
            page.dropped_pings += 1
            return
        page.last_active = seconds if last is None else max(last, seconds)
        if page.session is None:
            page.session = session
        page.ping_buckets.add(int(seconds // self.heartbeat))
        page.pings += 1

    def _close_page(self, key: object, page: _HeldPage) -> list[Held]:
        """Return what a held page gives at the flush (docs/snowplow.md, product_view_source)."""
        duration = self._engaged_time(page)
        view = page.view
        given: list[Held]
        if page.plugin_views and (view is None or view["type"] == PRODUCT_VIEW):
            if view is not None:
                self.skipped["page_view: product view sent by the e-commerce plugin"] += 1
            if duration is not None:
                page.plugin_views[0][0]["duration"] = duration
            given = page.plugin_views
        elif view is None:
            given = []
        else:
            if duration is not None and "duration" in TYPE_FIELDS[view["type"]]:
                view["duration"] = duration
            given = [(view, page.source), *page.plugin_views]
        self._settle(key, page, given)
        return given

    def _engaged_time(self, page: _HeldPage) -> float | None:
        # dbt-snowplow-web's engaged time over the pings that came while the page view was alive.
        if not self.ping_duration:
            return None
        if page.ping_buckets:
            return self.heartbeat * (len(page.ping_buckets) - 1) + self.min_visit
        if page.dropped_pings:
            # The tracker was pinging, but no ping came while the page view was alive: the
            # reference's engaged time is 0 (a page view with no pings at all has none).
            return 0
        return None

    def _settle(self, key: object, page: _HeldPage, given: list[Held]) -> None:
        """Tie the page's events to what it gave, count its pings, remember it as closed."""
        view = page.view
        if given:
            # The page view replaced by the plugin's product view, and re-sent copies of
            # the page view, share the fate of the interaction sent for them.
            replaced_view = view is not None and given is page.plugin_views
            replaced = page.event_ids()[:1] if replaced_view else ()
            if "event_id" in given[0][1] and (replaced or page.duplicate_ids):
                source_id = str(given[0][1]["event_id"])
                self.seen.group(source_id, (source_id, *replaced, *page.duplicate_ids))
            if page.pings:
                self.skipped["page_ping: added to its page view's duration"] += page.pings
        elif page.pings:
            self.skipped[f"page_ping: {PAGE_NOT_MAPPED}"] += page.pings
        if view is not None or page.sent_at_once:
            self._remember_closed(key, PAGE_SENT)
        else:
            self._remember_closed(key, PRODUCT_VIEW_SENT if given else PAGE_NOT_MAPPED)

    def _why_no_page(self, key: object) -> str:
        # Why a ping has no held page view to add to (the run summary's reason).
        if key is None:
            return "no web_page id or page_url"
        reason = self._closed_pages.get(key)
        if reason is not None:
            return reason
        return FORGOTTEN_PAGE if key in self._forgotten_pages else "page view not seen"

    def _remember_closed(self, key: object, reason: str) -> None:
        self._closed_pages[key] = reason
        self._closed_pages.move_to_end(key)
        if len(self._closed_pages) > _CLOSED_PAGES_KEPT:
            forgotten, _ = self._closed_pages.popitem(last=False)
            self._forgotten_pages.add(forgotten)

    # --- Legacy transactions -----------------------------------------------------------

    def _legacy_order(self, event: SnowplowEvent, name: str) -> None:
        if name == "transaction":
            order_id = event.text("tr_orderid")
            if order_id is None:
                raise MappingError("tr_orderid", "missing on a transaction event")
            order = self._orders.setdefault(order_id, _HeldOrder())
            order.common = common_fields(event)
            order.source = _identity(event.record)
            order.revenue = _number(event, "tr_total")
            order.event_ids.append(str(event.text("event_id")))
            self._held_now = True
            self.skipped["transaction: grouped into its order's checkout"] += 1
            return
        order_id, sku = event.text("ti_orderid"), event.text("ti_sku")
        if order_id is None or sku is None:
            column = "ti_orderid" if order_id is None else "ti_sku"
            raise MappingError(column, "missing on a transaction_item event")
        order = self._orders.setdefault(order_id, _HeldOrder())
        order.items.append((sku, _number(event, "ti_quantity") or 1))
        order.event_ids.append(str(event.text("event_id")))
        self._held_now = True
        if order.common is None:
            order.common = common_fields(event)
            order.source = _identity(event.record)
        self.skipped["transaction_item: grouped into its order's checkout"] += 1

    def _checkout(self, order_id: str, order: _HeldOrder) -> dict[str, t.Any] | None:
        if not order.items:
            self.skipped["transaction: no transaction_item before the flush"] += 1
            return None
        # Item rows share the transaction's time, so warehouses return them in any order:
        # sorted by SKU, every layout and every run give the same checkout.
        items = sorted(order.items, key=lambda item: item[0])
        interaction = {
            "type": "checkout",
            **(order.common or {}),
            "product_ids": [sku for sku, _ in items],
            "quantities": [quantity for _, quantity in items],
        }
        if order.revenue is not None:
            interaction["revenue"] = order.revenue
        context = interaction["context"] = dict(interaction.get("context") or {})
        context["custom_context"] = {"order_id": order_id}
        return interaction

    # --- Struct and self-describing events ------------------------------------------------

    def _struct(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        category, action = event.text("se_category"), event.text("se_action")
        for rule in self.struct_rules:
            if not rule.matches(category, action):
                continue
            interaction = {"type": rule.type, **common_fields(event)}
            values = struct_values(event.text, event.get)
            for template in rule.templates:
                try:
                    value = template.render(values)
                except ValueError as error:
                    raise MappingError(rule.columns_of(template), str(error)) from None
                if value is not None:
                    place(interaction, template.field, value)
            return [interaction]
        self.skipped[f"struct: {category}/{action} (no struct rule)"] += 1
        return []

    def _self_describing(self, event: SnowplowEvent, name: str) -> list[dict[str, t.Any]]:
        key, data = event.unstruct()
        if key == ECOMMERCE_ACTION:
            return self._ecommerce(event, data.get("type"))
        if key == SITE_SEARCH:
            return self._search(event, data)
        if key in (ADD_TO_CART, REMOVE_FROM_CART):
            return self._old_cart_event(event, key, data)
        if key == MEDIA_END or (key == MEDIA_PLAYER_EVENT and data.get("type") == "ended"):
            return self._media(event)
        self.skipped[f"{name or key or 'unknown event'}: not mapped"] += 1
        return []

    def _ecommerce(self, event: SnowplowEvent, action: object) -> list[dict[str, t.Any]]:
        if action == "product_view" and self.product_view_source == "page_rules":
            self.skipped["ecommerce product_view: product_view_source is page_rules"] += 1
            return []
        found = ecommerce_fields(event, action)
        if isinstance(found, str):
            self.skipped[found] += 1
            return []
        interaction_type, fields = found
        interaction = {"type": interaction_type, **common_fields(event), **fields}
        if action != "product_view" or self.product_view_source == "both":
            return [interaction]
        # product_view_source ecommerce: held with its page view, which it replaces.
        key = _page_key(event)
        if key is None:
            return [interaction]
        page = self._pages.get(key)
        if page is None:
            page = self._pages[key] = _HeldPage()
            page.anchor(event, page_view=False)  # until its page view, if any, is read
        page.plugin_views.append((interaction, _identity(event.record)))
        self._held_now = True
        return []

    def _old_cart_event(
        self, event: SnowplowEvent, key: str, data: dict[str, t.Any]
    ) -> list[dict[str, t.Any]]:
        sku = data.get("sku")
        if sku in (None, ""):
            raise MappingError("unstruct_event", "sku is missing")
        interaction_type = "add_to_cart" if key == ADD_TO_CART else "remove_from_cart"
        interaction = {"type": interaction_type, **common_fields(event), "product_ids": [str(sku)]}
        if interaction_type == "add_to_cart":
            interaction["quantities"] = [_to_number("quantity", data.get("quantity") or 1)]
        return [interaction]

    def _search(self, event: SnowplowEvent, data: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        terms = data.get("terms") or []
        if isinstance(terms, list):
            keywords = " ".join(str(term) for term in terms if term not in (None, ""))
        else:
            keywords = str(terms)
        search: dict[str, t.Any] = {}
        if keywords:
            search["keywords"] = keywords
        if isinstance(data.get("filters"), dict):
            filters = {}
            for filter_name, value in data["filters"].items():
                items = value if isinstance(value, list) else [value]
                values = [_filter_text(item) for item in items if item is not None]
                if values:
                    filters[filter_name] = values
            if filters:
                search["filters"] = filters
        if not search:
            self.skipped["site_search: no terms or filters"] += 1
            return []
        return [{"type": "search", **common_fields(event), "search": search}]

    def _media(self, event: SnowplowEvent) -> list[dict[str, t.Any]]:
        player = event.entity(MEDIA_PLAYER)
        media_id = player.get(self.media_id_field)
        if media_id in (None, ""):
            self.skipped[f"media end: no media_player.{self.media_id_field}"] += 1
            return []
        interaction_type = "listen" if player.get("media_type") == "audio" else "watch"
        interaction = {
            "type": interaction_type,
            **common_fields(event),
            "product_ids": [str(media_id)],
        }
        played = event.entity(MEDIA_SESSION).get("time_played")
        if played is None:
            played = player.get("current_time")
        if played is not None:
            interaction["duration"] = _to_number("media time played", played)
        return [interaction]


# --- Helpers ---------------------------------------------------------------------------

#: What a held or batched interaction keeps of its source row (for the rejects file, should
#: Miso refuse it): holding whole 131-column rows until the next checkpoint would cost
#: hundreds of MB, and the batches waiting for a slow API about 30 MB.
_IDENTITY_COLUMNS = ("event_id", "event_name", "collector_tstamp", "page_url", "tr_orderid")


def _identity(record: dict[str, t.Any]) -> dict[str, t.Any]:
    return {
        column: record[column] for column in _IDENTITY_COLUMNS if record.get(column) is not None
    }


def _page_key(event: SnowplowEvent) -> object:
    """Return the page view an event belongs to: the web_page entity's id, else session and URL."""
    page_id = event.entity(WEB_PAGE).get("id")
    if page_id:
        return str(page_id)
    url = event.text("page_url")
    if url is None:
        return None
    return (event.text("domain_sessionid"), url)


def _payload(record: dict[str, t.Any], column: str) -> dict[str, t.Any]:
    """Parse the row a record holds as JSON text in ``column`` (``payload_column``).

    Raises:
        MappingError: If the column is missing or not a JSON object (names the column).

    """
    value = record.get(column)
    if isinstance(value, (str, bytes)):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise MappingError(column, "is not valid JSON") from None
    if not isinstance(value, dict):
        what = "missing" if value is None else "not a JSON object"
        raise MappingError(column, f"{what}: it must hold the event's row (payload_column)")
    return value


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


def _rule_view(event: SnowplowEvent, found: PageMatch) -> dict[str, t.Any]:
    # The interaction a page rule's match gives for a page view.
    interaction = {"type": found.type, **common_fields(event)}
    for field, value in found.fields.items():
        # Matches are cached and shared: lists are copied, never handed out twice.
        place(interaction, field, list(value) if isinstance(value, list) else value)
    return interaction


def _seconds_or_none(value: object) -> float | None:
    # A page view's time in epoch seconds; None when it cannot be read (the page view was
    # mapped all the same: only the start of its activity is unknown, its first ping's counts).
    try:
        return _epoch_seconds(value)
    except (TypeError, ValueError):
        return None


def _derived_seconds(event: SnowplowEvent) -> float | None:
    # The row's derived_tstamp in epoch seconds, None when it is not set or not readable.
    value = event.get("derived_tstamp")
    if value in (None, ""):
        return None
    try:
        return _epoch_seconds(value)
    except (TypeError, ValueError):
        return None


def _positive(settings: dict[str, t.Any], name: str, config_path: str) -> float:
    value = settings[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise MappingConfigError(f"{config_path}.{name}", "expected a positive number")
    return value


def _lookback(settings: dict[str, t.Any], retention_days: float, config_path: str) -> float:
    # Re-reading a window on every run is safe only while the event-id store drops what
    # was already delivered: it must persist across runs and outlive the window.
    path = f"{config_path}.state_lookback_seconds"
    value = settings["state_lookback_seconds"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise MappingConfigError(path, "expected a number of seconds, 0 or more")
    if value >= retention_days * 86_400:
        reason = "must be shorter than dedupe_retention_days, or re-read events are sent again"
        raise MappingConfigError(path, reason)
    if value and settings["dedupe_store"] is None:
        reason = "needs a dedupe_store: without one, re-read events would be sent again"
        raise MappingConfigError(path, reason)
    return float(value)
