"""The shipped SQL view folds the Postgres loader's shredded tables into what the preset reads."""

from __future__ import annotations

import typing as t

import psycopg
import pytest
from psycopg import sql

from target_miso import sample_postgres, samples
from target_miso.mappings import build_mapping
from tests.postgres import scratch_schema

SCHEMA = "miso_test_shredded"


@pytest.fixture
def conn() -> t.Iterator[psycopg.Connection]:
    with scratch_schema(SCHEMA) as connection:
        yield connection


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


def _rows(conn, view: str) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT * FROM {}.{} ORDER BY collector_tstamp, event_id").format(
                sql.Identifier(SCHEMA), sql.Identifier(view)
            )
        )
        return cur.fetchall()


def _mapped(rows: list[dict], **options) -> tuple[list[dict], dict[str, int]]:
    settings = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None, **options}
    mapping = build_mapping("events", {"events": settings}, {})
    interactions = [i for row in rows for i in mapping.map(row)] + [i for i, _ in mapping.flush()]
    return sorted(interactions, key=lambda i: (i["timestamp"], i["type"])), dict(mapping.skipped)


def test_narrowed_views_give_the_same_interactions_as_the_full_view(conn):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events(), create=True)
    sample_postgres.create_view(conn, SCHEMA)
    full = _mapped(_rows(conn, "events_for_miso"))
    assert full[0] == samples.expected_interactions()

    narrow = _rows(conn, "events_for_miso_narrow")
    as_json = _rows(conn, "events_for_miso_json")

    assert _mapped(narrow) == full
    assert _mapped(as_json, payload_column="payload") == full
    columns = ["event_id", "collector_tstamp", "app_id", "domain_userid", "payload"]
    assert list(as_json[0]) == columns
    assert len(narrow[0]) == 33, "31 atomic columns and the two envelopes, instead of 130"
    # Only the schemas the preset reads are folded: the ua_parser enrichment and the link
    # click stay in their tables.
    payloads = " ".join(row["payload"] for row in as_json)
    assert "ua_parser_context" not in payloads
    assert "link_click/jsonschema" not in payloads
    assert "web_page/jsonschema" in payloads
    assert '"se_value":null' not in payloads, "nulls are left out of the payload"


def test_narrowed_views_gain_load_tstamp_in_place_when_the_loader_adds_it(conn):
    sample_postgres.load_events(conn, SCHEMA, samples.sample_events()[:3], create=True)
    sample_postgres.create_view(conn, SCHEMA)
    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE {SCHEMA}.events ADD COLUMN load_tstamp timestamp")
        # The full view passes every column through: it must be dropped (docs/snowplow.md);
        # the narrowed ones are replaced in place, keeping their grants.
        cur.execute(f"DROP VIEW {SCHEMA}.events_for_miso")
    sample_postgres.create_view(conn, SCHEMA)

    assert list(_rows(conn, "events_for_miso_json")[0]) == [
        "event_id", "collector_tstamp", "app_id", "domain_userid", "payload", "load_tstamp",
    ]  # fmt: skip
    assert list(_rows(conn, "events_for_miso_narrow")[0])[-1] == "load_tstamp"
