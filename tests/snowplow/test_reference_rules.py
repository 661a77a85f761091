"""The preset agrees with Snowplow's reference models on identity, engaged time and page views.

The expected values are worked out by hand from the reference definitions, with the reasoning
next to each case:

* identity: the atomic ``user_id``, else the e-commerce plugin's ``user`` entity's ``id``
  unless ``is_guest`` is true (never its ``email``);
* engaged time (dbt-snowplow-web): ``heartbeat * (distinct heartbeat buckets of the pings - 1)
  + min_visit``, over the pings grouped by page view id *and* ``domain_sessionid``, and only
  while the page view is alive: a ping more than the session timeout after the page view's
  previous counted ping (or the page view itself) does not count. A page view whose pings all
  fell outside gets 0;
* page views: one per ``web_page`` id (dbt keeps one row per ``page_view_id``).
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from target_miso import samples
from target_miso.mappings import build_mapping
from tests.snowplow import postgres_loader
from tests.snowplow.test_layouts import STREAM

RULES = samples.SAMPLE_MAPPING_OPTIONS["page_rules"]
LAYOUTS = {
    "tsv-shaped": samples.render_tsv_shaped,
    "snowflake": samples.render_snowflake,
    "bigquery": samples.render_bigquery,
    "bigquery-v1-names": lambda events: samples.render_bigquery(events, full_version_names=True),
}


def mapping(**options):
    return build_mapping(
        STREAM,
        {STREAM: {"preset": "snowplow", "page_rules": RULES, "dedupe_store": None, **options}},
        {},
    )


def run_all(preset, rows):
    return [i for row in rows for i in preset.map(row)] + [i for i, _ in preset.flush()]


# --- Identity: the e-commerce plugin's user entity -----------------------------------------


def cart(number, user=None, **atomic):
    contexts = [(samples.ECOMMERCE_USER, user)] if user is not None else []
    return samples._ecommerce(
        number, number, "add_to_cart", [samples._product(f"sku-{number}")], None,
        contexts=contexts, **atomic,
    )  # fmt: skip


def identity_events():
    """Each event's expected user_id is in the comment (by the rule in the module docstring)."""
    return [
        cart(1, {"id": "u-7", "is_guest": False, "email": "ann@example.com"}),  # u-7
        cart(2, {"id": "guest-4711", "is_guest": True, "email": "bob@example.com"}),  # none
        cart(3, {"id": "u-other", "is_guest": False}, user_id="u-atomic"),  # u-atomic
        cart(4, {"id": "u-9", "is_guest": None}),  # u-9: not said to be a guest
        cart(5, {"id": None, "is_guest": False, "email": "eve@example.com"}),  # none: no email
        cart(6),  # none: no entity
        # A global context on a page view (setEcommerceUser applies to every event): u-7
        samples.LogicalEvent(
            samples._event(7, "page_view", 7, page_url="https://shop.example/"),
            contexts=((samples.ECOMMERCE_USER, {"id": "u-7", "is_guest": False}),),
        ),
    ]


EXPECTED_USERS = ["u-7", None, "u-atomic", "u-9", None, None, "u-7"]


def user_ids(interactions):
    return [i.get("user_id") for i in sorted(interactions, key=lambda i: i["timestamp"])]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_ecommerce_user_entity_gives_user_id_unless_a_guest(layout):
    interactions = run_all(mapping(ping_duration=False), LAYOUTS[layout](identity_events()))

    assert user_ids(interactions) == EXPECTED_USERS
    assert all(i["anonymous_id"] == "d-visitor-1" for i in interactions), "sent together"
    assert "ann@example.com" not in repr(interactions)


def test_the_ecommerce_user_entity_gives_user_id_in_the_postgres_loader_layout():
    """Real shredded tables (is_guest a boolean column) folded by the shipped view."""
    schema = "miso_test_ecommerce_user"
    try:
        conn = psycopg.connect(postgres_loader.PG_DSN, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is needed on 127.0.0.1:5432 (see README): {error}")
    try:
        postgres_loader.load_events(conn, schema, identity_events(), create=True)
        postgres_loader.create_view(conn, schema)
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {}.events_for_miso ORDER BY collector_tstamp").format(
                    sql.Identifier(schema)
                )
            )
            rows = cur.fetchall()
    finally:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.commit()
        conn.close()
    assert isinstance(rows[0]["contexts"], dict), "JSONB: parsed, not text"

    assert user_ids(run_all(mapping(ping_duration=False), rows)) == EXPECTED_USERS


@pytest.mark.parametrize("is_guest", ["true", "t", "1", 1])
def test_is_guest_read_as_text_or_a_number_still_means_a_guest(is_guest):
    # A Redshift shredded boolean read back as text, or a loader that wrote 1.
    (interaction,) = run_all(mapping(), samples.render_bigquery([cart(1, {"id": "g-1"})]))
    assert interaction["user_id"] == "g-1"
    guest = samples.render_bigquery([cart(1, {"id": "g-1", "is_guest": is_guest})])
    (interaction,) = run_all(mapping(), guest)
    assert "user_id" not in interaction
