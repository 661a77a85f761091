"""A lookback window: the STATE the target writes moves a stream's bookmark back.

SQL taps read ``WHERE <replication key> >= <bookmark>``. When the key is an event time
(Snowplow's ``collector_tstamp`` where the loader has no ``load_tstamp``), rows loaded after
the bookmark passed their time (an offline mobile device, a loader catching up) are never
read. With ``state_lookback_seconds`` on a stream's mapping, every STATE the target writes
carries that stream's ``replication_key_value`` moved back by the window, so each run
re-reads the last window of rows; the Snowplow preset's event-id store drops those it
already delivered. Rows later than the window are still lost.

The tap's own value is kept in the bookmark under ``target_miso_lookback``. A run that reads
nothing new gets back the moved value; the kept one is then the later of the two, so the
window is taken once from what was read, never again from an already moved bookmark (which
would walk the bookmark back by a window on every empty run). A moved bookmark is never
ahead of the tap's, which is never ahead of what was delivered.

Only ISO-8601 timestamp values are moved (text, with or without a zone; a value without one
keeps none). Integer keys, partitioned bookmarks (``partitions``) and the progress markers of
unsorted streams are left as the tap wrote them.
"""

from __future__ import annotations

import copy
import datetime as dt
import typing as t

#: The bookmark key that keeps the tap's own value.
KEPT = "target_miso_lookback"
#: ``YYYY-MM-DDTHH:MM``: a date and a time, at least.
_SHORTEST = 16


def move_back(state: dict[str, t.Any], lookbacks: t.Mapping[str, float]) -> dict[str, t.Any]:
    """Move each listed stream's timestamp bookmark back by its window.

    Args:
        state: The tap's STATE value (not changed).
        lookbacks: Seconds per stream name; streams not listed are left as they are.

    Returns:
        The STATE to write: ``state`` itself when nothing moves, else a moved copy.

    """
    bookmarks = state.get("bookmarks")
    if not lookbacks or not isinstance(bookmarks, dict):
        return state
    if not any(isinstance(bookmarks.get(stream), dict) for stream in lookbacks):
        return state
    moved = copy.deepcopy(state)
    for stream, seconds in lookbacks.items():
        bookmark = moved["bookmarks"].get(stream)
        if isinstance(bookmark, dict) and seconds > 0:
            _move_bookmark(bookmark, seconds)
    return moved


def _move_bookmark(bookmark: dict[str, t.Any], seconds: float) -> None:
    key = bookmark.get("replication_key")
    value = bookmark.get("replication_key_value")
    moment = parse_timestamp(value)
    if not isinstance(key, str) or moment is None:
        return  # not a timestamp bookmark: the tap's own
    kept = bookmark.get(KEPT)
    if isinstance(kept, dict) and kept.get("replication_key") == key:
        kept_moment = parse_timestamp(kept.get("replication_key_value"))
        if kept_moment is not None and _utc(kept_moment) > _utc(moment):
            moment, value = kept_moment, kept["replication_key_value"]
    bookmark[KEPT] = {"replication_key": key, "replication_key_value": value, "seconds": seconds}
    bookmark["replication_key_value"] = (moment - dt.timedelta(seconds=seconds)).isoformat()


def parse_timestamp(value: object) -> dt.datetime | None:
    """Read an ISO-8601 timestamp (``T`` or a space; ``Z``, an offset or no zone).

    Args:
        value: A bookmark value.

    Returns:
        The moment, or None for anything else (numbers, dates without a time, text).

    """
    if not isinstance(value, str) or len(value) < _SHORTEST or value[10] not in "T ":
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def _utc(moment: dt.datetime) -> dt.datetime:
    # No zone means UTC (as the Snowplow preset reads timestamps).
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc)
