"""preset: custom through real `meltano run tap-postgres target-miso`, as a user writes it.

Each test writes a Meltano project of its own (the repo's tap-postgres and target-miso plugin
definitions, installed in the repo's .meltano) whose meltano.yml holds the mapping, and reads
a Postgres table built from tests/mappings/data/custom_events.singer. Meltano 4.4.1 splits a
dotted key of meltano.yml into nested objects and drops it from TARGET_MISO_MAPPINGS: the
nested form works everywhere, the dotted one in meltano.yml, and the dotted one in the
environment stops the run naming the key instead of losing the field.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb

from tests.e2e.conftest import DATABASE, ROOT, Meltano
from tests.helpers import TAP_POSTGRES
from tests.mappings.fixtures import read_singer, run_stream
from tests.mappings.test_declarative import EVENTS_MAPPING
from tests.postgres import connection_settings
from tests.test_docs_mappings import _custom_example, doc_blocks

pytestmark = pytest.mark.e2e
STREAM = "public-events"
COLUMNS = {
    "event_id": "text", "event_name": "text", "user_id": "text", "anonymous_id": "text",
    "occurred_at": "timestamptz", "product_id": "text", "quantity": "integer",
    "order_total": "numeric", "items": "jsonb", "search_query": "text", "page_url": "text",
    "note": "text",
}  # fmt: skip


def _plugin(kind: str, name: str) -> dict[str, t.Any]:
    plugins = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))["plugins"]
    return next(plugin for plugin in plugins[kind] if plugin["name"] == name)


def write_project(path: Path, mappings: dict[str, t.Any] | None, **metadata: str) -> Path:
    """A Meltano project reading public.events into target-miso with these mappings."""
    path.mkdir()
    tap = _plugin("extractors", "tap-postgres")
    tap["config"] = {**connection_settings(DATABASE), "filter_schemas": ["public"]}
    tap["select"] = [f"{STREAM}.*"]
    tap["metadata"] = {STREAM: {"replication-method": "FULL_TABLE", **metadata}}
    loader = _plugin("loaders", "target-miso")
    loader["config"] = {"mappings": mappings} if mappings is not None else {}
    project = {
        "requires_meltano": ">=4.4,<5",
        "default_environment": "dev",
        "project_id": "target-miso-custom-e2e",
        "send_anonymous_usage_stats": False,
        "venv": {"backend": "virtualenv"},
        "environments": [{"name": "dev"}],
        "plugins": {"extractors": [tap], "loaders": [loader]},
    }
    # Dumped as YAML, the keys stay as written (dotted ones too): Meltano reads this file.
    (path / "meltano.yml").write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return path


def load_events(conn: psycopg.Connection, records: list[dict[str, t.Any]]) -> None:
    with conn.cursor() as cur:
        columns = ", ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
        cur.execute(f"CREATE TABLE IF NOT EXISTS public.events ({columns})")
        for record in records:
            values = [
                Jsonb(record[name])
                if name == "items" and record[name] is not None
                else record[name]
                for name in COLUMNS
            ]
            placeholders = ", ".join(["%s"] * len(COLUMNS))
            cur.execute(f"INSERT INTO public.events VALUES ({placeholders})", values)  # noqa: S608 - placeholders only
    conn.commit()


def fixture() -> tuple[dict[str, t.Any], list[dict[str, t.Any]]]:
    return read_singer("custom_events.singer")[STREAM]


def expected(mappings: dict[str, t.Any], records: list[dict[str, t.Any]]) -> list[dict]:
    schema, _ = fixture()
    interactions, _ = run_stream(mappings, STREAM, schema, records)
    return by_time(interactions)


def by_time(interactions: list[dict]) -> list[dict]:
    return sorted(interactions, key=lambda item: (item["timestamp"], item["type"]))


def test_the_docs_custom_example_runs_through_meltano_as_written(
    meltano_installed, events_db, tmp_path, sandbox
):
    mappings = _custom_example()
    assert "context.page.url" not in json.dumps(mappings)  # the docs write paths nested
    project = write_project(tmp_path / "project", mappings)
    _, records = fixture()
    load_events(events_db, records)
    meltano = Meltano(tmp_path, sandbox, project)
    del meltano.env["TARGET_MISO_MAPPINGS"]

    meltano("run", "tap-postgres", "target-miso")

    assert by_time(sandbox.interactions) == expected(mappings, records)
    assert any(i.get("context", {}).get("page") for i in sandbox.interactions)


def test_dotted_paths_in_meltano_yml_arrive_and_dedup_store_spans_incremental_runs(
    meltano_installed, events_db, tmp_path, sandbox
):
    # EVENTS_MAPPING writes its paths dotted (context.page.url, search.keywords, ...).
    mappings = {STREAM: {**EVENTS_MAPPING, "dedup_store": str(tmp_path / "keys.sqlite")}}
    project = write_project(
        tmp_path / "project", mappings, **{"replication-method": "INCREMENTAL",
                                          "replication-key": "occurred_at"}
    )  # fmt: skip
    _, records = fixture()
    load_events(events_db, records)
    meltano = Meltano(tmp_path, sandbox, project)
    del meltano.env["TARGET_MISO_MAPPINGS"]
    config = json.loads(meltano("invoke", "--dump=config", "target-miso").stdout)
    fields = config["mappings"][STREAM]["fields"]
    assert "context.page.url" not in fields
    assert fields["context"]["page"] == {"url": "page_url"}  # what Meltano makes of it

    meltano("run", "tap-postgres", "target-miso")
    first = by_time(sandbox.interactions)
    later = {**records[-1], "event_id": "e8", "occurred_at": "2024-05-01T11:00:00+00:00"}
    load_events(events_db, [later])
    second = meltano("run", "tap-postgres", "target-miso")

    assert first == expected({STREAM: EVENTS_MAPPING}, records)
    # The second run re-read the boundary row (e7, inclusive bookmark): not sent again.
    assert by_time(sandbox.interactions) == expected({STREAM: EVENTS_MAPPING}, [*records, later])
    assert "1  public-events: duplicate dedup_key" in second.stderr


def test_mappings_in_the_environment_nested_work_and_dotted_are_refused_by_name(
    meltano_installed, events_db, tmp_path, sandbox
):
    project = write_project(tmp_path / "project", None)
    _, records = fixture()
    load_events(events_db, records)
    nested = _custom_example()
    meltano = Meltano(tmp_path, sandbox, project, TARGET_MISO_MAPPINGS=json.dumps(nested))

    meltano("run", "tap-postgres", "target-miso")
    assert by_time(sandbox.interactions) == expected(nested, records)

    sandbox.reset()
    meltano.env["TARGET_MISO_MAPPINGS"] = json.dumps({STREAM: EVENTS_MAPPING})
    refused = meltano("run", "tap-postgres", "target-miso", check=False)

    assert refused.returncode != 0
    assert (
        "mappings.public-events.type.map.search.fields.search.keywords: Meltano dropped this "
        "key from TARGET_MISO_MAPPINGS" in refused.stderr
    )
    assert '{"search": {"keywords": ...}}' in refused.stderr
    assert sandbox.interactions == []


def test_the_preview_reads_tap_postgres_as_the_doc_shows(events_db, tmp_path, meltano_installed):
    # The first command of docs/mappings.md's preview block, with the real tap-postgres.
    _, records = fixture()
    load_events(events_db, records)
    (block,) = doc_blocks("bash")
    command = next(line for line in block.splitlines() if line.startswith("tap-postgres"))
    (tmp_path / "tap.json").write_text(
        json.dumps({**connection_settings(DATABASE), "filter_schemas": ["public"],
                    "password": "unused-under-trust-auth"})
    )  # fmt: skip
    discovered = subprocess.run(
        [str(TAP_POSTGRES), "--config", "tap.json", "--discover"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = True
    (tmp_path / "catalog.json").write_text(json.dumps(catalog))
    (tmp_path / "config.json").write_text(json.dumps({"mappings": _custom_example()}))
    path = os.pathsep.join([str(TAP_POSTGRES.parent), str(Path(sys.executable).parent),
                            os.environ["PATH"]])  # fmt: skip
    done = subprocess.run(
        ["bash", "-c", command.split("#")[0].replace("python ", f"{sys.executable} ", 1)],
        cwd=tmp_path, env={**os.environ, "PATH": path, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    interactions = [entry["interaction"] for entry in out if "interaction" in entry]
    assert by_time(interactions) == expected(_custom_example(), records)


def test_a_backslash_keeps_the_dot_of_a_name_in_meltano_yml(meltano_installed, tmp_path, sandbox):
    # docs/mappings.md: stream names, map values, and a path next to its whole object.
    mappings = {
        "public-events": {
            "preset": "custom",
            "type": {"column": "e", "map": {"page\\.view": "home_page_view"}},
            "fields": {"anonymous_id": "a", "context": "ctx", "context\\.page\\.url": "u"},
        },
        "analytics\\.events": {"preset": "ga4"},
    }
    meltano = Meltano(tmp_path, sandbox, write_project(tmp_path / "project", mappings))
    del meltano.env["TARGET_MISO_MAPPINGS"]

    config = json.loads(meltano("invoke", "--dump=config", "target-miso").stdout)

    assert config["mappings"] == {
        "public-events": {
            "preset": "custom",
            "type": {"column": "e", "map": {"page.view": "home_page_view"}},
            "fields": {"anonymous_id": "a", "context": "ctx", "context.page.url": "u"},
        },
        "analytics.events": {"preset": "ga4"},
    }
