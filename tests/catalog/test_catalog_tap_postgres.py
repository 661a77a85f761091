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

from tests.helpers import read_rejects, run_target, tap_postgres_output, write_config
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


ITEMS_MAPPING = {
    "store-items": {
        "kind": "products",
        "filter": "not is_hidden",
        "fields": {
            "product_id": "'p-' + str(sku)",
            "sale_price": "price",
            "custom_attributes.designer": "designer",
            "custom_attributes.model_no": "model_no",
            "custom_attributes.specs": {"column": "specs", "json": True},
        },
        "delete_missing": True,
        "max_delete_fraction": 0.5,
    },
}


@pytest.fixture
def items_db(meltano_installed: None) -> t.Iterator[psycopg.Connection]:
    """store.items: text columns that look like numbers and JSON, a text price, a hidden flag."""
    with fresh_database(DATABASE) as conn:
        conn.execute(
            """
            CREATE SCHEMA store;
            CREATE TABLE store.items (sku integer PRIMARY KEY, price text, designer text,
                model_no text, specs jsonb, is_hidden boolean NOT NULL DEFAULT false);
            INSERT INTO store.items (sku, price, designer, model_no, specs)
                SELECT i, (20 + i)::text, 'Ana Ruiz', '884' || i, '{"cotton": 0.8}'
                FROM generate_series(1, 5) AS i;
            """,
        )
        conn.commit()
        yield conn


def items_output(tmp_path: Path) -> str:
    return tap_postgres_output(
        tmp_path,
        {
            **connection_settings(DATABASE),
            "password": os.environ.get("PGPASSWORD", "postgres"),
            "filter_schemas": ["store"],
            "emit_activate_version_messages": True,
        },
    )


def test_text_attributes_stay_text_and_no_row_read_is_deleted(
    tmp_path: Path, items_db: psycopg.Connection, sandbox: Sandbox
) -> None:
    config = write_config(
        tmp_path,
        sandbox.url,
        catalog_store=str(tmp_path / "catalog.sqlite"),
        mappings=ITEMS_MAPPING,
    )
    first = run_target(config, items_output(tmp_path))
    assert first.returncode == 0, first.stderr
    assert sandbox.products["p-1"] == {
        "product_id": "p-1",
        "sale_price": 21,
        "custom_attributes": {"designer": "Ana Ruiz", "model_no": "8841",
                              "specs": {"cotton": 0.8}},
    }  # fmt: skip
    assert len(sandbox.products) == 5

    # One price the mapping cannot read, one row hidden by the filter, one row removed:
    # only the removed row leaves Miso.
    items_db.execute("UPDATE store.items SET price = 'N/A' WHERE sku = 2")
    items_db.execute("UPDATE store.items SET is_hidden = true WHERE sku = 3")
    items_db.execute("DELETE FROM store.items WHERE sku = 4")
    items_db.commit()
    second = run_target(config, items_output(tmp_path))

    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-4"]
    assert sorted(sandbox.products) == ["p-1", "p-2", "p-3", "p-5"]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["record"]["sku"], r["reasons"]) for r in rejects] == [
        ("mapping", 2, ["sale_price: 'N/A' is not a number"]),
    ]

    # The next run reads the same bad row: it is reported, not written again.
    third = run_target(config, items_output(tmp_path))
    assert third.returncode == 0, third.stderr
    assert len(read_rejects(tmp_path / "rejects.jsonl")) == 1
    assert "Stream 'store-items': 1 row(s) are still set aside" in third.stderr
    assert "4 read, 0 sent and accepted, 2 unchanged (not sent), 1 filtered out" in third.stderr
