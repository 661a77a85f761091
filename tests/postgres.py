"""The Postgres the tests use, and fresh databases of their own.

``TARGET_MISO_TEST_PG`` names the server and a database that exists (default: the machine's
``test`` database under trust auth). ``TARGET_MISO_TEST_DB_SUFFIX`` is appended to every database
the tests create, so two checkouts can run their Postgres tests at once without dropping each
other's databases (point ``TARGET_MISO_TEST_PG`` at a database of each checkout's own as well:
the view tests make schemas in it).
"""

from __future__ import annotations

import contextlib
import os
import typing as t

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ADMIN_DSN = os.environ.get(
    "TARGET_MISO_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
_SUFFIX = os.environ.get("TARGET_MISO_TEST_DB_SUFFIX", "")


def database_name(base: str) -> str:
    """The name a test's own database gets in this checkout."""
    return f"{base}{_SUFFIX}"


def dsn_for(database: str) -> str:
    """ADMIN_DSN's server and user, connected to ``database``."""
    return make_conninfo(ADMIN_DSN, dbname=database)


def connection_settings(database: str) -> dict[str, t.Any]:
    """tap-postgres's host/port/user/database settings for ``database`` on the test server."""
    params = conninfo_to_dict(ADMIN_DSN)
    return {
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)),
        "user": params.get("user", "postgres"),
        "database": database,
    }


def _drop(database: str) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@contextlib.contextmanager
def fresh_database(database: str) -> t.Iterator[psycopg.Connection]:
    """Drop and create ``database``, yield a connection to it, drop it afterwards."""
    _drop(database)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    try:
        with psycopg.connect(dsn_for(database)) as conn:
            yield conn
    finally:
        _drop(database)


def create_web_events(conn: psycopg.Connection, first: int, last: int) -> None:
    """Create web.events with interaction-shaped rows ``first``..``last``: one product view each.

    Row ``i`` has seq ``i``, product ``sku-i``, user ``user-(i mod 97)``, one second apart.
    """
    conn.execute(
        """
        CREATE SCHEMA web;
        CREATE TABLE web.events (seq integer PRIMARY KEY, type text, user_id text,
            "timestamp" timestamptz, product_ids text[]);
        """,
    )
    conn.execute(
        """
        INSERT INTO web.events
            SELECT i, 'product_detail_page_view', 'user-' || (i %% 97),
                   timestamptz '2024-05-01 00:00:00+00' + i * interval '1 second',
                   ARRAY['sku-' || i]
            FROM generate_series(%s::integer, %s::integer) AS i
        """,
        (first, last),
    )
    conn.commit()


@contextlib.contextmanager
def scratch_schema(schema: str) -> t.Iterator[psycopg.Connection]:
    """Connect to ADMIN_DSN's database; drop ``schema`` (made by the test) afterwards.

    Fails the test, naming the README, when Postgres cannot be reached.
    """
    try:
        conn = psycopg.connect(ADMIN_DSN, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is needed on 127.0.0.1:5432 (see README): {error}")
    try:
        yield conn
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.commit()
        conn.close()
