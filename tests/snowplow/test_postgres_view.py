"""The shipped SQL view folds the Postgres loader's shredded tables into what the preset reads."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from target_miso import sample_postgres, samples
from target_miso.mappings import build_mapping
from tests.postgres import ADMIN_DSN

SCHEMA = "miso_test_shredded"


@pytest.fixture
def conn():
    try:
        connection = psycopg.connect(ADMIN_DSN, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is needed on 127.0.0.1:5432 (see README): {error}")
    yield connection
    with connection.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    connection.commit()
    connection.close()


def test_view_rows_map_to_exactly_the_expected_interactions(conn):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events(), create=True)
    sample_postgres.create_view(conn, SCHEMA)

    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT * FROM {}.events_for_miso ORDER BY collector_tstamp, event_id").format(
                sql.Identifier(SCHEMA)
            )
        )
        rows = cur.fetchall()
    mapping = build_mapping(
        "events", {"events": {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}}, {}
    )
    interactions = [i for row in rows for i in mapping.map(row)] + [i for i, _ in mapping.flush()]

    # Rows come back sorted by collector time, not in the logical order: the duplicate and
    # the pings then arrive in another order, which must not matter.
    assert (
        sorted(interactions, key=lambda i: (i["timestamp"], i["type"]))
        == samples.expected_interactions()
    )


def test_view_envelopes_carry_the_event_and_its_entities(conn):
    events = samples.sample_events()
    sample_postgres.load_events(conn, SCHEMA, events, create=True)
    sample_postgres.create_view(conn, SCHEMA)

    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT contexts, unstruct_event FROM {}.events_for_miso WHERE event_id = %s"
            ).format(sql.Identifier(SCHEMA)),
            (events[16].atomic["event_id"],),
        )  # the site search
        contexts, unstruct = cur.fetchone()
    assert contexts is None
    assert unstruct["data"]["schema"] == samples.SITE_SEARCH
    assert unstruct["data"]["data"]["terms"] == ["red", "shoes"]
    assert unstruct["data"]["data"]["total_results"] == 12


def test_view_without_shredded_tables_still_works(conn):
    sample_postgres.load_events(conn, SCHEMA, [samples.sample_events()[9]], create=True)
    with conn.cursor() as cur:
        cur.execute(
            f"DROP TABLE {SCHEMA}.com_snowplowanalytics_snowplow_web_page_1, "
            f"{SCHEMA}.com_snowplowanalytics_snowplow_ua_parser_context_1"
        )
    conn.commit()
    sample_postgres.create_view(conn, SCHEMA)
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*), count(contexts) FROM {}.events_for_miso").format(
                sql.Identifier(SCHEMA)
            )
        )
        assert cur.fetchone() == (1, 0)
