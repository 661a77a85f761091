"""`python -m target_miso.sample_postgres`: the sample events in a Postgres of the user's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.postgres import database_name, dsn_for, fresh_database

pytestmark = pytest.mark.e2e
DATABASE = database_name("target_miso_sample_command")


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "target_miso.sample_postgres", "--dsn", dsn_for(DATABASE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_loads_the_samples_and_the_views_and_never_drops_a_schema_unasked():
    with fresh_database(DATABASE) as conn:
        conn.autocommit = True  # hold no lock while the command drops and creates the schema
        first = _command()
        assert first.returncode == 0, first.stderr
        (events,) = conn.execute("SELECT count(*) FROM atomic.events").fetchone()
        (rows,) = conn.execute("SELECT count(*) FROM atomic.events_for_miso_json").fetchone()
        conn.execute("INSERT INTO atomic.events (event_id) SELECT gen_random_uuid()")

        again = _command()
        (kept,) = conn.execute("SELECT count(*) FROM atomic.events").fetchone()
        replaced = _command("--replace", "--copies", "2")
        (after,) = conn.execute("SELECT count(*) FROM atomic.events").fetchone()

    assert f"{events} sample events" in first.stdout
    assert rows == events > 0
    assert again.returncode == 2
    assert "exists already: nothing was changed" in again.stderr
    assert kept == events + 1, "the existing schema was left alone"
    assert replaced.returncode == 0, replaced.stderr
    assert after == events * 3
