"""meltano.yml declares target-miso's settings as the target itself documents them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from target_miso import sample_postgres, samples
from target_miso.taps.snowplow_files import POSITION
from tests.postgres import scratch_schema

ROOT = Path(__file__).resolve().parent.parent


def target_miso() -> dict:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-miso"]
    return loader


def test_settings_match_the_target_about_output():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "meltano_settings.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_every_setting_is_declared_with_its_description_and_default():
    about = json.loads(
        subprocess.run(
            [sys.executable, "-m", "target_miso", "--about", "--format=json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["settings"]["properties"]
    declared = {setting["name"]: setting for setting in target_miso()["settings"]}

    assert list(declared) == list(about)
    for name, schema in about.items():
        assert declared[name]["description"] == " ".join(schema["description"].split()), name
        assert declared[name].get("value") == schema.get("default"), name
    # Meltano 4.4 cannot JSON-encode the Decimal a `kind: decimal` env value becomes.
    fractional = [name for name, schema in about.items() if "number" in schema["type"]]
    assert "request_timeout" in fractional
    assert {declared[name]["kind"] for name in fractional} == {"string"}
    assert declared["api_key"]["sensitive"] is True
    assert "value" not in declared["api_key"]


def test_no_yaml_anchors_for_meltano_config_set_to_expand():
    # `meltano config set` rewrites meltano.yml and expands aliases into copies that then
    # drift apart: repeat blocks instead.
    events = yaml.parse((ROOT / "meltano.yml").read_text())
    assert not [e for e in events if getattr(e, "anchor", None)], "no &anchor / *alias"


def test_the_sandbox_command_starts_the_local_sandbox():
    sandbox = target_miso()["commands"]["sandbox"]
    assert sandbox["executable"] == "target-miso-sandbox"
    assert sandbox["args"].split() == ["--port", "8787"]


def test_the_repeated_snowplow_mappings_stay_equal():
    mappings = target_miso()["config"]["mappings"]
    assert mappings["atomic-events*"] == mappings["snowplow_events"]
    postgres = dict(mappings["atomic-events_for_miso*"])
    assert postgres.pop("state_lookback_seconds") == 86400
    assert postgres == mappings["atomic-events*"]
    shipped = dict(mappings["atomic-events_for_miso_json"])
    assert shipped.pop("state_lookback_seconds") == 86400
    assert shipped.pop("payload_column") == "payload"
    assert shipped == mappings["atomic-events*"]


def test_only_the_collector_tstamp_stream_looks_back():
    # tap-postgres replicates on collector_tstamp: late rows need the lookback. The others
    # follow load order (load_tstamp, file modification time).
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractors = {p["name"]: p for p in project["plugins"]["extractors"]}
    postgres = extractors["tap-postgres"]["metadata"]["atomic-events_for_miso_json"]
    assert postgres["replication-key"] == "collector_tstamp"
    shipped = extractors["tap-postgres-copy"]["metadata"]["atomic-events_for_miso_narrow"]
    assert shipped["replication-key"] == "collector_tstamp"
    assert extractors["tap-snowflake"]["metadata"]["atomic-events"]["replication-key"] == (
        "load_tstamp"
    )
    assert extractors["tap-bigquery"]["config"]["streams"][0]["datetime_key"] == "load_tstamp"
    mappings = target_miso()["config"]["mappings"]
    assert mappings["atomic-events_for_miso*"]["state_lookback_seconds"] == 86400
    assert "state_lookback_seconds" not in mappings["atomic-events*"]
    assert "state_lookback_seconds" not in mappings["snowplow_events"]


def _printed(stream: str, tmp_path: Path, *options: str) -> list[str]:
    """What `python -m target_miso.columns` prints for meltano.yml's mapping of a stream."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"mappings": target_miso()["config"]["mappings"]}))
    done = subprocess.run(
        [sys.executable, "-m", "target_miso.columns", "--config", str(config), "--stream", stream,
         *options],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    assert not list(tmp_path.glob(".target-miso*")), "printing columns opens no event-id store"
    return done.stdout.splitlines()


def test_the_copy_tap_selects_the_narrow_view_columns_the_columns_command_prints(tmp_path):
    # Names the view has, not the command's globs and envelope names: Meltano warns about a
    # selected name a stream lacks (`derived_contexts` is folded into `contexts` here). So the
    # list is the command's answer for the view's real columns (--table-columns), replication
    # key included (the mapping reads collector_tstamp).
    stream, schema = "atomic-events_for_miso_narrow", "miso_test_select_list"
    with scratch_schema(schema) as conn:
        sample_postgres.load_events(conn, schema, samples.sample_events()[:3], create=True)
        sample_postgres.create_view(conn, schema)
        found = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'events_for_miso_narrow' ORDER BY ordinal_position",
            (schema,),
        ).fetchall()
    columns = tmp_path / "columns.txt"
    columns.write_text("\n".join(name for (name,) in found))
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-postgres-copy"]

    printed = _printed(stream, tmp_path, "--select", "--table-columns", str(columns))

    assert plugin["select"] == [line.removeprefix("- ") for line in printed]
    assert f"{stream}.collector_tstamp" in plugin["select"]
    assert len(plugin["select"]) < len(found), "pruned, not every column"


@pytest.mark.parametrize(
    ("extractor", "stream", "replication_key"),
    [
        ("tap-postgres", "atomic-events_for_miso_json", "collector_tstamp"),
        ("tap-snowflake", "atomic-events", "load_tstamp"),
        ("tap-snowplow-files", "atomic-events", POSITION),
    ],
)
def test_each_snowplow_extractor_selects_what_the_columns_command_prints(
    extractor: str, stream: str, replication_key: str, tmp_path: Path
) -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == extractor]
    # The tap needs its replication key selected to keep its bookmark; the target reads the
    # rest (for the shipped Postgres stream, only the row's JSON text).
    printed = [line.removeprefix("- ") for line in _printed(stream, tmp_path, "--select")]
    assert plugin["select"] == [*printed, f"{stream}.{replication_key}"]
    assert f"{stream}.*" not in plugin["select"], "pruned, not every column"


def test_bigquery_columns_are_what_the_columns_command_prints_for_the_sample_table(
    tmp_path: Path,
) -> None:
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (plugin,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-bigquery"]
    (stream,) = plugin["config"]["streams"]
    table = tmp_path / "columns.txt"
    rows = samples.render_bigquery(samples.sample_events())
    table.write_text("\n".join(dict.fromkeys(column for row in rows for column in row)))

    printed = _printed(stream["name"], tmp_path, "--table-columns", str(table))

    assert stream["columns"] == printed
    assert "contexts_com_snowplowanalytics_snowplow_web_page_1" in printed
    assert "contexts_com_snowplowanalytics_snowplow_ua_parser_context_1" not in printed
    assert len(printed) < 40
