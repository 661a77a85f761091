"""docs/meltano.md's commands for tap-postgres-copy do what the doc says.

The partition example's conditions run through the real tap on the sample events in
Postgres; the bookmark-migration commands name state ids and streams that meltano.yml has.
(Meltano itself runs the pipeline in tests/e2e/test_meltano_postgres.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import typing as t

import pytest
import yaml

from target_miso import sample_postgres, samples
from target_miso.mappings import build_mapping
from tests.markdown import ROOT, code_blocks
from tests.postgres import connection_settings, database_name, fresh_database

if t.TYPE_CHECKING:
    from pathlib import Path

DATABASE = database_name("target_miso_docs_meltano")
STREAM = "atomic-events_for_miso_narrow"
#: A partition's line pair: its stream_options, then the `meltano run` with its suffix.
_PARTITION = re.compile(
    r"TAP_POSTGRES_COPY_STREAM_OPTIONS='([^']*)' \\\n"
    r"\s*meltano run --state-id-suffix (\w+) tap-postgres-copy target-miso &"
)
_MIGRATION = re.compile(
    r"meltano state get (\S+) \\\n"
    r"\s*\| sed 's/\"([^\"]+)\"/\"([^\"]+)\"/' > state\.json\n"
    r"meltano state set --force (\S+) \"\$\(cat state\.json\)\""
)


def bash_blocks() -> list[str]:
    return code_blocks("docs/meltano.md", "bash")


def partitions() -> list[tuple[str, dict[str, t.Any]]]:
    """The partition example's (suffix, stream_options) pairs, as written."""
    (block,) = [b for b in bash_blocks() if "TAP_POSTGRES_COPY_STREAM_OPTIONS" in b]
    found = [(suffix, json.loads(options)) for options, suffix in _PARTITION.findall(block)]
    assert len(found) == block.count("TAP_POSTGRES_COPY_STREAM_OPTIONS"), "every line is read"
    return found


@pytest.fixture(scope="module")
def database() -> t.Iterator[None]:
    with fresh_database(DATABASE) as conn:
        sample_postgres.load_events(conn, "atomic", samples.sample_events(), create=True)
        sample_postgres.create_view(conn, "atomic")
        conn.commit()
        yield


def run_tap(tmp_path: Path, *args: str, **settings: t.Any) -> str:
    config = tmp_path / "tap.json"
    base = {**connection_settings(DATABASE), "filter_schemas": ["atomic"]}
    config.write_text(json.dumps({**base, "omit_null_values": True, **settings}))
    command = [sys.executable, "-m", "target_miso.taps.postgres_copy", "--config", str(config)]
    done = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def narrow_catalog(tmp_path: Path) -> Path:
    """The narrow view selected as meltano.yml selects it: the preset's columns, on its key."""
    mapping = build_mapping("events", {"events": {**samples.SAMPLE_MAPPING_OPTIONS}}, {})
    columns = mapping.columns()
    assert columns is not None
    catalog = json.loads(run_tap(tmp_path, "--discover"))
    catalog["streams"] = [s for s in catalog["streams"] if s["tap_stream_id"] == STREAM]
    for entry in catalog["streams"][0]["metadata"]:
        if entry["breadcrumb"] == []:
            entry["metadata"].update(
                selected=True,
                **{"replication-method": "INCREMENTAL", "replication-key": "collector_tstamp"},
            )
        else:
            name = entry["breadcrumb"][-1]
            entry["metadata"]["selected"] = columns.matches(name) or name == "collector_tstamp"
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path


@pytest.mark.usefixtures("database")
def test_the_partition_example_splits_the_events_by_visitor_and_loses_none(tmp_path):
    catalog = narrow_catalog(tmp_path)
    found = partitions()
    assert [suffix for suffix, _ in found] == ["even", "odd"]

    rows: dict[str, list[dict[str, t.Any]]] = {}
    for suffix, options in found:
        assert list(options) == [STREAM], "the stream meltano.yml ships"
        output = run_tap(tmp_path, "--catalog", str(catalog), stream_options=options)
        messages = [json.loads(line) for line in output.splitlines()]
        rows[suffix] = [m["record"] for m in messages if m["type"] == "RECORD"]

    ids = {suffix: {row["event_id"] for row in found_rows} for suffix, found_rows in rows.items()}
    assert all(ids.values()), "the sample events fall in both partitions"
    assert not ids["even"] & ids["odd"], "no event in two partitions"
    every = samples.sample_events()
    assert len(rows["even"]) + len(rows["odd"]) == len(every), "no row in none or in two"
    assert ids["even"] | ids["odd"] == {event.atomic["event_id"] for event in every}
    visitors = {s: {row.get("domain_userid") for row in r} for s, r in rows.items()}
    assert not visitors["even"] & visitors["odd"], "a visitor's events stay together"

    # Each partition mapped on its own gives, together, what one pipeline gives.
    interactions = []
    for partition_rows in rows.values():
        mapping = build_mapping(
            STREAM, {STREAM: {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}}, {}
        )
        interactions += [i for row in partition_rows for i in mapping.map(row)]
        interactions += [i for i, _ in mapping.flush()]
    assert sorted(interactions, key=lambda i: (i["timestamp"], i["type"])) == (
        samples.expected_interactions()
    )


def test_the_bookmark_migrations_name_meltano_yml_state_ids_and_streams():
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    selected = {
        extractor["name"]: {entry.split(".")[0] for entry in extractor.get("select", [])}
        for extractor in project["plugins"]["extractors"]
    }
    migrations = [m for block in bash_blocks() for m in _MIGRATION.findall(block)]
    assert len(migrations) == sum("meltano state get" in b for b in bash_blocks())
    targets = set()
    for source_id, old_stream, new_stream, target_id in migrations:
        assert source_id == "dev:tap-postgres-to-target-miso", "the old pipeline's state id"
        extractor = re.fullmatch(r"dev:(.+)-to-target-miso", target_id)
        assert extractor, target_id
        assert new_stream in selected[extractor[1]], f"{target_id} reads {new_stream}"
        assert old_stream != new_stream
        targets.add((target_id, new_stream))
    assert ("dev:tap-postgres-copy-to-target-miso", STREAM) in targets
