"""The resend guard: interactions delivered past the last STATE, not sent again by the next run.

A run that ends before its last STATE was saved leaves records that Miso accepted but that no
saved bookmark covers: the tap reads them again next time, and every preset without ids of its
own (all but Snowplow's) would send them twice. That happens on kill -9, on a failed run, and on
every graceful stop: the target can only write the tap's own STATEs, so what was read past the
tap's last one is re-read; and Meltano 4.4 does not save the STATE a target writes after Meltano
itself was sent SIGTERM (measured: ``docs/meltano.md``).

So every interaction Miso accepts is remembered (a 16-byte digest of exactly what was sent, in a
SQLite file kept between runs) until a STATE covering it is written: each is marked with the
number of STATE messages received before it was read, and the k-th STATE covers the marks below
k. A STATE written after a stop signal does not count: the orchestrator may drop it. A run that
read its input to the end forgets all it delivered. The next run skips an interaction whose
digest an earlier run left, once per digest left, and takes the entry over as its own, so a run
stopped again before its next STATE still knows it. Identical interactions within one run are
all sent.

Entries are keyed by Miso environment and stream; entries no run took over are forgotten after
``RETENTION_DAYS``.
"""

from __future__ import annotations

import collections
import hashlib
import sqlite3
import threading
import time
import typing as t
import uuid

from singer_sdk.exceptions import ConfigValidationError

from target_miso.sqlite_store import open_store

#: Entries left by a run and not taken over since are dropped after this many days.
RETENTION_DAYS = 30

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    environment TEXT NOT NULL,
    stream TEXT NOT NULL,
    digest BLOB NOT NULL,
    run TEXT NOT NULL,
    mark INTEGER NOT NULL,
    stored_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS delivered_by_digest ON delivered (environment, stream, digest);
CREATE INDEX IF NOT EXISTS delivered_by_run ON delivered (run, mark);
"""


def digest(encoded: bytes) -> bytes:
    """Return the digest of one interaction as sent (its compact JSON)."""
    return hashlib.blake2b(encoded, digest_size=16).digest()


class ResendGuard:
    """Digests of the interactions delivered and not yet covered by a saved STATE."""

    def __init__(self, path: str | None, environment: str) -> None:
        """Open the store and load what earlier runs left for this Miso environment.

        Args:
            path: The SQLite file (``resend_guard_store``); None keeps nothing between runs.
            environment: The Miso environment's key (``catalog.hashes.environment_key``).

        Raises:
            ConfigValidationError: The file cannot be opened or is not the guard's (before
                any record is read, naming the setting).

        """
        self._environment = environment
        self._run = uuid.uuid4().hex
        try:
            self.path, self._db = open_store(path)
            self._left = self._open()
        except (OSError, sqlite3.Error) as error:
            problem = f"resend_guard_store: cannot open {str(path)!r}: {error}"
            raise ConfigValidationError("Invalid target-miso settings", errors=[problem]) from None
        #: Interactions of this run that an earlier run had delivered, by stream.
        self.skipped: collections.Counter[str] = collections.Counter()
        #: Taken over from earlier runs: (stream, digest, mark).
        self._taken: list[tuple[str, bytes, int]] = []
        #: Accepted by Miso (from delivery threads): (stream, digest, mark).
        self._stored: list[tuple[str, bytes, int]] = []
        self._lock = threading.Lock()
        #: After a stop signal no STATE counts as saved: nothing is forgotten any more.
        self.frozen = False

    def _open(self) -> collections.Counter[tuple[str, bytes]]:
        # Forget what expired; return (stream, digest) -> how many entries earlier runs left.
        self._db.executescript(_SCHEMA)
        cutoff = time.time() - RETENTION_DAYS * 86400
        with self._db:
            self._db.execute("DELETE FROM delivered WHERE stored_at < ?", (cutoff,))
        return collections.Counter(
            {
                (stream, bytes(value)): count
                for stream, value, count in self._db.execute(
                    "SELECT stream, digest, COUNT(*) FROM delivered WHERE environment = ? "
                    "GROUP BY stream, digest",
                    (self._environment,),
                )
            },
        )

    def delivered_before(self, stream: str, encoded: bytes, mark: int) -> bool:
        """Tell whether an earlier run left this interaction; if so, this run takes it over.

        Args:
            stream: The stream it was read from.
            encoded: The interaction as it would be sent.
            mark: The STATE messages received before it was read.

        Returns:
            True when it must not be sent again.

        """
        if not self._left:
            return False
        key = (stream, digest(encoded))
        if self._left[key] <= 0:
            return False
        self._left[key] -= 1
        self._taken.append((*key, mark))
        self.skipped[stream] += 1
        return True

    def stored_callback(
        self, stream: str, records: list[bytes], marks: list[int]
    ) -> t.Callable[[list[int], str | None], None]:
        """Return the batch hook that remembers the records Miso stored (a delivery thread).

        Args:
            stream: The batch's stream.
            records: The batch's encoded interactions.
            marks: The mark of each (filled as the batch is).

        Returns:
            A ``Batch.on_stored`` callback.

        """

        def stored(positions: list[int], task_id: str | None) -> None:
            entries = [(stream, digest(records[i]), marks[i]) for i in positions]
            with self._lock:
                self._stored.extend(entries)

        return stored

    def save(self) -> None:
        """Write what was stored and taken over since the last save (main thread)."""
        with self._lock:
            stored, self._stored = self._stored, []
        taken, self._taken = self._taken, []
        if not stored and not taken:
            return
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT INTO delivered VALUES (?, ?, ?, ?, ?, ?)",
                [(self._environment, s, d, self._run, c, now) for s, d, c in stored],
            )
            for stream, value, mark in taken:
                self._db.execute(
                    "UPDATE delivered SET run = ?, mark = ?, stored_at = ? WHERE rowid = "
                    "(SELECT rowid FROM delivered WHERE environment = ? AND stream = ? AND "
                    "digest = ? AND run != ? LIMIT 1)",
                    (self._run, mark, now, self._environment, stream, value, self._run),
                )

    def covered(self, state_number: int | None = None) -> None:
        """Forget what a STATE just written covers: what was read before it.

        Args:
            state_number: Which STATE received it was (1 for the first); None: everything this
                run delivered (its input ended).

        """
        self.save()
        if self.frozen:
            return
        with self._db:
            if state_number is None:
                self._db.execute("DELETE FROM delivered WHERE run = ?", (self._run,))
            else:
                self._db.execute(
                    "DELETE FROM delivered WHERE run = ? AND mark < ?",
                    (self._run, state_number),
                )

    def close(self) -> None:
        """Save what is left and close the file."""
        self.save()
        self._db.close()
