"""The lookback window: the STATE the target writes moves a timestamp bookmark back."""

from __future__ import annotations

import pytest

from target_miso.run.lookback import KEPT, move_back

STREAM = "atomic-events_for_miso"


def state(value: object, **extra: object) -> dict:
    bookmark = {"replication_key": "collector_tstamp", "replication_key_value": value, **extra}
    return {"bookmarks": {STREAM: bookmark}}


def value_of(written: dict) -> object:
    return written["bookmarks"][STREAM]["replication_key_value"]


@pytest.mark.parametrize(
    ("tap_value", "moved"),
    [
        ("2024-05-11T10:00:00", "2024-05-11T09:00:00"),
        ("2024-05-11 10:00:00.250", "2024-05-11T09:00:00.250000"),
        ("2024-05-11T00:30:00+00:00", "2024-05-10T23:30:00+00:00"),
        ("2024-05-11T10:00:00Z", "2024-05-11T09:00:00+00:00"),
        ("2024-05-11T10:00:00+02:00", "2024-05-11T09:00:00+02:00"),
    ],
)
def test_a_timestamp_bookmark_moves_back_by_the_window(tap_value, moved):
    written = move_back(state(tap_value), {STREAM: 3600})
    assert value_of(written) == moved
    assert written["bookmarks"][STREAM][KEPT]["replication_key_value"] == tap_value


def test_an_empty_run_does_not_walk_the_bookmark_back():
    first = move_back(state("2024-05-11T10:00:00"), {STREAM: 3600})
    # The tap read nothing new: it hands back the moved value, with the kept one.
    again = move_back(first, {STREAM: 3600})
    assert again == first
    assert value_of(move_back(again, {STREAM: 3600})) == "2024-05-11T09:00:00"


def test_a_run_that_read_further_moves_back_from_what_it_read():
    first = move_back(state("2024-05-11T10:00:00"), {STREAM: 3600})
    first["bookmarks"][STREAM]["replication_key_value"] = "2024-05-11T12:00:00"
    assert value_of(move_back(first, {STREAM: 3600})) == "2024-05-11T11:00:00"


def test_a_kept_value_of_another_replication_key_is_ignored():
    first = move_back(state("2024-05-11T10:00:00"), {STREAM: 3600})
    first["bookmarks"][STREAM].update(replication_key="load_tstamp")
    first["bookmarks"][STREAM]["replication_key_value"] = "2024-05-01T00:00:00"
    assert value_of(move_back(first, {STREAM: 3600})) == "2024-04-30T23:00:00"


@pytest.mark.parametrize("value", [1234, "1234", "2024-05-11", "not a time", None])
def test_other_bookmark_shapes_are_left_as_the_tap_wrote_them(value):
    original = state(value)
    assert move_back(original, {STREAM: 3600}) == state(value)


def test_partitions_other_streams_and_no_lookback_are_untouched():
    partitioned = {"bookmarks": {STREAM: {"partitions": [{"context": {}, "x": 1}]}}}
    assert move_back(partitioned, {STREAM: 60}) == partitioned
    other = state("2024-05-11T10:00:00")
    assert move_back(other, {"public-other": 60}) is other
    assert move_back(other, {}) is other
    assert value_of(other) == "2024-05-11T10:00:00"  # the tap's STATE is never changed
