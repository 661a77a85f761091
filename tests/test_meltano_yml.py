"""meltano.yml declares target-miso's settings as the target itself documents them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

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
    postgres = dict(mappings["atomic-events_for_miso"])
    assert postgres.pop("state_lookback_seconds") == 86400
    assert postgres == mappings["atomic-events*"]


def test_only_the_collector_tstamp_stream_looks_back():
    # tap-postgres replicates on collector_tstamp: late rows need the lookback. The others
    # follow load order (load_tstamp, file modification time).
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    extractors = {p["name"]: p for p in project["plugins"]["extractors"]}
    postgres = extractors["tap-postgres"]["metadata"]["atomic-events_for_miso"]
    assert postgres["replication-key"] == "collector_tstamp"
    assert extractors["tap-snowflake"]["metadata"]["atomic-events"]["replication-key"] == (
        "load_tstamp"
    )
    assert extractors["tap-bigquery"]["config"]["streams"][0]["datetime_key"] == "load_tstamp"
    mappings = target_miso()["config"]["mappings"]
    assert "state_lookback_seconds" not in mappings["atomic-events*"]
    assert "state_lookback_seconds" not in mappings["snowplow_events"]
