"""The resend guard's bookkeeping, run by run (the target-process tests are in test_stopping.py)."""

from __future__ import annotations

import sqlite3
import time

from target_miso.run.resend_guard import RETENTION_DAYS, ResendGuard

ENV = "env-a"


def _deliver(guard: ResendGuard, stream: str, records: list[bytes], mark: int) -> None:
    # Read after ``mark`` STATEs, then accepted by Miso.
    guard.stored_callback(stream, records, [mark] * len(records))(list(range(len(records))), None)
    guard.save()


def _rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM delivered").fetchone()[0]


def test_a_stopped_run_leaves_what_no_state_covers_and_the_next_run_skips_it(tmp_path):
    store = str(tmp_path / "guard.sqlite")
    first = ResendGuard(store, ENV)
    _deliver(first, "s", [b'{"a":1}', b'{"a":2}'], mark=0)
    first.covered(1)  # the first STATE, read after those two
    _deliver(first, "s", [b'{"a":3}', b'{"a":3}', b'{"a":4}'], mark=1)
    first.close()  # stopped: no STATE covers what was read after the first

    second = ResendGuard(store, ENV)
    sent = [
        r
        for r in [b'{"a":2}', b'{"a":3}', b'{"a":3}', b'{"a":3}', b'{"a":4}', b'{"a":5}']
        if not second.delivered_before("s", r, mark=0)
    ]

    assert sent == [b'{"a":2}', b'{"a":3}', b'{"a":5}'], "each entry left skips one copy"
    assert second.skipped == {"s": 3}


def test_a_run_stopped_again_keeps_what_it_took_over(tmp_path):
    store = str(tmp_path / "guard.sqlite")
    first = ResendGuard(store, ENV)
    _deliver(first, "s", [b"x", b"y"], mark=0)
    first.close()
    second = ResendGuard(store, ENV)
    assert second.delivered_before("s", b"x", mark=0)
    second.close()  # stopped before any STATE: x is still unconfirmed

    third = ResendGuard(store, ENV)
    assert third.delivered_before("s", b"x", mark=0)
    assert third.delivered_before("s", b"y", mark=0)


def test_a_state_covers_what_was_read_before_it_and_none_after_a_stop_signal(tmp_path):
    store = str(tmp_path / "guard.sqlite")
    guard = ResendGuard(store, ENV)
    _deliver(guard, "s", [b"a"], mark=0)
    _deliver(guard, "s", [b"b"], mark=1)
    guard.covered(1)
    assert _rows(store) == 1
    guard.frozen = True  # a stop signal: the orchestrator may drop what follows
    guard.covered(None)
    assert _rows(store) == 1
    guard.frozen = False
    guard.covered(None)
    assert _rows(store) == 0


def test_entries_belong_to_their_environment_and_stream_and_expire(tmp_path):
    store = str(tmp_path / "guard.sqlite")
    guard = ResendGuard(store, ENV)
    _deliver(guard, "s", [b"a", b"b"], mark=0)
    guard.close()
    with sqlite3.connect(store) as db:
        old = time.time() - (RETENTION_DAYS + 1) * 86400
        db.execute("UPDATE delivered SET stored_at = ? WHERE rowid = 2", (old,))

    other_env = ResendGuard(store, "env-b")
    same_env = ResendGuard(store, ENV)

    assert not other_env.delivered_before("s", b"a", 0), "another Miso environment"
    assert not same_env.delivered_before("t", b"a", 0), "another stream"
    assert same_env.delivered_before("s", b"a", 0)
    assert not same_env.delivered_before("s", b"b", 0), "older than the retention"


def test_without_a_store_nothing_is_kept_between_runs():
    first = ResendGuard(None, ENV)
    _deliver(first, "s", [b"a"], mark=0)
    first.close()
    assert not ResendGuard(None, ENV).delivered_before("s", b"a", 0)
