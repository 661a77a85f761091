"""tap-snowplow-files on real gzip enriched TSV files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from singer_sdk.testing import get_tap_test_class

from target_miso import samples
from target_miso.taps.snowplow_files import MalformedLineError, TapSnowplowFiles
from tests.helpers import run_target, write_config

ROWS = samples.render_tsv_shaped(samples.sample_events())


def run_tap(config: dict, state: dict | None = None, tmp_path=None) -> list[dict]:
    args = [sys.executable, "-m", "target_miso.taps.snowplow_files", "--config", str(_write(tmp_path / "tap.json", config))]
    if state is not None:
        args += ["--state", str(_write(tmp_path / "state.json", state))]
    done = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    return [json.loads(line) for line in done.stdout.splitlines()]


def _write(path, value):
    path.write_text(json.dumps(value))
    return path


def test_records_carry_every_enriched_field_by_name(tmp_path):
    samples.write_demo_files(tmp_path / "events")

    messages = run_tap({"path": str(tmp_path / "events")}, tmp_path=tmp_path)

    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(records) == len(ROWS)
    first = dict(records[0])
    assert first.pop("_sdc_source_file").endswith("part-0001.tsv.gz")
    assert first == ROWS[0], "text as written, empty fields as null, JSON left as text"
    state = [m for m in messages if m["type"] == "STATE"][-1]["value"]
    assert state["bookmarks"]["atomic-events"]["replication_key_value"].endswith("part-0002.tsv.gz")


def test_a_second_run_starts_at_the_last_file(tmp_path):
    events = tmp_path / "events"
    samples.write_demo_files(events)
    first = run_tap({"path": str(events)}, tmp_path=tmp_path)
    state = [m for m in first if m["type"] == "STATE"][-1]["value"]
    samples.write_enriched_tsv(events / "part-0003.tsv.gz", ROWS[:2])

    second = run_tap({"path": str(events)}, state=state, tmp_path=tmp_path)

    files = [m["record"]["_sdc_source_file"].rsplit("/", 1)[-1] for m in second if m["type"] == "RECORD"]
    # The last file of the previous run is read again (it may have been cut short); the
    # target's event id dedupe drops what it already sent.
    assert files == ["part-0002.tsv.gz"] * (len(ROWS) - 12) + ["part-0003.tsv.gz"] * 2


def test_plain_files_and_globs_work_too(tmp_path):
    samples.write_enriched_tsv(tmp_path / "a.tsv", ROWS[:3], compress=False)
    samples.write_enriched_tsv(tmp_path / "b.other", ROWS[3:5], compress=False)

    messages = run_tap({"path": str(tmp_path / "*.tsv")}, tmp_path=tmp_path)

    assert len([m for m in messages if m["type"] == "RECORD"]) == 3


def test_a_malformed_line_names_its_file_and_line(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wt") as out:
        out.write("\t".join(["x"] * 131) + "\n")
        out.write("only\tthree\tfields\n")
    tap = TapSnowplowFiles(config={"path": str(path)})
    stream = tap.streams["atomic-events"]

    with pytest.raises(MalformedLineError, match=r"bad\.gz, line 2: 3 tab-separated fields, expected 131"):
        list(stream.get_records(None))


def test_tap_into_target_gives_the_expected_interactions(tmp_path, sandbox):
    samples.write_demo_files(tmp_path / "events")
    messages = run_tap({"path": str(tmp_path / "events")}, tmp_path=tmp_path)
    singer = "\n".join(json.dumps(m) for m in messages) + "\n"
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}

    run = run_target(write_config(tmp_path, sandbox.url, mappings={"atomic-events": options}), singer)

    assert run.returncode == 0, run.stderr[-2000:]
    received = sorted(sandbox.interactions, key=lambda i: (i["timestamp"], i["type"]))
    assert received == samples.expected_interactions()


# The SDK's standard tap tests need the files when the class is built (at import).
SDK_SUITE_FILES = Path(tempfile.mkdtemp(prefix="tap-snowplow-files-"))
samples.write_demo_files(SDK_SUITE_FILES)

TestTapSnowplowFiles = get_tap_test_class(TapSnowplowFiles, config={"path": str(SDK_SUITE_FILES)})
