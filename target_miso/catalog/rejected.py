"""Catalog rows set aside in an earlier run: while unchanged, they are counted, not written again.

Product and user tables are read again and again (every full-table read, and incremental
reads that re-read rows). A row that cannot be delivered would be appended to the rejects
file on every run, burying new problems under the same old ones. So each row a catalog
stream sets aside is remembered by its key (its id, or ``#<hash>`` when it has none) and a
hash of the row and its reasons. On a later run the same row with the same reasons is
counted and reported as still rejected, and not written again; a changed row, or the same
row with another reason, is written again.

The memory lives in the catalog store (``hashes.py``) and is saved only at checkpoints,
after the rejects file was synced: a crash before that writes the row again next run, it
never loses it. A row's entry is forgotten when the row maps to a valid record, and when a
completed full-table read no longer set it aside (the row was fixed or removed).
"""

from __future__ import annotations

import typing as t

from target_miso.catalog.mapping import content_hash

if t.TYPE_CHECKING:
    from target_miso.catalog.hashes import CatalogHashes


def row_digest(source: object, reasons: list[str]) -> str:
    """Fingerprint a rejected row with its reasons: equal rows and reasons, equal hashes."""
    return content_hash([source, reasons])


class RejectedRows:
    """The rows of one catalog stream set aside in earlier runs, and those of this run."""

    def __init__(self, store: CatalogHashes, stream: str) -> None:
        """Load what earlier runs set aside (invalid rows only: a small table).

        Args:
            store: The catalog store.
            stream: The Singer stream.

        """
        self._store = store
        self._stream = stream
        self._before = store.rejected(stream)
        self._new: dict[str, str] = {}  # written to the rejects file in this run
        self._seen: set[str] = set()  # set aside in this run (written or not)
        self._valid: set[str] = set()  # remembered, and valid now
        self._gone: set[str] = set()  # remembered, and not in a completed full read
        #: Rows set aside unchanged since an earlier run, in this run (not written again).

    def is_repeat(self, record_id: str | None, source: object, reasons: list[str]) -> bool:
        """Note a row being set aside; tell whether an earlier run set it aside unchanged.

        Args:
            record_id: The row's id, if it has one.
            source: The row.
            reasons: Why it is set aside.

        Returns:
            True when the rejects file already holds this row with these reasons.

        """
        digest = row_digest(source, reasons)
        key = record_id if record_id else f"#{digest}"
        self._seen.add(key)
        if self._before.get(key) == digest:
            return True
        self._new[key] = digest
        return False

    def valid(self, record_id: str) -> None:
        """Forget a row that an earlier run set aside and that now maps to a valid record.

        Args:
            record_id: Its id.

        """
        if record_id in self._before:
            self._valid.add(record_id)

    def full_read_done(self) -> None:
        """End a full-table read: the remembered rows it did not set aside are fixed or gone."""
        self._gone |= set(self._before) - self._seen
        self._seen = set()

    def commit(self, *, save: bool) -> None:
        """Save what changed since the last commit (the rejects file was synced before).

        Args:
            save: False in a dry run: the store is left as it was.

        """
        new, self._new = self._new, {}
        forget = (self._valid | self._gone) - set(new)
        self._valid, self._gone = set(), set()
        if save:
            self._store.save_rejected(self._stream, new, forget)
        for key in forget:
            self._before.pop(key, None)
        self._before.update(new)
