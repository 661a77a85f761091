"""Catalog sync through the real target process into the sandbox: records, changes, deletes."""

from __future__ import annotations

import json
import typing as t

import pytest
import requests

from tests.helpers import (
    API_KEY,
    read_rejects,
    record_message,
    run_target,
    schema_message,
    state_message,
    write_config,
)

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_miso.miso.sandbox import Sandbox

PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "sku": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "price": {"type": ["number", "null"]},
        "category_path": {"type": ["string", "null"]},
        "in_stock": {"type": ["boolean", "null"]},
        "updated": {"type": ["string", "null"], "format": "date-time"},
    },
}
USER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "city": {"type": ["string", "null"]},
        "age": {"type": ["integer", "null"]},
    },
}
PRODUCT_MAPPING = {
    "kind": "products",
    "fields": {
        "product_id": "'p-' + str(sku)",
        "title": "name",
        "sale_price": "price",
        "categories": {"column": "category_path", "split": ">"},
        "availability": "'IN_STOCK' if in_stock else 'OUT_OF_STOCK'",
        "updated_at": "updated",
    },
}
USER_MAPPING = {"kind": "users", "fields": {"user_id": "id", "city": "city", "age": "age"}}


def product_row(sku: int, **changes: t.Any) -> dict[str, t.Any]:
    """A products table row."""
    row = {
        "sku": sku,
        "name": f"Product {sku}",
        "price": 10 + sku / 4,
        "category_path": "Toys > Dolls",
        "in_stock": sku % 2 == 0,
        "updated": "2024-05-01 10:00:00",
    }
    row.update(changes)
    return row


def expected_product(sku: int, **changes: t.Any) -> dict[str, t.Any]:
    """The Miso record ``product_row(sku)`` maps to."""
    record = {
        "product_id": f"p-{sku}",
        "title": f"Product {sku}",
        "sale_price": 10 + sku / 4,
        "categories": [["Toys", "Dolls"]],
        "availability": "IN_STOCK" if sku % 2 == 0 else "OUT_OF_STOCK",
        "updated_at": "2024-05-01T10:00:00.000Z",
    }
    record.update(changes)
    return record


def activate_version(stream: str, version: int = 1) -> str:
    """Return an ACTIVATE_VERSION line."""
    return json.dumps({"type": "ACTIVATE_VERSION", "stream": stream, "version": version})


def catalog_input(
    stream: str,
    schema: dict[str, t.Any],
    rows: list[dict[str, t.Any]],
    *,
    full_table: str | None = None,
) -> list[str]:
    """Singer lines for one stream; ``full_table`` puts ACTIVATE_VERSION at start or end."""
    lines = [schema_message(stream, schema)]
    if full_table == "start":
        lines.append(activate_version(stream))
    lines += [record_message(row, stream) for row in rows]
    if full_table == "end":
        lines.append(activate_version(stream))
    lines.append(state_message({"bookmarks": {stream: {"version": 1}}}))
    return lines


def run(config: Path, *line_groups: list[str]):
    """Run the target on the concatenated lines."""
    lines = [line for group in line_groups for line in group]
    return run_target(config, "\n".join(lines) + "\n")


@pytest.fixture
def products_config(tmp_path: Path, sandbox: Sandbox) -> t.Callable[..., Path]:
    """Write a config with a products stream (options added to its mapping entry)."""

    def make(**options: t.Any) -> Path:
        settings = options.pop("settings", {})
        # Both catalog streams are configured and most tests feed only one of them.
        settings.setdefault("unmatched_mappings", "warn")
        return write_config(
            tmp_path,
            sandbox.url,
            catalog_store=str(tmp_path / "catalog.sqlite"),
            catalog_batch_size_rows=2,
            mappings={"products": {**PRODUCT_MAPPING, **options}, "users": USER_MAPPING},
            **settings,
        )

    return make


def test_products_and_users_sync_exact_records(sandbox: Sandbox, products_config) -> None:
    config = products_config()
    users = [{"id": "u-1", "city": "Oslo", "age": 41}, {"id": "u-2", "city": None, "age": None}]
    result = run(
        config,
        catalog_input("products", PRODUCT_SCHEMA, [product_row(sku) for sku in range(5)]),
        catalog_input("users", USER_SCHEMA, users),
    )
    assert result.returncode == 0, result.stderr
    assert sandbox.products == {f"p-{sku}": expected_product(sku) for sku in range(5)}
    assert sandbox.users == {
        "u-1": {"user_id": "u-1", "city": "Oslo", "age": 41},
        "u-2": {"user_id": "u-2"},
    }
    by_path = sandbox.stats()["requests_by_path"]
    assert by_path["/v1/products"] == 3  # 5 records, catalog_batch_size_rows=2
    assert by_path["/v1/users"] == 1
    assert "/v1/interactions" not in by_path
    assert result.states[-1] == {"bookmarks": {"users": {"version": 1}}}
    assert "catalog stream products (products): 5 read, 5 sent and accepted" in result.stderr


def test_second_run_sends_only_the_changed_row(sandbox: Sandbox, products_config) -> None:
    config = products_config()
    rows = [product_row(sku) for sku in range(5)]
    first = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))
    assert first.returncode == 0, first.stderr
    sandbox.reset()  # from here on, the sandbox holds only what the second run sends

    rows[3] = product_row(3, price=99.5)
    second = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))

    assert second.returncode == 0, second.stderr
    assert sandbox.products == {"p-3": expected_product(3, sale_price=99.5)}
    assert sandbox.stats()["requests_by_path"] == {"/v1/products": 1}
    assert "5 read, 1 sent and accepted, 4 unchanged (not sent)" in second.stderr


def test_hashes_are_kept_only_for_records_miso_accepted(sandbox: Sandbox, products_config) -> None:
    config = products_config(settings={"max_retries": 0})
    rows = [product_row(sku) for sku in range(4)]
    sandbox.set_faults(fail_all_status=503)
    failed = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))
    assert failed.returncode == 1
    assert failed.states == []

    sandbox.set_faults()
    again = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))
    assert again.returncode == 0, again.stderr
    assert sandbox.products == {f"p-{sku}": expected_product(sku) for sku in range(4)}
    assert "4 read, 4 sent and accepted, 0 unchanged" in again.stderr


@pytest.mark.parametrize("position", ["start", "end"])
def test_full_table_sync_deletes_exactly_the_removed_row(
    sandbox: Sandbox, products_config, position: str
) -> None:
    # singer-sdk taps announce the version before the records, singer-python taps after.
    config = products_config(delete_missing=True)
    rows = [product_row(sku) for sku in range(20)]
    first = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table=position))
    assert first.returncode == 0, first.stderr
    assert sandbox.stats()["deleted"]["products"] == []

    del rows[7]
    second = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table=position))

    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-7"]
    assert set(sandbox.products) == {f"p-{sku}" for sku in range(20) if sku != 7}
    assert "deleted 1 of 20 products that the full-table sync no longer has" in second.stderr


def test_deleted_id_is_sent_again_when_it_comes_back(sandbox: Sandbox, products_config) -> None:
    config = products_config(delete_missing=True)
    rows = [product_row(sku) for sku in range(20)]
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows[1:], full_table="end"))
    assert "p-0" not in sandbox.products

    back = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert back.returncode == 0, back.stderr
    assert sandbox.products["p-0"] == expected_product(0)
    assert "20 read, 1 sent and accepted, 19 unchanged" in back.stderr


def test_a_delete_over_the_limit_is_refused_and_deletes_nothing(
    sandbox: Sandbox, products_config
) -> None:
    config = products_config(delete_missing=True)
    rows = [product_row(sku) for sku in range(10)]
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="start"))
    assert len(sandbox.products) == 10

    truncated = run(config, catalog_input("products", PRODUCT_SCHEMA, rows[:8], full_table="start"))

    assert truncated.returncode == 1
    assert (
        "the full-table sync would delete 2 of 10 products in Miso (20.0%), more than "
        "mappings.products.max_delete_fraction=0.1 allows; nothing was deleted"
    ) in truncated.stderr
    assert sandbox.stats()["deleted"]["products"] == []
    assert len(sandbox.products) == 10
    assert "/v1/products/_delete" not in sandbox.stats()["requests_by_path"]


def test_the_limit_can_be_raised_for_a_run(sandbox: Sandbox, products_config) -> None:
    rows = [product_row(sku) for sku in range(10)]
    run(products_config(), catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))

    config = products_config(delete_missing=True, max_delete_fraction=0.5)
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, rows[3:], full_table="end"))

    assert result.returncode == 0, result.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-0", "p-1", "p-2"]


def test_dry_run_lists_the_ids_and_deletes_nothing(sandbox: Sandbox, products_config) -> None:
    rows = [product_row(sku) for sku in range(20)]
    run(products_config(), catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))

    config = products_config(delete_missing=True, delete_dry_run=True)
    kept = [row for row in rows if row["sku"] not in (4, 11)]
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, kept, full_table="end"))

    assert result.returncode == 0, result.stderr
    assert sandbox.stats()["deleted"]["products"] == []
    assert len(sandbox.products) == 20
    assert "Stream 'products': would delete products: p-11, p-4" in result.stderr
    assert "dry run, would delete 2: p-11, p-4" in result.stderr  # the run summary


def test_without_delete_missing_a_full_table_sync_deletes_nothing(
    sandbox: Sandbox, products_config
) -> None:
    rows = [product_row(sku) for sku in range(5)]
    run(products_config(), catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    result = run(
        products_config(), catalog_input("products", PRODUCT_SCHEMA, rows[:2], full_table="end")
    )
    assert result.returncode == 0, result.stderr
    assert len(sandbox.products) == 5
    assert "/v1/products/_ids" not in sandbox.stats()["requests_by_path"]


def test_invalid_products_are_set_aside_with_reasons_and_the_rest_delivered(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    config = products_config(
        fields={**PRODUCT_MAPPING["fields"], "product_id": "name", "rating": "price"},
    )
    rows = [
        {"sku": 1, "name": "ok-1", "price": 4.5},
        {"sku": 2, "name": "_hidden", "price": 3},
        {"sku": 3, "name": "a,b", "price": 9},
        {"sku": 4, "name": "ok-4", "price": 1},
    ]
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))

    assert result.returncode == 0, result.stderr
    assert sandbox.products == {
        "ok-1": {"product_id": "ok-1", "title": "ok-1", "sale_price": 4.5, "rating": 4.5,
                 "availability": "OUT_OF_STOCK"},
        "ok-4": {"product_id": "ok-4", "title": "ok-4", "sale_price": 1, "rating": 1,
                 "availability": "OUT_OF_STOCK"},  # in_stock is null
    }  # fmt: skip
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stream"], r["stage"], r["record"]["sku"], r["reasons"]) for r in rejects] == [
        ("products", "validation", 2, ["product_id: must not start with '_'"]),
        (
            "products",
            "validation",
            3,
            ["product_id: must not contain ','", "rating: 9 is not a number from 0 to 5"],
        ),
    ]
    assert rejects[1]["interaction"]["product_id"] == "a,b"


def test_values_miso_cannot_take_set_a_product_aside_and_the_run_goes_on(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    config = products_config()
    lines = catalog_input("products", PRODUCT_SCHEMA, [product_row(1), product_row(4)])
    poison = {
        "a lone surrogate": '"name": "Doll \\ud800"',
        "NaN": '"price": NaN',
        "an integer beyond 64 bits": '"price": 123456789012345678901234567890',
    }
    for sku, field in enumerate(poison.values(), start=2):
        lines.insert(
            -1, f'{{"type": "RECORD", "stream": "products", "record": {{"sku": {sku}, {field}}}}}'
        )

    result = run(config, lines)

    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(sandbox.products) == ["p-1", "p-4"]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["reasons"][0].partition(":")[0]) for r in rejects] == [
        ("validation", "title"),
        ("validation", "sale_price"),
        ("validation", "sale_price"),
    ]


def test_records_miso_refuses_are_set_aside_and_the_rest_resent(
    tmp_path: Path, sandbox_factory, products_config
) -> None:
    sandbox = sandbox_factory(reject_user_ids=["u-2"])
    config = write_config(
        tmp_path,
        sandbox.url,
        catalog_store=None,
        mappings={"users": USER_MAPPING},
    )
    users = [{"id": f"u-{n}", "city": "Rome", "age": 30 + n} for n in range(4)]
    result = run(config, catalog_input("users", USER_SCHEMA, users))

    assert result.returncode == 0, result.stderr
    assert sorted(sandbox.users) == ["u-0", "u-1", "u-3"]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["record"]["id"]) for r in rejects] == [("miso", "u-2")]


def test_wait_for_tasks_polls_every_upload_task(sandbox: Sandbox, products_config) -> None:
    config = products_config(settings={"wait_for_tasks": True})
    rows = [product_row(sku) for sku in range(5)]
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))

    assert result.returncode == 0, result.stderr
    status_requests = {
        path: count
        for path, count in sandbox.stats()["requests_by_path"].items()
        if path.startswith("/v1/products/_status/")
    }
    assert len(status_requests) == 3  # one task per upload request
    assert set(status_requests.values()) == {1}


def test_dry_run_setting_stores_no_hashes(sandbox: Sandbox, products_config) -> None:
    rows = [product_row(sku) for sku in range(3)]
    dry = run(products_config(settings={"dry_run": True}),
              catalog_input("products", PRODUCT_SCHEMA, rows))  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert sandbox.products == {}

    real = run(products_config(), catalog_input("products", PRODUCT_SCHEMA, rows))
    assert real.returncode == 0, real.stderr
    assert len(sandbox.products) == 3


def test_a_mistake_in_a_catalog_entry_stops_the_run_before_any_record(
    sandbox: Sandbox, products_config
) -> None:
    config = products_config(fields={"product_id": "sku", "titel": "name"})
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, [product_row(1)]))
    assert result.returncode != 0
    assert "mappings.products.fields.titel: 'titel' is not a Miso product field" in result.stderr
    assert sandbox.stats()["requests_total"] == 0


def test_a_failed_task_stops_the_run_without_state_and_the_records_are_resent(
    sandbox: Sandbox, products_config
) -> None:
    config = products_config(settings={"wait_for_tasks": True})
    rows = [product_row(sku) for sku in range(3)]
    sandbox.set_faults(task_status="failed")
    failed = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))

    assert failed.returncode == 1
    assert failed.states == []
    assert "stream 'products': Miso task" in failed.stderr
    assert "on products failed" in failed.stderr

    sandbox.set_faults()
    sandbox.reset()
    again = run(config, catalog_input("products", PRODUCT_SCHEMA, rows))
    assert again.returncode == 0, again.stderr
    assert len(sandbox.products) == 3  # no hash was kept for the failed task's records


def test_users_removed_from_the_table_are_deleted(tmp_path: Path, sandbox: Sandbox) -> None:
    users = [{"id": f"u-{n}", "city": "Rome", "age": 30} for n in range(4)]
    mapping = {**USER_MAPPING, "delete_missing": True, "max_delete_fraction": 0.25}
    config = write_config(tmp_path, sandbox.url, catalog_store=str(tmp_path / "h.sqlite"),
                          mappings={"users": mapping})  # fmt: skip
    run(config, catalog_input("users", USER_SCHEMA, users, full_table="start"))
    result = run(config, catalog_input("users", USER_SCHEMA, users[:2] + users[3:],
                                       full_table="start"))  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert sandbox.stats()["deleted"]["users"] == ["u-2"]
    assert sorted(sandbox.users) == ["u-0", "u-1", "u-3"]


def test_an_emptied_table_deletes_in_requests_of_1000_ids_when_allowed(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    mapping = {**PRODUCT_MAPPING, "delete_missing": True, "max_delete_fraction": 1}
    config = write_config(tmp_path, sandbox.url, catalog_store=str(tmp_path / "h.sqlite"),
                          mappings={"products": mapping})  # fmt: skip
    rows = [product_row(sku) for sku in range(1005)]
    loaded = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert loaded.returncode == 0, loaded.stderr
    assert len(sandbox.products) == 1005

    # An empty full-table read: ACTIVATE_VERSION without records; deletes at the input's end.
    emptied = run(config, catalog_input("products", PRODUCT_SCHEMA, [], full_table="end"))

    assert emptied.returncode == 0, emptied.stderr
    assert sandbox.products == {}
    assert sandbox.stats()["requests_by_path"]["/v1/products/_delete"] == 2
    assert "deleted 1005 of 1005 products" in emptied.stderr


def test_a_record_deleted_behind_the_target_is_sent_again_after_a_full_sync(
    sandbox: Sandbox, products_config
) -> None:
    config = products_config(delete_missing=True)
    rows = [product_row(sku) for sku in range(10)]
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    deleted = requests.post(
        f"{sandbox.url}/v1/products/_delete",
        json={"data": {"product_ids": ["p-5"]}},
        headers={"X-API-KEY": API_KEY},
        timeout=10,
    )
    assert deleted.status_code == 200

    # The hash says Miso has p-5; the full sync sees it does not and forgets the hash ...
    noticed = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert "10 read, 0 sent and accepted, 10 unchanged" in noticed.stderr
    # ... so the next run sends it again.
    healed = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert "10 read, 1 sent and accepted, 9 unchanged" in healed.stderr
    assert sandbox.products["p-5"] == expected_product(5)


# --- Custom attributes keep their source type ---------------------------------------------


def test_custom_attributes_arrive_with_the_type_of_their_column(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    fields = {
        **PRODUCT_MAPPING["fields"],
        "custom_attributes.designer": "designer",
        "custom_attributes.model_no": "model_no",
        "custom_attributes.in_stock": "in_stock",
        "custom_attributes.specs": {"column": "specs", "json": True},
    }
    config = products_config(fields=fields)
    schema = {"type": "object", "properties": {
        **PRODUCT_SCHEMA["properties"],
        "designer": {"type": ["string", "null"]},
        "model_no": {"type": ["string", "null"]},
        "specs": {"type": ["string", "null"]},
    }}  # fmt: skip
    rows = [
        product_row(1, designer="Ana Ruiz", model_no="8841", specs='{"cotton": 0.8}'),
        product_row(2, designer="Bo", model_no="0077", specs="not json"),
    ]
    result = run(config, catalog_input("products", schema, rows))

    assert result.returncode == 0, result.stderr
    assert sandbox.products == {
        "p-1": expected_product(
            1,
            custom_attributes={"designer": "Ana Ruiz", "model_no": "8841", "in_stock": False,
                               "specs": {"cotton": 0.8}},
        ),
    }  # fmt: skip
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["reasons"]) for r in rejects] == [
        ("mapping", ["custom_attributes.specs: 'not json' is not valid JSON"]),
    ]


# --- No row read in the run is deleted --------------------------------------------------


@pytest.mark.parametrize("position", ["start", "end"])
def test_a_row_set_aside_by_the_mapping_is_not_deleted(
    tmp_path: Path, sandbox: Sandbox, products_config, position: str
) -> None:
    config = products_config(delete_missing=True)
    rows = [product_row(sku) for sku in range(10)]
    first = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table=position))
    assert first.returncode == 0, first.stderr

    rows[3] = product_row(3, price="N/A")  # the mapping cannot make a sale_price of it
    second = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table=position))

    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["deleted"]["products"] == []
    assert sandbox.products["p-3"] == expected_product(3)  # the live product stays as it was
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [(r["stage"], r["record"]["sku"], r["reasons"]) for r in rejects] == [
        ("mapping", 3, ["sale_price: 'N/A' is not a number"]),
    ]


def test_rows_the_filter_skips_are_not_deleted_unless_asked(
    sandbox: Sandbox, products_config
) -> None:
    rows = [product_row(sku) for sku in range(10)]
    run(products_config(), catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert len(sandbox.products) == 10

    # sku 4 is hidden now: skipped by the filter, so not sent, and kept in Miso ...
    hidden = [product_row(sku, name=f"Hidden {sku}") if sku == 4 else row
              for sku, row in enumerate(rows)]  # fmt: skip
    keep = products_config(delete_missing=True, filter="not name.startswith('Hidden')")
    kept = run(keep, catalog_input("products", PRODUCT_SCHEMA, hidden, full_table="end"))
    assert kept.returncode == 0, kept.stderr
    assert sandbox.stats()["deleted"]["products"] == []
    assert sandbox.products["p-4"] == expected_product(4)
    assert "10 read, 0 sent and accepted, 9 unchanged (not sent), 1 filtered out" in kept.stderr

    # ... unless delete_filtered says a filtered row is gone from the catalog.
    drop = products_config(
        delete_missing=True, filter="not name.startswith('Hidden')", delete_filtered=True
    )
    dropped = run(drop, catalog_input("products", PRODUCT_SCHEMA, hidden, full_table="end"))
    assert dropped.returncode == 0, dropped.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-4"]


def test_a_row_without_a_computable_id_holds_every_delete(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    fields = {**PRODUCT_MAPPING["fields"], "product_id": "'p-' + str(int(sku))"}
    config = products_config(delete_missing=True, fields=fields)
    rows = [product_row(sku) for sku in range(10)]
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="start"))

    # Row 2's sku is broken: it could be any product, so not even p-7 (gone) is deleted.
    changed = [{**rows[2], "sku": "2x"}] + [row for row in rows if row["sku"] not in (2, 7)]
    result = run(config, catalog_input("products", PRODUCT_SCHEMA, changed, full_table="start"))

    assert result.returncode == 0, result.stderr
    assert sandbox.stats()["deleted"]["products"] == []
    assert len(sandbox.products) == 10
    assert (
        "Stream 'products': 1 row(s) of the full-table sync were set aside before their "
        "product_id could be computed"
    ) in result.stderr
    assert "no deletes: 1 row(s) without a computable product_id" in result.stderr
    assert sandbox.stats()["requests_by_path"]["/v1/products/_ids"] == 1  # the first run's


# --- Rows set aside once are not written again while unchanged ----------------------------


def test_an_unchanged_invalid_row_is_written_to_the_rejects_file_once(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    fields = {**PRODUCT_MAPPING["fields"], "product_id": "'p-' + str(int(sku))", "url": "link"}
    config = products_config(fields=fields)
    link = {"link": {"type": ["string", "null"]}}
    schema = {"type": "object", "properties": {**PRODUCT_SCHEMA["properties"], **link}}
    rejects_path = tmp_path / "rejects.jsonl"
    rows = [product_row(sku) for sku in range(10)]
    rows[2] = product_row(2, link="no url")  # refused at validation
    rows[3] = product_row(3, price="N/A")  # refused by the mapping
    rows[5] = {**rows[5], "sku": "five"}  # no id at all: remembered by its content
    runs = [run(config, catalog_input("products", schema, rows, full_table="end"))
            for _ in range(3)]  # fmt: skip

    assert [r.returncode for r in runs] == [0, 0, 0]
    assert [(r["stage"], r["record"]["sku"]) for r in read_rejects(rejects_path)] == [
        ("validation", 2),
        ("mapping", 3),
        ("mapping", "five"),
    ]
    assert "still rejected" not in runs[0].stderr
    for later in runs[1:]:
        assert "set aside: 0" in later.stderr
        assert "3 still rejected (unchanged since an earlier run wrote them" in later.stderr
        assert (
            "Stream 'products': 3 row(s) are still set aside, unchanged since an earlier run "
            f"wrote them and their reasons to the rejects file {rejects_path}"
        ) in later.stderr

    # A changed row is written again; a fixed row is sent and forgotten, so that breaking
    # it again the same way writes it again.
    rows[3] = product_row(3, price="free")
    rows[2] = product_row(2)
    changed = run(config, catalog_input("products", schema, rows, full_table="end"))
    assert "1 sent and accepted" in changed.stderr
    assert "1 still rejected" in changed.stderr
    rows[2] = product_row(2, link="no url")
    broken = run(config, catalog_input("products", schema, rows, full_table="end"))
    assert [(r["stage"], r["record"]["sku"]) for r in read_rejects(rejects_path)[3:]] == [
        ("mapping", 3),
        ("validation", 2),
    ]
    assert "2 still rejected" in broken.stderr  # sku 3 ("free") and the row without an id


def test_a_row_gone_from_a_full_read_is_forgotten_and_written_again_if_it_returns(
    tmp_path: Path, sandbox: Sandbox, products_config
) -> None:
    config = products_config()
    bad = product_row(3, price="N/A")
    rows = [product_row(1), bad]
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    run(config, catalog_input("products", PRODUCT_SCHEMA, rows[:1], full_table="end"))
    back = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    assert "still rejected" not in back.stderr
    assert len(read_rejects(tmp_path / "rejects.jsonl")) == 2


# --- wait_for_tasks says when there is no task to wait for -------------------------------


def test_wait_for_tasks_warns_when_an_answer_carries_no_task_id(
    tmp_path: Path, sandbox_factory
) -> None:
    sandbox = sandbox_factory(omit_task_id=True)
    config = write_config(
        tmp_path,
        sandbox.url,
        catalog_store=str(tmp_path / "h.sqlite"),
        catalog_batch_size_rows=2,
        wait_for_tasks=True,
        mappings={"products": {**PRODUCT_MAPPING, "delete_missing": True,
                               "max_delete_fraction": 0.5}},
    )  # fmt: skip
    rows = [product_row(sku) for sku in range(5)]
    first = run(config, catalog_input("products", PRODUCT_SCHEMA, rows, full_table="end"))
    second = run(config, catalog_input("products", PRODUCT_SCHEMA, rows[1:], full_table="end"))

    assert first.returncode == 0, first.stderr
    assert (
        "Stream 'products': POST /v1/products answered without data.task_id, so "
        "wait_for_tasks cannot check that Miso processed its 2 record(s)"
    ) in first.stderr
    assert first.stderr.count("answered without data.task_id") == 1  # then only counted
    assert "5 record(s) or id(s) answered without a task id (not waited for)" in first.stderr
    assert second.returncode == 0, second.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-0"]
    assert (
        "Stream 'products': POST /v1/products/_delete answered without data.task_id"
    ) in second.stderr
    assert "4 read, 0 sent and accepted, 4 unchanged" in second.stderr  # hashes were kept
