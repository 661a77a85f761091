"""tap-postgres-copy against a real Postgres: discovery, selection, values, state, errors.

The tap runs as a process (``python -m target_miso.taps.postgres_copy``), as Meltano runs it.
The SDK's standard tap tests are in test_postgres_copy_sdk.py.
"""

from __future__ import annotations

import decimal
import json
import subprocess
import sys
import typing as t

import psycopg
import pytest

from target_miso import sample_postgres, samples
from target_miso.mappings import build_mapping
from target_miso.taps.postgres_copy import ANY_JSON
from tests.postgres import connection_settings, database_name, dsn_for, fresh_database

if t.TYPE_CHECKING:
    from pathlib import Path

DATABASE = database_name("target_miso_copy_tap")
SETTINGS = {**connection_settings(DATABASE), "filter_schemas": ["shop", "atomic"]}
#: A text with every character COPY's text format escapes, and JSON's too.
AWKWARD = 'tab\there, "quoted", back\\slash,\nnew line, \r, \x08\x0c\x0b, é, 🛒'


@pytest.fixture(scope="module", autouse=True)
def database() -> t.Iterator[None]:
    with fresh_database(DATABASE) as conn:
        conn.execute(
            """
            CREATE SCHEMA shop;
            CREATE TABLE shop.events (
                id integer PRIMARY KEY, ts timestamp, tz timestamptz, doc jsonb, raw json,
                tags text[], amount numeric, note text, flag boolean, day date);
            CREATE VIEW shop.recent_events AS SELECT id, ts, note FROM shop.events;
            CREATE SCHEMA other;
            CREATE TABLE other.ignored (id integer);
            """
        )
        conn.execute(
            """
            INSERT INTO shop.events VALUES
              (1, '2024-05-01 10:00:00', '2024-05-01 12:00:00+02', '{"a": [1, {"b": null}]}',
               '{ "spaced" :  true }', '{x,"y z"}', 12345678901234567890.123456789, %s, true,
               '2024-05-01'),
              (2, '2024-05-01 10:00:00.25', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
              (3, '2024-05-01 10:00:01', NULL, '[]', 'null', '{}', 0, '', false, NULL)
            """,
            (AWKWARD,),
        )
        sample_postgres.load_events(conn, "atomic", samples.sample_events(), create=True)
        sample_postgres.create_view(conn, "atomic")
        conn.commit()
        yield


def run_tap(
    tmp_path: Path, catalog: dict | None = None, state: dict | None = None, **settings: t.Any
) -> subprocess.CompletedProcess:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps({**SETTINGS, **settings}))
    args = [sys.executable, "-m", "target_miso.taps.postgres_copy", "--config", str(config)]
    if catalog is None:
        args.append("--discover")
    else:
        (tmp_path / "catalog.json").write_text(json.dumps(catalog))
        args += ["--catalog", str(tmp_path / "catalog.json")]
    if state is not None:
        (tmp_path / "state.json").write_text(json.dumps(state))
        args += ["--state", str(tmp_path / "state.json")]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def discover(tmp_path: Path) -> dict:
    done = run_tap(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def select(
    catalog: dict, stream: str, columns: t.Collection[str] | None = None, key: str | None = None
) -> dict:
    """The catalog with only ``stream`` selected (its ``columns``, or all), FULL_TABLE or on key."""
    chosen = json.loads(json.dumps(catalog))
    chosen["streams"] = [s for s in chosen["streams"] if s["tap_stream_id"] == stream]
    for entry in chosen["streams"][0]["metadata"]:
        if entry["breadcrumb"] == []:
            method = "INCREMENTAL" if key else "FULL_TABLE"
            entry["metadata"].update(selected=True, **{"replication-method": method})
            if key:
                entry["metadata"]["replication-key"] = key
        else:
            name = entry["breadcrumb"][-1]
            entry["metadata"]["selected"] = columns is None or name in columns
    return chosen


def messages(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line, parse_float=decimal.Decimal) for line in done.stdout.splitlines()]


def records(found: list[dict]) -> list[dict]:
    return [m["record"] for m in found if m["type"] == "RECORD"]


def states(found: list[dict]) -> list[dict]:
    return [m["value"] for m in found if m["type"] == "STATE"]


def test_discovery_lists_the_tables_and_views_of_filter_schemas_with_their_types(tmp_path):
    streams = {s["tap_stream_id"]: s for s in discover(tmp_path)["streams"]}

    assert {"shop-events", "shop-recent_events", "atomic-events_for_miso_narrow"} <= set(streams)
    assert not [name for name in streams if name.startswith("other-")], "filter_schemas"
    events = streams["shop-events"]
    assert events["key_properties"] == ["id"]
    assert streams["shop-recent_events"]["is_view"] is True
    types = events["schema"]["properties"]
    assert types["ts"]["format"] == types["tz"]["format"] == "date-time"
    assert types["doc"] == types["raw"] == ANY_JSON, "json and jsonb hold any JSON value"
    assert types["tags"]["type"] == ["array", "null"]
    assert "integer" in types["id"]["type"]
    assert "number" in types["amount"]["type"]
    assert "boolean" in types["flag"]["type"]


def test_records_hold_the_selected_columns_as_postgres_writes_them(tmp_path):
    catalog = select(
        discover(tmp_path),
        "shop-events",
        {"id", "tz", "doc", "raw", "tags", "amount", "note", "day"},
    )

    found = messages(run_tap(tmp_path, catalog))

    assert [m["type"] for m in found] == ["SCHEMA", "RECORD", "RECORD", "RECORD", "STATE"]
    first, second, third = records(found)
    assert first == {
        "id": 1,
        "tz": "2024-05-01T10:00:00+00:00",  # in UTC, whatever the server's time zone
        "doc": {"a": [1, {"b": None}]},
        "raw": {"spaced": True},
        "tags": ["x", "y z"],
        "amount": decimal.Decimal("12345678901234567890.123456789"),  # every digit
        "note": AWKWARD,
        "day": "2024-05-01",
    }
    assert second == dict.fromkeys(first) | {"id": 2}, "nulls are kept by default"
    assert third["raw"] is None and third["doc"] == [] and third["note"] == ""
    assert "ts" not in first and "flag" not in first, "columns not selected are not read"
    schema = found[0]["schema"]["properties"]
    assert set(schema) == set(first)


def test_omit_null_values_leaves_null_columns_out_of_the_records(tmp_path):
    catalog = select(discover(tmp_path), "shop-events", {"id", "ts", "note", "doc"})

    found = records(messages(run_tap(tmp_path, catalog, omit_null_values=True)))

    assert found[1] == {"id": 2, "ts": "2024-05-01T10:00:00.25"}
    assert found[0]["note"] == AWKWARD


def test_incremental_runs_resume_at_the_bookmark_written_as_tap_postgres_writes_it(tmp_path):
    catalog = select(discover(tmp_path), "shop-events", {"id", "ts"}, key="ts")

    first = messages(run_tap(tmp_path, catalog))

    assert [r["id"] for r in records(first)] == [1, 2, 3]
    bookmark = states(first)[-1]["bookmarks"]["shop-events"]
    assert bookmark == {
        "replication_key": "ts",
        "replication_key_value": "2024-05-01T10:00:01.000000+00:00",
    }
    with psycopg.connect(dsn_for(DATABASE)) as conn:
        conn.execute(
            "INSERT INTO shop.events (id, ts) VALUES (4, '2024-05-01 10:00:01'),"
            " (5, '2024-05-02 00:00:00'), (6, '2024-04-30 00:00:00')"
        )
    try:
        second = messages(run_tap(tmp_path, catalog, state=states(first)[-1]))
    finally:
        with psycopg.connect(dsn_for(DATABASE)) as conn:
            conn.execute("DELETE FROM shop.events WHERE id > 3")

    # Rows at the bookmark are read again (a row can share it), earlier ones are not.
    assert [r["id"] for r in records(second)] == [3, 4, 5]
    assert states(second)[-1]["bookmarks"]["shop-events"]["replication_key_value"] == (
        "2024-05-02T00:00:00.000000+00:00"
    )


def test_custom_where_clauses_read_one_partition_next_to_the_bookmark(tmp_path):
    catalog = select(discover(tmp_path), "shop-events", {"id", "ts"}, key="ts")
    bookmark = {"replication_key": "ts", "replication_key_value": "2024-05-01T10:00:00.1"}
    state = {"bookmarks": {"shop-events": bookmark}}
    where = {"shop-events": {"custom_where_clauses": ["id <> 2", "ts IS NOT NULL"]}}

    found = messages(run_tap(tmp_path, catalog, state=state, stream_options=where))

    assert [r["id"] for r in records(found)] == [3], "1 is before the bookmark, 2 filtered"


def test_a_state_follows_every_10000_records_and_covers_exactly_those_before_it(tmp_path):
    with psycopg.connect(dsn_for(DATABASE)) as conn:
        conn.execute(
            "CREATE TABLE shop.many AS SELECT i AS seq, 'row ' || i AS label"
            " FROM generate_series(1, 25000) AS i"
        )
    try:
        catalog = select(discover(tmp_path), "shop-many", key="seq")
        found = messages(run_tap(tmp_path, catalog))
    finally:
        with psycopg.connect(dsn_for(DATABASE)) as conn:
            conn.execute("DROP TABLE shop.many")

    seen = 0
    covered = []
    for message in found:
        if message["type"] == "RECORD":
            seen = message["record"]["seq"]
        elif message["type"] == "STATE":
            value = message["value"]["bookmarks"]["shop-many"]["replication_key_value"]
            assert value == seen, "a STATE covers exactly the records before it"
            covered.append(value)
    assert covered == [10000, 20000, 25000], "numbers, compared as numbers (9 < 10)"
    assert [r["seq"] for r in records(found)] == list(range(1, 25001))


def test_snowplow_rows_through_the_narrow_view_give_the_expected_interactions(tmp_path):
    # What meltano.yml ships: the columns the preset reads, nulls left out.
    mappings = {"events": {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}}
    mapping = build_mapping("events", mappings, {})
    columns = mapping.columns()
    assert columns is not None
    catalog = discover(tmp_path)
    stream = "atomic-events_for_miso_narrow"
    (entry,) = [s for s in catalog["streams"] if s["tap_stream_id"] == stream]
    wanted = [name for name in entry["schema"]["properties"] if columns.matches(name)]
    chosen = select(catalog, stream, wanted, key="collector_tstamp")

    rows = records(messages(run_tap(tmp_path, chosen, omit_null_values=True)))

    interactions = [i for row in rows for i in mapping.map(row)]
    interactions += [i for i, _ in mapping.flush()]
    assert sorted(interactions, key=lambda i: (i["timestamp"], i["type"])) == (
        samples.expected_interactions()
    )


def test_a_relation_gone_since_discovery_fails_the_run_naming_the_stream(tmp_path):
    with psycopg.connect(dsn_for(DATABASE)) as conn:
        conn.execute("CREATE VIEW shop.short_lived AS SELECT 1 AS id")
    catalog = select(discover(tmp_path), "shop-short_lived")
    with psycopg.connect(dsn_for(DATABASE)) as conn:
        conn.execute("DROP VIEW shop.short_lived")

    done = run_tap(tmp_path, catalog)

    assert done.returncode != 0
    assert "stream 'shop-short_lived': Postgres could not read the rows" in done.stderr
    assert 'relation "shop.short_lived" does not exist' in done.stderr
    assert '"type":"STATE"' not in done.stdout


def test_a_server_that_cannot_be_reached_fails_without_showing_the_password(tmp_path):
    done = run_tap(tmp_path, port=1, password="s3cret-pa55word")  # noqa: S106 - a fake one

    assert done.returncode != 0
    assert "Connection refused" in done.stderr or "connection failed" in done.stderr
    assert "s3cret-pa55word" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("stream_maps", {"shop-events": {"id": None}}),
        ("flattening_enabled", True),
        ("batch_config", {"encoding": {"format": "jsonl"}, "storage": {"root": "file:///tmp"}}),
    ],
)
def test_settings_that_transform_records_are_refused_at_start_up(tmp_path, setting, value):
    catalog = select(discover(tmp_path), "shop-events", {"id"})

    done = run_tap(tmp_path, catalog, **{setting: value})

    assert done.returncode != 0
    assert f"does not apply {setting}" in done.stderr
    assert '"type":"RECORD"' not in done.stdout


def test_about_does_not_advertise_what_the_tap_refuses():
    done = subprocess.run(
        [sys.executable, "-m", "target_miso.taps.postgres_copy", "--about", "--format=json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    about = json.loads(done.stdout)

    assert {"catalog", "discover", "state", "about"} <= set(about["capabilities"])
    assert not {"stream-maps", "schema-flattening", "batch"} & set(about["capabilities"])
    assert {"host", "password", "filter_schemas", "stream_options", "omit_null_values"} <= set(
        about["settings"]["properties"]
    )
