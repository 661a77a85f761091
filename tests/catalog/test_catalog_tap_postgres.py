"""tap-postgres (a singer-sdk tap) full-table reads of real tables into the target and the sandbox.

singer-sdk taps send ACTIVATE_VERSION before a full-table stream's records (when
``emit_activate_version_messages`` is on), so the deletes run when the input ends.
"""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_target, tap_postgres_output, write_config
from tests.postgres import connection_settings, database_name, fresh_database

if t.TYPE_CHECKING:
    from target_miso.miso.sandbox import Sandbox

pytestmark = pytest.mark.e2e

DATABASE = database_name("target_miso_catalog_e2e")
MAPPINGS = {
    "shop-products": {
        "kind": "products",
        "fields": {
            "product_id": "'p-' + str(sku)",
            "title": "name",
            "sale_price": "price",
            "categories": {"column": "category", "split": "/"},
            "updated_at": "updated_at",
        },
        "delete_missing": True,
    },
    "shop-customers": {
        "kind": "users",
        "fields": {"user_id": "id", "city": "city", "age": "age"},
        "delete_missing": True,
    },
}


@pytest.fixture
def shop_db(meltano_installed: None) -> t.Iterator[psycopg.Connection]:
    """A fresh database with shop.products (10 rows) and shop.customers (3 rows)."""
    with fresh_database(DATABASE) as conn:
        conn.execute(
            """
            CREATE SCHEMA shop;
            CREATE TABLE shop.products (sku integer PRIMARY KEY, name text,
                price numeric(10, 2), category text, updated_at timestamptz);
            INSERT INTO shop.products
                SELECT i, 'Product ' || i, 10 + i / 4.0, 'Toys/Dolls',
                       timestamptz '2024-05-01 12:00:00+02' FROM generate_series(0, 9) AS i;
            CREATE TABLE shop.customers (id text PRIMARY KEY, city text, age integer);
            INSERT INTO shop.customers VALUES ('u-1', 'Oslo', 41), ('u-2', NULL, NULL),
                                              ('u-3', 'Rome', 29);
            """,
        )
        conn.commit()
        yield conn


def tap_output(tmp_path: Path) -> str:
    """Run tap-postgres: discover, select both tables for FULL_TABLE, read them."""
    return tap_postgres_output(
        tmp_path,
        {
            **connection_settings(DATABASE),
            "password": os.environ.get("PGPASSWORD", "postgres"),
            "filter_schemas": ["shop"],
            "emit_activate_version_messages": True,
        },
    )


def expected_product(sku: int, price: float | None = None) -> dict[str, t.Any]:
    return {
        "product_id": f"p-{sku}",
        "title": f"Product {sku}",
        "sale_price": price if price is not None else 10 + sku / 4,
        "categories": [["Toys", "Dolls"]],
        "updated_at": "2024-05-01T10:00:00.000Z",
    }


def test_tables_sync_then_one_change_and_one_removal(
    tmp_path: Path, shop_db: psycopg.Connection, sandbox: Sandbox
) -> None:
    config = write_config(
        tmp_path,
        sandbox.url,
        catalog_store=str(tmp_path / "catalog.sqlite"),
        mappings=MAPPINGS,
    )
    first_input = tap_output(tmp_path)
    assert '"type":"ACTIVATE_VERSION"' in first_input.replace(" ", "")
    first = run_target(config, first_input)

    assert first.returncode == 0, first.stderr
    assert sandbox.products == {f"p-{sku}": expected_product(sku) for sku in range(10)}
    assert sandbox.users == {
        "u-1": {"user_id": "u-1", "city": "Oslo", "age": 41},
        "u-2": {"user_id": "u-2"},
        "u-3": {"user_id": "u-3", "city": "Rome", "age": 29},
    }
    assert sandbox.stats()["deleted"] == {"products": [], "users": []}

    shop_db.execute("UPDATE shop.products SET price = 99.50 WHERE sku = 3")
    shop_db.execute("DELETE FROM shop.products WHERE sku = 7")
    shop_db.commit()
    uploads_before = sandbox.stats()["requests_by_path"]["/v1/products"]
    second = run_target(config, tap_output(tmp_path))

    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["deleted"] == {"products": ["p-7"], "users": []}
    assert sandbox.products == {
        f"p-{sku}": expected_product(sku, 99.5 if sku == 3 else None)
        for sku in range(10)
        if sku != 7
    }
    assert sandbox.stats()["requests_by_path"]["/v1/products"] == uploads_before + 1
    assert "9 read, 1 sent and accepted, 8 unchanged (not sent)" in second.stderr
    assert "3 read, 0 sent and accepted, 3 unchanged (not sent)" in second.stderr
