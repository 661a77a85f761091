"""The event id store: ids are durable only once their checkpoint was delivered."""

from __future__ import annotations

import sqlite3
import time

from target_miso.mappings.seen_events import SeenEvents


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


def test_skipped_and_refused_ids_are_kept_for_the_run_only(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path)
    for event_id in ("delivered", "skipped", "refused", "order", "item"):
        assert not seen.check_and_add(event_id)
    seen.skip("skipped")
    seen.group("order", ("order", "item"))  # one checkout made of two rows
    token = seen.seal()
    seen.refuse("order")  # Miso refused the checkout while its checkpoint was on the wire
    seen.refuse("refused")
    seen.commit(token)

    assert stored_ids(path) == {"delivered"}
    for event_id in ("skipped", "refused", "order", "item"):
        assert seen.check_and_add(event_id), "still a duplicate within this run"
    seen.close()

    again = SeenEvents(path)
    assert [again.check_and_add(i) for i in ("delivered", "skipped", "refused", "item")] == [
        True,
        False,
        False,
        False,
    ]
    again.close()


def test_ids_are_kept_per_miso_environment(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path, environment="env-a")
    seen.check_and_add("a")
    seen.commit()
    seen.close()

    other = SeenEvents(path, environment="env-b")
    assert not other.check_and_add("a"), "never delivered to env-b"
    other.commit()
    other.close()
    with sqlite3.connect(path) as db:
        rows = set(db.execute("SELECT environment, event_id FROM delivered_events"))
    assert rows == {("env-a", "a"), ("env-b", "a")}


def test_a_replay_ignores_earlier_runs_but_dedupes_and_stores_this_one(tmp_path):
    path = tmp_path / "ids.sqlite"
    seen = SeenEvents(path)
    seen.check_and_add("a")
    seen.commit()
    seen.close()

    replay = SeenEvents(path, replay=True)
    assert not replay.check_and_add("a"), "sent again on purpose"
    assert not replay.check_and_add("b")
    replay.commit(replay.seal())
    assert replay.check_and_add("a"), "a duplicate within the replay is still dropped"
    assert replay.check_and_add("b")
    replay.close()
    assert stored_ids(path) == {"a", "b"}


def test_a_store_of_an_older_version_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "ids.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE seen_events (event_id TEXT PRIMARY KEY, seen_day INTEGER)")
        db.execute("INSERT INTO seen_events VALUES ('old', ?)", (int(time.time() // 86_400),))

    seen = SeenEvents(path)

    assert not seen.check_and_add("old"), "unknown environment, maybe never delivered"
    assert "dropped 1 event ids stored by an older version" in caplog.text
    seen.close()
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "seen_events" not in tables
