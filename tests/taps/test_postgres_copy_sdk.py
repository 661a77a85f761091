"""singer-sdk's standard tap tests for tap-postgres-copy, on a small database of its own.

The SDK builds the test class by running discovery when this module is imported, so the
database is created here at import (and dropped when the module's tests are done).
It has no json/jsonb column: those hold any JSON value, and the SDK's per-attribute tests
(is_boolean, is_object, ...) assume one type per column; test_postgres_copy.py checks them.
"""

from __future__ import annotations

import typing as t

import psycopg
import pytest
from singer_sdk.testing import get_tap_test_class

from target_miso.taps.postgres_copy import TapPostgresCopy
from tests.postgres import ADMIN_DSN, connection_settings, database_name, dsn_for

DATABASE = database_name("target_miso_copy_tap_sdk")


def _create() -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(dsn_for(DATABASE)) as conn:
        conn.execute(
            """
            CREATE SCHEMA shop;
            CREATE TABLE shop.orders (id integer PRIMARY KEY, placed_at timestamptz,
                total numeric, tags text[], note text);
            INSERT INTO shop.orders
                SELECT i, timestamptz '2024-05-01 00:00:00+00' + i * interval '1 minute',
                       i * 1.5,
                       ARRAY['t' || i], CASE WHEN i % 2 = 0 THEN 'even' END
                FROM generate_series(1, 50) AS i;
            CREATE VIEW shop.big_orders AS SELECT id, total FROM shop.orders WHERE total > 30;
            """
        )


@pytest.fixture(scope="module", autouse=True)
def _drop_afterwards() -> t.Iterator[None]:
    yield
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _everything_selected(config: dict[str, t.Any]) -> dict[str, t.Any]:
    # A SQL tap's discovered streams and columns are not selected by default (a catalog says
    # what to read, as Meltano's does); the SDK's dry run cannot select them itself.
    catalog = TapPostgresCopy(config=config).catalog_dict
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            entry["metadata"]["selected"] = True
    return catalog


_create()
CONFIG = {**connection_settings(DATABASE), "filter_schemas": ["shop"]}
TestTapPostgresCopy = get_tap_test_class(
    TapPostgresCopy, config=CONFIG, catalog=_everything_selected(CONFIG)
)
