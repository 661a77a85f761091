"""docs/catalog.md's examples, run as they are written: its mappings, messages and outputs.

Its tap-postgres block is run through `meltano run` in tests/e2e/test_meltano_catalog.py.
"""

from __future__ import annotations

import hashlib
import re
import typing as t

import requests
import yaml

from target_miso.miso.sandbox import DEFAULT_PORT
from tests.helpers import (
    ROOT,
    read_rejects,
    record_message,
    run_target,
    schema_message,
    state_message,
    write_config,
)
from tests.markdown import code_blocks

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_miso.miso.sandbox import Sandbox

DOC = "docs/catalog.md"
PRODUCTS, CUSTOMERS = "public-products", "public-customers"
PRODUCT_SCHEMA = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "parent_sku": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "description": {"type": ["string", "null"]},
        "category_path": {"type": ["string", "null"]},
        "tags": {"type": ["string", "null"]},
        "image_url": {"type": ["string", "null"]},
        "price": {"type": ["number", "string", "null"]},
        "stock": {"type": ["integer", "null"]},
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
        "designer": {"type": ["string", "null"]},
        "model_no": {"type": ["string", "null"]},
        "specs_json": {"type": ["string", "null"]},
        "is_hidden": {"type": "boolean"},
    },
}
CUSTOMER_SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string"},
        "city": {"type": ["string", "null"]},
        "country_code": {"type": ["string", "null"]},
    },
}


def docs_text() -> str:
    """The doc with its lines joined, as a reader sees its sentences."""
    return " ".join((ROOT / DOC).read_text().split())


def quoted(prefix: str) -> str:
    """The message the doc quotes (in backticks) that starts with ``prefix``, without `...`."""
    found = re.search(r"`(" + re.escape(prefix) + r"[^`]*)`", docs_text())
    assert found, f"docs/catalog.md quotes no message starting {prefix!r}"
    return found.group(1).removesuffix("...").removesuffix("(...)").strip()


def docs_mappings() -> dict[str, t.Any]:
    """The `mappings` of the doc's first example, exactly as written."""
    (block,) = [b for b in code_blocks(DOC, "yaml") if "loaders:" in b]
    (loader,) = yaml.safe_load(block)["plugins"]["loaders"]
    return loader["config"]["mappings"]


def product(number: int, **changes: t.Any) -> dict[str, t.Any]:
    row = {
        "sku": f"p-{number}",
        "parent_sku": "g-1",
        "name": "Wool scarf",
        "description": "Warm.",
        "category_path": "Clothing > Scarves",
        "tags": '["winter", "wool"]',
        "image_url": f"https://shop.example/img/p-{number}.jpg",
        "price": 24.5,
        "stock": 3,
        "updated_at": "2024-05-01T12:00:00+02:00",
        "designer": "Ana Ruiz",
        "model_no": "8841",
        "specs_json": '{"wool": 1.0}',
        "is_hidden": False,
    }
    row.update(changes)
    return row


def feed(
    products: list[dict[str, t.Any]],
    customers: list[dict[str, t.Any]] = (),  # type: ignore[assignment]
) -> str:
    """A full-table read (singer-sdk order: ACTIVATE_VERSION first) of both tables."""
    lines = []
    for stream, schema, rows in ((PRODUCTS, PRODUCT_SCHEMA, products),
                                 (CUSTOMERS, CUSTOMER_SCHEMA, customers)):  # fmt: skip
        lines.append(schema_message(stream, schema))
        lines.append(f'{{"type": "ACTIVATE_VERSION", "stream": "{stream}", "version": 1}}')
        lines += [record_message(row, stream) for row in rows]
    lines.append(state_message({"bookmarks": {PRODUCTS: {"version": 1}}}))
    return "\n".join(lines) + "\n"


def config_for(tmp_path: Path, sandbox: Sandbox, **settings: t.Any) -> Path:
    mappings = settings.pop("mappings", docs_mappings())
    return write_config(
        tmp_path,
        sandbox.url,
        catalog_store=str(tmp_path / "catalog.sqlite"),
        mappings=mappings,
        **settings,
    )


def test_the_example_mapping_sends_exactly_what_the_comments_say(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    customers = [{"email": "ana@example.com", "city": "Oslo", "country_code": "NO"}]
    rows = [product(1), product(2, stock=0, is_hidden=True)]
    result = run_target(config_for(tmp_path, sandbox), feed(rows, customers))

    assert result.returncode == 0, result.stderr
    assert sandbox.products == {
        "p-1": {
            "product_id": "p-1",
            "product_group_id": "g-1",
            "title": "Wool scarf",
            "description": "Warm.",
            "categories": [["Clothing", "Scarves"]],
            "tags": ["winter", "wool"],
            "url": "https://shop.example/p/p-1",
            "cover_image": "https://shop.example/img/p-1.jpg",
            "sale_price": 24.5,
            "availability": "IN_STOCK",
            "updated_at": "2024-05-01T10:00:00.000Z",
            "custom_attributes": {"designer": "Ana Ruiz", "model_no": "8841",
                                  "specs": {"wool": 1.0}},
        },
    }  # fmt: skip
    user_id = hashlib.sha256(b"ana@example.com").hexdigest()
    assert sandbox.users == {user_id: {"user_id": user_id, "city": "Oslo", "country": "NO"}}


def test_the_messages_the_doc_quotes_are_the_targets(tmp_path: Path, sandbox: Sandbox) -> None:
    # A mistake in a field name.
    mappings = docs_mappings()
    mappings[PRODUCTS]["fields"]["titel"] = mappings[PRODUCTS]["fields"].pop("title")
    typo = run_target(config_for(tmp_path, sandbox, mappings=mappings), feed([product(1)]))
    assert quoted("mappings.public-products.fields.titel:") in typo.stderr

    # A record that fails validation.
    config = config_for(tmp_path, sandbox)
    invalid = run_target(config, feed([product(1, sku="_p-1")]))
    (reject,) = read_rejects(tmp_path / "rejects.jsonl")
    assert reject["reasons"] == [quoted("product_id: must not start")]
    assert invalid.returncode == 0, invalid.stderr

    # A full-table read missing 2 of 10 products: refused by max_delete_fraction ...
    ten = [product(n) for n in range(1, 11)]
    assert run_target(config, feed(ten)).returncode == 0
    refused = run_target(config, feed(ten[:8]))
    assert refused.returncode == 1
    assert quoted("stream 'public-products': the full-table sync would delete") in refused.stderr

    # ... and a dry run of 20 products of which p-4 and p-11 are gone.
    twenty = [product(n) for n in range(1, 21)]
    assert run_target(config, feed(twenty)).returncode == 0
    dry_mappings = docs_mappings()
    dry_mappings[PRODUCTS]["delete_dry_run"] = True
    dry = run_target(
        config_for(tmp_path, sandbox, mappings=dry_mappings),
        feed([row for row in twenty if row["sku"] not in ("p-4", "p-11")]),
    )
    assert dry.returncode == 0, dry.stderr
    assert quoted("Stream 'public-products': would delete") in dry.stderr
    assert sandbox.stats()["deleted"]["products"] == []


def output_pattern(example: str) -> re.Pattern[str]:
    """A line of the doc's sample output, with its numbers and file paths as wildcards."""
    pattern = re.escape(example.replace("output/dev/miso-rejects.jsonl", "<PATH>"))
    pattern = re.sub(r"\d+", r"\\d+", pattern).replace("<PATH>", r"\S+")
    return re.compile(pattern)


def test_the_sample_outputs_are_what_the_target_writes(tmp_path: Path, sandbox: Sandbox) -> None:
    config = config_for(tmp_path, sandbox)
    rows = [product(n) for n in range(1, 11)]
    rows[2] = product(3, price="N/A")
    run_target(config, feed(rows))
    rows[5] = product(6, price=19.9)
    again = run_target(config, feed(rows))
    assert again.returncode == 0, again.stderr

    outputs = [b for b in code_blocks(DOC, "") if "catalog stream public-products" in b]
    lines = [line for block in outputs for line in block.splitlines() if line.strip()]
    assert len(lines) == 3
    for line in lines:
        assert output_pattern(line).search(again.stderr), line


def test_try_it_talks_to_the_dev_environments_sandbox(sandbox: Sandbox) -> None:
    (block,) = code_blocks(DOC, "sh")
    assert f"target-miso-sandbox --port {DEFAULT_PORT} &" in block
    assert "meltano run tap-postgres target-miso" in block
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (dev,) = [e for e in project["environments"] if e["name"] == "dev"]
    (loader,) = dev["config"]["plugins"]["loaders"]
    assert loader["config"]["api_url"] == f"http://127.0.0.1:{DEFAULT_PORT}"
    assert f"curl -s localhost:{DEFAULT_PORT}/_sandbox/products" in block
    assert requests.get(f"{sandbox.url}/_sandbox/products", timeout=5).json() == {"data": []}
