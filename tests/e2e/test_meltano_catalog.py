"""`meltano run tap-postgres target-miso` on a products table: catalog sync and deletes.

tap-postgres's settings come from the repo's meltano.yml (emit_activate_version_messages
included); the stream's metadata is docs/catalog.md's example, as written.
"""

from __future__ import annotations

import json
import typing as t

import pytest
import yaml

from tests.e2e.conftest import Meltano
from tests.helpers import ROOT, read_rejects
from tests.markdown import code_blocks

if t.TYPE_CHECKING:
    from pathlib import Path

    import psycopg

    from target_miso.miso.sandbox import Sandbox

pytestmark = pytest.mark.e2e

MAPPINGS = {
    "public-products": {
        "kind": "products",
        "filter": "not is_hidden",
        "fields": {"product_id": "sku", "title": "name", "sale_price": "price"},
        "delete_missing": True,
        "max_delete_fraction": 0.5,
    },
}


def docs_extractor_example() -> dict[str, t.Any]:
    """docs/catalog.md's tap-postgres block (the one that sets up full-table reads)."""
    (block,) = [b for b in code_blocks("docs/catalog.md", "yaml") if "extractors:" in b]
    (extractor,) = yaml.safe_load(block)["extractors"]
    return extractor


def test_the_docs_tap_settings_are_the_projects() -> None:
    example = docs_extractor_example()
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (tap,) = [p for p in project["plugins"]["extractors"] if p["name"] == example["name"]]
    declared = {setting["name"] for setting in tap["settings"]}
    for name, value in example["config"].items():
        assert name in declared
        assert tap["config"][name] == value, name


def test_a_row_meltano_reads_is_never_deleted_whatever_happened_to_it(
    meltano_installed: None, events_db: psycopg.Connection, tmp_path: Path, sandbox: Sandbox
) -> None:
    events_db.execute(
        """
        CREATE TABLE public.products (sku text PRIMARY KEY, name text, price text,
            is_hidden boolean NOT NULL DEFAULT false);
        INSERT INTO public.products (sku, name, price)
            SELECT 'p-' || i, 'Product ' || i, (10 + i)::text FROM generate_series(1, 6) AS i;
        """,
    )
    events_db.commit()
    example = docs_extractor_example()
    meltano = Meltano(
        tmp_path,
        sandbox,
        TARGET_MISO_MAPPINGS=json.dumps(MAPPINGS),
        TARGET_MISO_CATALOG_STORE=str(tmp_path / "catalog.sqlite"),
        TAP_POSTGRES_FILTER_SCHEMAS='["public"]',
        TAP_POSTGRES__SELECT='["public-products.*"]',
        TAP_POSTGRES__METADATA=json.dumps(example["metadata"]),
    )
    meltano("run", "tap-postgres", "target-miso")
    assert sorted(sandbox.products) == [f"p-{i}" for i in range(1, 7)]

    events_db.execute("UPDATE public.products SET price = 'N/A' WHERE sku = 'p-2'")
    events_db.execute("UPDATE public.products SET is_hidden = true WHERE sku = 'p-3'")
    events_db.execute("DELETE FROM public.products WHERE sku = 'p-4'")
    events_db.commit()
    second = meltano("run", "tap-postgres", "target-miso")

    assert sandbox.stats()["deleted"]["products"] == ["p-4"], second.stderr[-3000:]
    assert sorted(sandbox.products) == ["p-1", "p-2", "p-3", "p-5", "p-6"]
    rejects_path = tmp_path / "rejects.jsonl"
    assert [(r["stage"], r["record"]["sku"]) for r in read_rejects(rejects_path)] == [
        ("mapping", "p-2"),
    ]

    third = meltano("run", "tap-postgres", "target-miso")
    assert len(read_rejects(rejects_path)) == 1
    assert "Stream 'public-products': 1 row(s) are still set aside" in third.stderr
    assert sandbox.stats()["deleted"]["products"] == ["p-4"]
