"""The event id store: ids are durable only once their checkpoint was delivered."""

from __future__ import annotations

import sqlite3
import time

from target_miso.mappings.snowplow.seen_events import SeenEvents


def stored_ids(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT event_id FROM delivered_events")}


def test_a_checkpoint_commits_only_the_ids_seen_before_it(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path)
    assert not seen.check_and_add("a")
    first = seen.seal()
    assert not seen.check_and_add("b")  # read while the first checkpoint is on the wire
    second = seen.seal()
    assert not seen.check_and_add("c")

    seen.commit(first)
    assert stored_ids(path) == {"a"}, "b and c were not delivered yet"
    seen.commit(second)
    assert stored_ids(path) == {"a", "b"}
    seen.commit()
    assert stored_ids(path) == {"a", "b", "c"}
    seen.close()


def test_duplicates_are_found_in_every_generation_and_across_runs(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path)
    seen.check_and_add("a")
    token = seen.seal()
    seen.check_and_add("b")
    assert seen.check_and_add("a"), "sealed, not yet committed"
    assert seen.check_and_add("b"), "seen since the checkpoint"
    seen.commit(token)
    assert seen.check_and_add("a"), "committed"
    seen.close()  # b was never committed: a crash here must not mark it as sent

    again = SeenEvents(path)
    assert again.check_and_add("a")
    assert not again.check_and_add("b")
    again.close()


def test_a_forgotten_id_is_not_committed(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path)
    seen.check_and_add("set-aside")
    seen.forget("set-aside")
    seen.commit(seen.seal())
    assert stored_ids(path) == set()
    seen.close()


def test_ids_past_the_retention_are_forgotten_at_the_first_commit_of_a_run(tmp_path):
    path = tmp_path / "ids.sqlite"
    SeenEvents(path).close()  # creates the table
    today = int(time.time() // 86_400)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO delivered_events VALUES ('', 'old', ?), ('', 'recent', ?)",
            (today - 31, today - 2),
        )
    seen = SeenEvents(path, retention_days=30)
    seen.check_and_add("new")
    seen.commit(seen.seal())
    assert stored_ids(path) == {"recent", "new"}
    assert not seen.check_and_add("old"), "forgotten: it would be sent again"
    seen.close()
