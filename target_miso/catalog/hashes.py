"""What each catalog record looked like when Miso last accepted it, kept between runs.

One content hash per (Miso environment, catalog, id) in a SQLite file. A record whose hash
did not change since Miso accepted it is not sent again. Hashes are written only by
``commit()``, which the target calls once every record handed out was accepted by Miso (and,
with ``wait_for_tasks``, its task finished), so a crash never marks an unsent record as sent.

Why a SQLite file and not the target's part of STATE: singer-sdk taps keep only
``bookmarks`` of the STATE they are given (``Tap.load_state``), so a top-level entry written
by the target never comes back to it; and a STATE holding every id of a large catalog would
be rewritten at every checkpoint. Losing the file is safe: every record is sent once more
(Miso replaces a record with the same id). See docs/catalog.md.

The same file remembers the rows each catalog stream set aside (``catalog_rejects``), so
that an unchanged invalid row is not written to the rejects file again on every run
(``rejected.py``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from target_miso.sqlite_store import open_store


def environment_key(api_url: str, api_key: str) -> str:
    """Name the Miso environment the hashes belong to, without keeping the key.

    A switch to another environment (another key or URL) then starts from no hashes, so
    every record is sent there instead of being taken as already present.

    Args:
        api_url: The API root.
        api_key: The secret key.

    Returns:
        16 hex characters.

    """
    material = f"{api_url.rstrip('/')}\n{api_key}".encode()
    return hashlib.blake2b(material, digest_size=8, person=b"target-miso").hexdigest()


class CatalogHashes:
    """Content hashes by (catalog, id) for one Miso environment."""

    def __init__(self, path: str | Path | None, environment: str) -> None:
        """Open (and create) the store.

        Args:
            path: The SQLite file; None keeps hashes for this run only.
            environment: From ``environment_key``.

        """
        self.path, self._db = open_store(path)  # shared by partitioned pipelines
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS catalog_hashes (environment TEXT NOT NULL, "
            "kind TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL, "
            "PRIMARY KEY (environment, kind, id)) WITHOUT ROWID",
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS catalog_rejects (environment TEXT NOT NULL, "
            "stream TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL, "
            "PRIMARY KEY (environment, stream, key)) WITHOUT ROWID",
        )
        self._environment = environment

    def check(self) -> None:
        """Read the table once, so that a damaged file fails at start-up, not mid-run.

        Raises:
            sqlite3.DatabaseError: If the file is not a readable SQLite database.

        """
        self._db.execute("SELECT 1 FROM catalog_hashes LIMIT 1").fetchone()

    def get(self, kind: str, record_id: str) -> str | None:
        """Return the hash Miso last accepted for a record.

        Args:
            kind: ``products`` or ``users``.
            record_id: The record's id.

        Returns:
            The hash, or None when the record was never accepted (or was forgotten).

        """
        row = self._db.execute(
            "SELECT hash FROM catalog_hashes WHERE environment = ? AND kind = ? AND id = ?",
            (self._environment, kind, record_id),
        ).fetchone()
        return row[0] if row else None

    def save(self, kind: str, hashes: dict[str, str], forget: set[str]) -> None:
        """Write accepted hashes and forget deleted ids, in one transaction.

        Args:
            kind: ``products`` or ``users``.
            hashes: Id -> hash of records Miso accepted.
            forget: Ids Miso no longer has (deleted, or missing from its id list).

        """
        if not hashes and not forget:
            return
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO catalog_hashes VALUES (?, ?, ?, ?)",
                ((self._environment, kind, key, value) for key, value in hashes.items()),
            )
            self._db.executemany(
                "DELETE FROM catalog_hashes WHERE environment = ? AND kind = ? AND id = ?",
                ((self._environment, kind, key) for key in forget),
            )

    def rejected(self, stream: str) -> dict[str, str]:
        """Return the rows of a stream set aside in earlier runs (see ``rejected.py``).

        Args:
            stream: The Singer stream.

        Returns:
            Row key (its id, or ``#<hash>`` for a row without one) -> hash of row and reasons.

        """
        rows = self._db.execute(
            "SELECT key, hash FROM catalog_rejects WHERE environment = ? AND stream = ?",
            (self._environment, stream),
        )
        return dict(rows.fetchall())

    def save_rejected(self, stream: str, remember: dict[str, str], forget: set[str]) -> None:
        """Remember rows set aside (once they are in the rejects file) and forget others.

        Args:
            stream: The Singer stream.
            remember: Row key -> hash of rows just written to the rejects file.
            forget: Keys of rows that are valid now, or no longer in the source.

        """
        if not remember and not forget:
            return
        with self._db:
            self._db.executemany(
                "DELETE FROM catalog_rejects WHERE environment = ? AND stream = ? AND key = ?",
                ((self._environment, stream, key) for key in forget),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO catalog_rejects VALUES (?, ?, ?, ?)",
                ((self._environment, stream, key, value) for key, value in remember.items()),
            )

    def count(self, kind: str) -> int:
        """How many records of a catalog have a hash (for tests and logs).

        Args:
            kind: ``products`` or ``users``.

        Returns:
            The number of ids.

        """
        row = self._db.execute(
            "SELECT COUNT(*) FROM catalog_hashes WHERE environment = ? AND kind = ?",
            (self._environment, kind),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        """Close the file."""
        self._db.close()
