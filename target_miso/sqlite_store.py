"""Opening the SQLite files the target keeps between runs (catalog hashes, Snowplow event ids)."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_store(path: str | Path | None) -> tuple[Path | None, sqlite3.Connection]:
    """Open (creating it and its folder) a store file, or an in-memory one for ``None``.

    Partitioned pipelines may share a file: writers wait for each other (WAL, 60 s timeout).

    Args:
        path: The SQLite file, or None to keep the data for this run only.

    Returns:
        The path (None for in-memory) and the connection.

    """
    file = Path(path) if path is not None else None
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(file or ":memory:"), timeout=60)
    if file is not None:
        db.execute("PRAGMA journal_mode=WAL")
    return file, db
