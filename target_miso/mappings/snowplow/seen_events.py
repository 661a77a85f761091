"""Which event ids were already delivered, within a run and across runs.

Snowplow produces duplicate ``event_id``s, and SQL taps re-send the boundary row of every
incremental run (their bookmark is inclusive), so the Snowplow preset drops an event id it
has seen. Ids seen in this run wait in memory, grouped by checkpoint: ``seal()`` closes the
group of a checkpoint, and ``commit(token)`` (called once that checkpoint's interactions are
accepted by Miso or set aside) writes its ids to a SQLite file, so a crash before the STATE
never marks undelivered events as sent. Ids older than the retention are forgotten.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_DAY = 86_400


class SeenEvents:
    """A set of event ids kept in a SQLite file (or in memory when there is no path)."""

    def __init__(self, path: str | Path | None, retention_days: float = 30) -> None:
        """Open (and create) the store.

        Args:
            path: The SQLite file; None keeps ids in memory for this run only.
            retention_days: How long an id is remembered.

        """
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Two partitioned pipelines may share the file: wait for each other's writes.
        self._db = sqlite3.connect(str(self.path or ":memory:"), timeout=60)
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_events "
            "(event_id TEXT PRIMARY KEY, seen_day INTEGER NOT NULL) WITHOUT ROWID",
        )
        self.retention_days = retention_days
        #: Ids seen since the last checkpoint (``forget`` works on these).
        self._pending: set[str] = set()
        #: Ids of checkpoints taken whose interactions are still on the wire, by token.
        self._sealed: list[tuple[int, set[str]]] = []
        self._last_token = 0
        self._expired_removed = False
        # An empty store (a first run, or no path) needs no lookups at all.
        self._stored_any = (
            self._db.execute("SELECT 1 FROM seen_events LIMIT 1").fetchone() is not None
        )
        # One cursor for every lookup: a new one per event cost a fifth of the lookup.
        self._lookup = self._db.cursor()

    def check_and_add(self, event_id: str) -> bool:
        """Remember an event id.

        Args:
            event_id: The id.

        Returns:
            True when it was seen before (the event is a duplicate).

        """
        if event_id in self._pending:
            return True
        for _, ids in self._sealed:
            if event_id in ids:
                return True
        if (
            self._stored_any
            and self._lookup.execute(
                "SELECT 1 FROM seen_events WHERE event_id = ?", (event_id,)
            ).fetchone()
        ):
            return True
        self._pending.add(event_id)
        return False

    def forget(self, event_id: str) -> None:
        """Drop an id remembered in this run and not yet committed (its event was set aside).

        Args:
            event_id: The id.

        """
        self._pending.discard(event_id)

    def seal(self) -> int:
        """Take a checkpoint: group every id seen since the previous one.

        Returns:
            The token that ``commit`` takes once the checkpoint's interactions are settled.

        """
        self._last_token += 1
        self._sealed.append((self._last_token, self._pending))
        self._pending = set()
        return self._last_token

    def commit(self, token: int | None = None) -> None:
        """Make the ids of settled checkpoints durable.

        Args:
            token: Every checkpoint up to this one is settled; None: everything seen so far
                (the end of the run).

        """
        if token is None:
            ready = [ids for _, ids in self._sealed] + [self._pending]
            self._sealed, self._pending = [], set()
        else:
            ready = [ids for sealed, ids in self._sealed if sealed <= token]
            self._sealed = [(sealed, ids) for sealed, ids in self._sealed if sealed > token]
        if not any(ready):
            return
        today = int(time.time() // _DAY)
        with self._db:
            for ids in ready:
                self._db.executemany(
                    "INSERT OR REPLACE INTO seen_events VALUES (?, ?)",
                    ((event_id, today) for event_id in ids),
                )
            if not self._expired_removed:
                # Once per run: without an index on seen_day this reads the whole table,
                # which at every checkpoint grew with the store.
                self._db.execute(
                    "DELETE FROM seen_events WHERE seen_day < ?", (today - self.retention_days,)
                )
                self._expired_removed = True
        self._stored_any = True

    def close(self) -> None:
        """Close the file (ids not committed are forgotten, on purpose)."""
        self._db.close()
