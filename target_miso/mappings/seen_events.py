"""Which event ids were already delivered, within a run and across runs.

Snowplow produces duplicate ``event_id``s, and SQL taps re-send the boundary row of every
incremental run (their bookmark is inclusive), so the Snowplow preset drops an event id it
has delivered; the custom preset does the same with its ``dedup_key`` when given a
``dedup_store``. Only delivered events are remembered across runs: an event skipped by design
(no rule, no Miso type) or set aside (mapping, validation, Miso's 422) is remembered for this
run only, so that a later run, after a fix, sends it.

Ids seen in this run wait in memory, grouped by checkpoint: ``seal()`` closes the group of a
checkpoint, and ``commit(token)`` (called once that checkpoint's requests were answered)
writes the ids of its delivered events to a SQLite file, so a crash before the STATE never
marks undelivered events as sent. Rows are keyed by the Miso environment (a hash of the API
URL and key, never the key), so a run into another environment sends everything. Ids older
than the retention are forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from target_miso.sqlite_store import open_store

_DAY = 86_400
_LOGGER = logging.getLogger("target-miso")


class SeenEvents:
    """A set of event ids kept in a SQLite file (or in memory when there is no path)."""

    def __init__(
        self,
        path: str | Path | None,
        retention_days: float = 30,
        *,
        environment: str = "",
        replay: bool = False,
    ) -> None:
        """Open (and create) the store.

        Args:
            path: The SQLite file; None keeps ids in memory for this run only.
            retention_days: How long an id is remembered.
            environment: The Miso environment (``catalog.hashes.environment_key``); the
                target sets it with ``set_environment`` before the first record.
            replay: Ignore the ids stored by earlier runs (still dedupe within the run, still
                store what this run delivers).

        """
        self.path, self._db = open_store(path)  # shared by partitioned pipelines
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS delivered_events (environment TEXT NOT NULL, "
            "event_id TEXT NOT NULL, seen_day INTEGER NOT NULL, "
            "PRIMARY KEY (environment, event_id)) WITHOUT ROWID",
        )
        self._drop_unkeyed_ids()
        # Ids of this run that are not (or, with replay, not only) in the store: events skipped
        # or delivered by a replay. A temporary table, so that memory stays bounded (pings are
        # often half the rows); it goes with the connection.
        self._db.execute("CREATE TEMP TABLE run_ids (event_id TEXT PRIMARY KEY) WITHOUT ROWID")
        self.retention_days = retention_days
        self.replay = replay
        self.environment = environment
        #: Ids seen since the last checkpoint (``forget`` and ``skip`` work on these).
        self._pending: set[str] = set()
        #: Held interactions made of several events: the source's id -> every event's id.
        self._pending_groups: dict[str, tuple[str, ...]] = {}
        #: Checkpoints taken whose interactions are still on the wire: token, ids, groups.
        self._sealed: list[tuple[int, set[str], dict[str, tuple[str, ...]]]] = []
        #: Ids of this run that gave nothing to deliver, until they go to ``run_ids`` at
        #: the next checkpoint (kept for this run only).
        self._skipped: set[str] = set()
        #: Ids of this run whose interaction was set aside (delivery threads add to it).
        self._refused: set[str] = set()
        self._run_ids_any = False
        self._lock = threading.Lock()
        self._last_token = 0
        self._expired_removed = False
        self._stored_any = False
        self._lookup = self._db.cursor()
        self.set_environment(environment)

    def _drop_unkeyed_ids(self) -> None:
        # Stores written before ids were keyed by environment (table ``seen_events``) also
        # hold ids of events skipped or set aside, and name no environment: they are dropped.
        find = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'seen_events'"
        if self._db.execute(find).fetchone() is None:
            return
        with self._db:
            # Partitioned pipelines may open the file at once: one of them drops the table.
            self._db.execute("BEGIN IMMEDIATE")
            if self._db.execute(find).fetchone() is None:
                return
            count = self._db.execute("SELECT COUNT(*) FROM seen_events").fetchone()[0]
            self._db.execute("DROP TABLE seen_events")
        _LOGGER.warning(
            "dedupe_store: dropped %d event ids stored by an older version (they named no "
            "Miso environment and included events never delivered); boundary rows of the "
            "next incremental run may be sent once more",
            count,
        )

    def set_environment(self, environment: str) -> None:
        """Name the Miso environment whose delivered ids are looked up and stored.

        Args:
            environment: From ``catalog.hashes.environment_key``.

        """
        self.environment = environment
        # An empty store (a first run, another environment, a replay) needs no lookups.
        self._stored_any = not self.replay and (
            self._db.execute(
                "SELECT 1 FROM delivered_events WHERE environment = ? LIMIT 1", (environment,)
            ).fetchone()
            is not None
        )

    def check_and_add(self, event_id: str) -> bool:
        """Remember an event id for this run.

        Args:
            event_id: The id.

        Returns:
            True when it was seen before (the event is a duplicate).

        """
        if event_id in self._pending or event_id in self._skipped:
            return True
        for _, ids, _ in self._sealed:
            if event_id in ids:
                return True
        if event_id in self._refused:
            return True
        if self._stored_any:
            if self._lookup.execute(
                "SELECT 1 FROM delivered_events WHERE environment = ? AND event_id = ?",
                (self.environment, event_id),
            ).fetchone():
                return True
        if self._run_ids_any:
            if self._lookup.execute(
                "SELECT 1 FROM temp.run_ids WHERE event_id = ?", (event_id,)
            ).fetchone():
                return True
        self._pending.add(event_id)
        return False

    def forget(self, event_id: str) -> None:
        """Drop an id seen in this run and not yet committed (its event was set aside).

        A corrected copy of the row later in the run is then not taken as a duplicate.

        Args:
            event_id: The id.

        """
        self._pending.discard(event_id)

    def skip(self, event_id: str) -> None:
        """Remember an id for this run only: its event gave nothing to deliver.

        Args:
            event_id: The id.

        """
        self._pending.discard(event_id)
        self._skipped.add(event_id)

    def group(self, source_id: str, event_ids: tuple[str, ...]) -> None:
        """Tie events to the interaction held for them: they share its fate.

        Args:
            source_id: The id of the source record the interaction carries.
            event_ids: Every event the interaction was made from (``source_id`` included).

        """
        with self._lock:
            self._pending_groups[source_id] = event_ids

    def refuse(self, event_id: str) -> None:
        """Do not store an event whose interaction was set aside (called from any thread).

        Args:
            event_id: The id of the source record the interaction carries.

        """
        with self._lock:
            group = self._pending_groups.get(event_id)
            for _, _, groups in self._sealed:
                group = group or groups.get(event_id)
            self._refused.update(group or (event_id,))

    def seal(self) -> int:
        """Take a checkpoint: group every id seen since the previous one.

        Returns:
            The token that ``commit`` takes once the checkpoint's requests were answered.

        """
        self._last_token += 1
        with self._lock:
            self._sealed.append((self._last_token, self._pending, self._pending_groups))
            self._pending, self._pending_groups = set(), {}
        self._keep_for_the_run(self._skipped)
        self._skipped = set()
        return self._last_token

    def _keep_for_the_run(self, ids: set[str]) -> None:
        if not ids:
            return
        with self._db:  # committed at once: an open transaction would pin a WAL snapshot
            self._db.executemany(
                "INSERT OR IGNORE INTO temp.run_ids VALUES (?)", ((i,) for i in ids)
            )
        self._run_ids_any = True

    def commit(self, token: int | None = None) -> None:
        """Store the ids of the delivered events of settled checkpoints.

        Args:
            token: Every checkpoint up to this one is settled; None: everything seen so far
                (the end of the run).

        """
        with self._lock:
            if token is None:
                ready = [ids for _, ids, _ in self._sealed] + [self._pending]
                self._sealed, self._pending, self._pending_groups = [], set(), {}
            else:
                ready = [ids for sealed, ids, _ in self._sealed if sealed <= token]
                self._sealed = [entry for entry in self._sealed if entry[0] > token]
            refused = set(self._refused)
        delivered = [ids - refused for ids in ready]
        if not any(delivered):
            return
        if self.replay:  # the store is not looked up: find them in this run's ids
            for ids in delivered:
                self._keep_for_the_run(ids)
        today = int(time.time() // _DAY)
        with self._db:
            for ids in delivered:
                self._db.executemany(
                    "INSERT OR REPLACE INTO delivered_events VALUES (?, ?, ?)",
                    ((self.environment, event_id, today) for event_id in ids),
                )
            if not self._expired_removed:
                # Once per run: without an index on seen_day this reads the whole table,
                # which at every checkpoint grew with the store.
                self._db.execute(
                    "DELETE FROM delivered_events WHERE seen_day < ?",
                    (today - self.retention_days,),
                )
                self._expired_removed = True
        self._stored_any = not self.replay

    def close(self) -> None:
        """Close the file (ids not committed are forgotten, on purpose)."""
        self._db.close()
