"""The shipped SQL indexes what the view joins on, so tap-postgres's incremental query scales.

Without indexes the view is quadratic (each event scans every shredded table) and the first
row of an incremental read waits for a sort of the whole events table. These tests assert on
the query plan, not on timings (figures: docs/performance.md).
"""

from __future__ import annotations

import typing as t

import psycopg
import pytest
from psycopg import sql

from target_miso import sample_postgres, samples
from tests.postgres import scratch_schema

SCHEMA = "miso_test_view_indexes"
INCREMENTAL = (
    "SELECT * FROM {}.events_for_miso WHERE collector_tstamp >= %s ORDER BY collector_tstamp"
)


@pytest.fixture
def conn() -> t.Iterator[psycopg.Connection]:
    with scratch_schema(SCHEMA) as connection:
        yield connection


def shredded_tables(conn) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = %s AND column_name = 'root_id' ORDER BY table_name",
            (SCHEMA,),
        )
        return [name for (name,) in cur.fetchall()]


def index_columns(conn) -> dict[str, list[tuple[str, ...]]]:
    """Table -> the column lists of its indexes."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT t.relname, array_agg(a.attname::text ORDER BY k.ord)"
            "  FROM pg_index i"
            "  JOIN pg_class t ON t.oid = i.indrelid"
            "  JOIN pg_namespace n ON n.oid = t.relnamespace"
            "  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord)"
            "  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
            " WHERE n.nspname = %s GROUP BY t.relname, i.indexrelid",
            (SCHEMA,),
        )
        indexes: dict[str, list[tuple[str, ...]]] = {}
        for table, columns in cur.fetchall():
            indexes.setdefault(table, []).append(tuple(columns))
    return indexes


def plan_nodes(plan: dict[str, t.Any]) -> t.Iterator[dict[str, t.Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def incremental_plan(conn, *, cursor: bool) -> list[dict[str, t.Any]]:
    """Plan nodes of tap-postgres's incremental query: with LIMIT, or as a server-side cursor.

    tap-postgres streams through a cursor, which Postgres plans for its first rows
    (cursor_tuple_fraction), much like a LIMIT.
    """
    query = sql.SQL(INCREMENTAL).format(sql.Identifier(SCHEMA))
    if cursor:
        query = sql.SQL("DECLARE c NO SCROLL CURSOR FOR {}").format(query)
    else:
        query = sql.SQL("{} LIMIT 2000").format(query)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), ("2024-05-01 10:00:00",))
        (explained,) = t.cast(tuple[t.Any], cur.fetchone())
    conn.rollback()
    return list(plan_nodes(explained[0]["Plan"]))


def full_scans(nodes: list[dict[str, t.Any]]) -> set[str]:
    return {node["Relation Name"] for node in nodes if node["Node Type"] == "Seq Scan"}


def drop_indexes(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (SCHEMA,))
        for (name,) in cur.fetchall():
            cur.execute(
                sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))
            )
    conn.commit()


def test_the_shipped_sql_indexes_the_events_and_every_shredded_table(conn):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events(), create=True)
    assert index_columns(conn) == {}, "the loader (like Snowplow's) creates no indexes"

    sample_postgres.create_view(conn, SCHEMA)

    indexes = index_columns(conn)
    assert indexes.pop("events") == [("collector_tstamp",)]
    tables = shredded_tables(conn)
    assert len(tables) > 10
    assert indexes == {table: [("root_id", "root_tstamp")] for table in tables}


def test_re_running_it_indexes_new_tables_once(conn):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events(), create=True)
    sample_postgres.create_view(conn, SCHEMA)
    # The loader creates a table for a new schema; its name is as long as Postgres allows,
    # so the index name must not collide with another table's after truncation.
    long_name = "com_acme_a_very_long_vendor_name_with_many_words_in_it_thing_1"
    assert len(long_name) <= 63
    with conn.cursor() as cur:
        for name in (long_name, long_name[:-1] + "2"):
            cur.execute(
                sql.SQL(
                    "CREATE TABLE {}.{} (schema_vendor text, schema_name text, schema_format text,"
                    " schema_version text, root_id uuid, root_tstamp timestamp, colour text)"
                ).format(sql.Identifier(SCHEMA), sql.Identifier(name))
            )
    conn.commit()

    sample_postgres.create_view(conn, SCHEMA)
    sample_postgres.create_view(conn, SCHEMA)

    indexes = index_columns(conn)
    assert indexes[long_name] == [("root_id", "root_tstamp")]
    assert indexes[long_name[:-1] + "2"] == [("root_id", "root_tstamp")]
    assert indexes["events"] == [("collector_tstamp",)]
    assert sum(len(columns) for columns in indexes.values()) == len(shredded_tables(conn)) + 1


@pytest.mark.parametrize("cursor", [False, True], ids=["limit", "cursor"])
def test_the_incremental_query_reads_through_the_indexes(conn, cursor):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events(), create=True)
    events = sample_postgres.multiply_events(conn, SCHEMA, 700)  # 21,030 events
    assert events == 30 * 701

    # Without the indexes (the loader's own tables): the planner can only scan everything.
    sample_postgres.create_view(conn, SCHEMA)
    drop_indexes(conn)
    unindexed = incremental_plan(conn, cursor=cursor)
    assert "events" in full_scans(unindexed)
    assert full_scans(unindexed) & set(shredded_tables(conn))

    sample_postgres.create_view(conn, SCHEMA)  # the shipped SQL, as documented
    indexed = incremental_plan(conn, cursor=cursor)

    assert full_scans(indexed) == set(), "no Seq Scan on the events or the shredded tables"
    assert not [
        node
        for node in indexed
        if node["Node Type"] in ("Sort", "Incremental Sort")
        and node.get("Sort Key", [""])[0].endswith("collector_tstamp")
    ], "rows come in collector_tstamp order from the index, not from sorting the table"
    index_scans = {
        node["Relation Name"]: node["Index Name"]
        for node in indexed
        if node["Node Type"] in ("Index Scan", "Index Only Scan")
    }
    assert set(index_scans) == {"events", *shredded_tables(conn)}
