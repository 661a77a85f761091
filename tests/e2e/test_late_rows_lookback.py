"""Rows loaded behind the bookmark, with the real Postgres taps on the Snowplow views.

The Postgres loader has no load-order column, so the tap replicates on ``collector_tstamp``:
a row loaded after the bookmark passed its time (an offline device, a loader catching up)
is behind ``WHERE collector_tstamp >= <bookmark>``. With ``state_lookback_seconds`` the
target writes the bookmark moved back by the window, the next run re-reads the window, and
the event-id store drops what was delivered: exactly the late rows arrive. Rows later than
the window are not recovered, and without a lookback none are (the reported issue). Where
the events table has ``load_tstamp`` (RDB Loader 4.0.0 and later), replicating on it reads
every late row with no lookback at all. The shipped pipeline (tap-postgres-copy on the narrow
view), tap-postgres on the view that hands the row over as JSON text (``payload_column``) and
on the view of columns behave the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import psycopg
import pytest

from target_miso import samples
from target_miso.sample_postgres import create_view, load_events
from tests.helpers import run_target, write_config
from tests.postgres import connection_settings, database_name, dsn_for, fresh_database

if t.TYPE_CHECKING:
    from target_miso.miso.sandbox import Sandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DATABASE = database_name("target_miso_late_rows_e2e")
#: The view of columns and the JSON-text view (meltano.yml's select list for tap-postgres:
#: payload and the key), read by tap-postgres; the narrow view, read by the shipped
#: tap-postgres-copy (nulls left out, as meltano.yml sets it).
STREAMS = {
    "atomic-events_for_miso": {"select": None, "mapping": {}},
    "atomic-events_for_miso_json": {
        "select": ["payload", "collector_tstamp", "load_tstamp"],
        "mapping": {"payload_column": "payload"},
    },
    "atomic-events_for_miso_narrow": {
        "select": None,
        "mapping": {},
        "tap": "tap-postgres-copy",
        "settings": {"omit_null_values": True},
    },
}
WINDOW = 600  # seconds
# The sample events are collected from 10:00:00.5 to 10:04:00.5 (the first bookmark).
LATE_IN_WINDOW = [-60, -61, -62]  # 09:59: 5 minutes behind the bookmark
LATE_OUTSIDE = [-3600, -3601]  # 09:00: 64 minutes behind the bookmark


def _tap() -> Path:
    tap = os.environ.get("TARGET_MISO_TAP_POSTGRES")
    return Path(tap) if tap else ROOT / ".meltano/extractors/tap-postgres/venv/bin/tap-postgres"


@pytest.fixture
def tap(request: pytest.FixtureRequest) -> Path:
    """The real tap-postgres (meltano install'ed unless TARGET_MISO_TAP_POSTGRES names one)."""
    if not _tap().exists():
        request.getfixturevalue("meltano_installed")
    return _tap()


@pytest.fixture
def snowplow_db() -> t.Iterator[str]:
    """A fresh database with the sample events in the Postgres loader's layout, and the view."""
    with fresh_database(DATABASE) as conn:
        load_events(conn, "atomic", samples.sample_events(), create=True)
        create_view(conn, "atomic")
        conn.commit()
        yield dsn_for(DATABASE)


def _likes(offsets: list[int], first: int) -> list[samples.LogicalEvent]:
    return [
        samples.LogicalEvent(
            samples._event(
                first + i, "event", seconds,
                se_category="product", se_action="like", se_label=f"late-{first + i}",
            )
        )
        for i, seconds in enumerate(offsets)
    ]  # fmt: skip


@pytest.fixture(params=list(STREAMS))
def stream(request: pytest.FixtureRequest) -> str:
    """Each view the tap may read."""
    return request.param


class Pipeline:
    """tap-postgres | target-miso, run after run, each from the STATE the last one wrote."""

    def __init__(
        self,
        tmp_path: Path,
        tap: Path,
        sandbox: Sandbox,
        *,
        lookback: float,
        key: str = "collector_tstamp",
        stream: str = "atomic-events_for_miso",
    ) -> None:
        self.tmp_path = tmp_path
        self.key = key
        self.stream = stream
        own_tap = STREAMS[stream].get("tap")
        self.tap = Path(sys.executable).with_name(own_tap) if own_tap else tap
        self.tap_config = tmp_path / "tap.json"
        self.tap_config.write_text(
            json.dumps(
                {
                    **connection_settings(DATABASE),
                    "password": os.environ.get("PGPASSWORD", "postgres"),
                    "filter_schemas": ["atomic"],
                    **STREAMS[stream].get("settings", {}),
                },
            ),
        )
        self.catalog = tmp_path / "catalog.json"
        self.catalog.write_text(json.dumps(self._catalog()))
        mapping = {
            **samples.SAMPLE_MAPPING_OPTIONS,
            "dedupe_store": str(tmp_path / "seen.sqlite"),
            "state_lookback_seconds": lookback,
            **STREAMS[stream]["mapping"],
        }
        self.config = write_config(tmp_path, sandbox.url, mappings={stream: mapping})
        self.state: dict | None = None
        #: The last STATE the tap itself wrote (before the target moved it).
        self.tap_state: dict | None = None

    def _catalog(self) -> dict:
        discovered = subprocess.run(
            [str(self.tap), "--config", str(self.tap_config), "--discover"],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        catalog = json.loads(discovered.stdout)
        catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == self.stream]
        columns = STREAMS[self.stream]["select"]
        for entry in catalog["streams"][0]["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"].update(
                    selected=True,
                    **{"replication-method": "INCREMENTAL", "replication-key": self.key},
                )
            elif columns is not None:
                entry["metadata"]["selected"] = entry["breadcrumb"][-1] in columns
        return catalog

    def run(self) -> str:
        """One run; returns the target's stderr (the summary). Keeps the last STATE."""
        command = [str(self.tap), "--config", str(self.tap_config), "--catalog", str(self.catalog)]
        if self.state is not None:
            state_path = self.tmp_path / "state.json"
            state_path.write_text(json.dumps(self.state))
            command += ["--state", str(state_path)]
        read = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
        states = [json.loads(line) for line in read.stdout.splitlines() if '"STATE"' in line]
        self.tap_state = next(m["value"] for m in reversed(states) if m["type"] == "STATE")
        done = run_target(self.config, read.stdout)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.states, "every run writes a STATE"
        self.state = done.states[-1]
        return done.stderr

    @property
    def bookmark(self) -> dict:
        assert self.state is not None
        return self.state["bookmarks"][self.stream]


def _labels(interactions: list[dict]) -> list[str]:
    return sorted(i["product_ids"][0] for i in interactions if i["type"] == "like")


def test_late_rows_within_the_window_arrive_once_and_later_ones_are_not_recovered(
    tmp_path: Path, tap: Path, snowplow_db: str, sandbox: Sandbox, stream: str
) -> None:
    pipeline = Pipeline(tmp_path, tap, sandbox, lookback=WINDOW, stream=stream)
    first = pipeline.run()
    assert "records in: 30" in first
    delivered = len(sandbox.interactions)
    assert delivered == len(samples.expected_interactions())
    # The tap read up to the last event; the STATE written is 10 minutes earlier.
    assert pipeline.bookmark["replication_key_value"] == "2024-05-01T09:54:00.500000+00:00"
    kept = pipeline.bookmark["target_miso_lookback"]
    assert kept["replication_key_value"] == "2024-05-01T10:04:00.500000+00:00"

    with psycopg.connect(snowplow_db) as conn:
        late = _likes(LATE_IN_WINDOW, 100) + _likes(LATE_OUTSIDE, 200)
        load_events(conn, "atomic", late, create=False)
    second = pipeline.run()

    new = sandbox.interactions[delivered:]
    assert _labels(new) == ["late-100", "late-101", "late-102"]
    assert len(new) == 3, "nothing already delivered is sent again"
    # The window (the 30 events and the 3 late ones) was read again; the 09:00 rows were not.
    # Of the 30, the 21 delivered are dropped as duplicates; the 9 skipped by design (pings,
    # events without a rule) were not delivered, so they are mapped and skipped again.
    assert "records in: 33" in second
    assert "21  snowplow: duplicate event_id" in second
    assert pipeline.bookmark["replication_key_value"] == "2024-05-01T09:54:00.500000+00:00"
    # The tap hands back the kept value it was given (a run that reads nothing new must
    # not move the bookmark back once more: tests/run/test_lookback.py).
    assert pipeline.tap_state is not None
    assert pipeline.tap_state["bookmarks"][stream]["target_miso_lookback"] == kept

    # A run with nothing new: the tap re-reads the window (its bookmark is inclusive, so the
    # row at the kept value comes back too) and the STATE stays where it was.
    before = pipeline.state
    third = pipeline.run()
    assert len(sandbox.interactions) == delivered + 3
    assert "records in: 33" in third
    assert pipeline.state == before


def test_without_a_lookback_late_rows_are_skipped(
    tmp_path: Path, tap: Path, snowplow_db: str, sandbox: Sandbox, stream: str
) -> None:
    pipeline = Pipeline(tmp_path, tap, sandbox, lookback=0, stream=stream)
    pipeline.run()
    delivered = len(sandbox.interactions)
    assert pipeline.bookmark["replication_key_value"] == "2024-05-01T10:04:00.500000+00:00"
    with psycopg.connect(snowplow_db) as conn:
        load_events(conn, "atomic", _likes(LATE_IN_WINDOW, 100), create=False)

    second = pipeline.run()

    assert "records in: 1" in second, "only the boundary row the bookmark includes"
    assert len(sandbox.interactions) == delivered


def test_replicating_on_load_tstamp_reads_every_late_row(
    tmp_path: Path, tap: Path, snowplow_db: str, sandbox: Sandbox, stream: str
) -> None:
    with psycopg.connect(snowplow_db) as conn:
        # As RDB Loader 4.0.0+ loads it; the view is made again to pass the column through.
        conn.execute("ALTER TABLE atomic.events ADD COLUMN load_tstamp timestamp")
        conn.execute("UPDATE atomic.events SET load_tstamp = collector_tstamp + interval '5 s'")
        # CREATE OR REPLACE VIEW cannot add a column before the view's own: drop it first.
        conn.execute("DROP VIEW atomic.events_for_miso")
        conn.commit()
        create_view(conn, "atomic")
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'atomic' AND tablename = 'events'"
        ).fetchall()
    assert ("events_load_tstamp_miso",) in indexes
    pipeline = Pipeline(tmp_path, tap, sandbox, lookback=0, key="load_tstamp", stream=stream)
    pipeline.run()
    delivered = len(sandbox.interactions)
    assert delivered == len(samples.expected_interactions())
    with psycopg.connect(snowplow_db) as conn:
        late = _likes(LATE_IN_WINDOW, 100) + _likes(LATE_OUTSIDE, 200)
        load_events(conn, "atomic", late, create=False)
        # Loaded a day after the bookmark's events, whatever their collector_tstamp.
        conn.execute("UPDATE atomic.events SET load_tstamp = '2024-05-02 10:00:00' "
                     "WHERE load_tstamp IS NULL")  # fmt: skip
        conn.commit()

    second = pipeline.run()

    assert _labels(sandbox.interactions[delivered:]) == [
        "late-100", "late-101", "late-102", "late-200", "late-201",
    ]  # fmt: skip
    assert len(sandbox.interactions) == delivered + 5
    assert "records in: 6" in second, "the boundary row and the five late ones"
