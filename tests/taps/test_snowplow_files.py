"""tap-snowplow-files on real gzip enriched TSV files, run as the real tap process."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from singer_sdk.testing import get_tap_test_class

from target_miso import samples
from target_miso.taps.snowplow_files import MalformedFileError, TapSnowplowFiles
from tests.helpers import run_target, write_config

ROWS = samples.render_tsv_shaped(samples.sample_events())
STREAM = "atomic-events"
#: Last-modified times given to the files (files are read in this order, not by name).
T0 = 1_714_557_600  # 2024-05-01T10:00:00Z


def run_tap(tmp_path: Path, config: dict, state: dict | None = None) -> list[dict]:
    """Run the tap process; return its Singer messages."""
    done = run_tap_process(tmp_path, config, state)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def run_tap_process(
    tmp_path: Path, config: dict, state: dict | None = None
) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        "-m",
        "target_miso.taps.snowplow_files",
        "--config",
        str(_write(tmp_path / "tap.json", {"settle_seconds": 0, **config})),
    ]
    if state is not None:
        args += ["--state", str(_write(tmp_path / "state.json", state))]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _write(path: Path, value: dict) -> Path:
    path.write_text(json.dumps(value))
    return path


def records(messages: list[dict]) -> list[dict]:
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def last_state(messages: list[dict]) -> dict:
    return [m for m in messages if m["type"] == "STATE"][-1]["value"]


def bookmark(state: dict) -> str:
    return state["bookmarks"][STREAM]["replication_key_value"]


def write_file(path: Path, rows: list[dict], modified: int) -> Path:
    samples.write_enriched_tsv(path, rows)
    os.utime(path, (modified, modified))
    return path


def two_files(folder: Path) -> tuple[Path, Path]:
    """The sample events as two S3-loader files, written a minute apart."""
    folder.mkdir(parents=True, exist_ok=True)
    return (
        write_file(folder / "part-0001.tsv.gz", ROWS[:5], T0),
        write_file(folder / "part-0002.tsv.gz", ROWS[5:], T0 + 60),
    )


def test_records_carry_every_enriched_field_by_name_and_their_source(tmp_path):
    first_file, second_file = two_files(tmp_path / "events")

    messages = run_tap(tmp_path, {"path": str(tmp_path / "events")})

    got = records(messages)
    assert len(got) == len(ROWS)
    first = dict(got[0])
    assert first.pop("_sdc_source_file") == str(first_file)
    assert first.pop("_sdc_source_lineno") == 1
    assert first.pop("_sdc_source_last_modified") == "2024-05-01T10:00:00.000000Z"
    assert (
        first.pop("_sdc_source_position") == f"2024-05-01T10:00:00.000000Z|{first_file}|0000000001"
    )
    assert first == ROWS[0], "text as written, empty fields as null, JSON left as text"
    assert got[4]["_sdc_source_position"].endswith(f"|{first_file}|end"), "a file's last event"
    assert bookmark(last_state(messages)) == f"2024-05-01T10:01:00.000000Z|{second_file}|end"


def test_a_second_run_reads_only_files_written_since(tmp_path):
    events = tmp_path / "events"
    two_files(events)
    state = last_state(run_tap(tmp_path, {"path": str(events)}))
    # Newer files, one of them named so that it sorts first: order is by last-modified time.
    write_file(events / "part-0003.tsv.gz", ROWS[:2], T0 + 120)
    write_file(events / "part-0000-late.tsv.gz", ROWS[2:3], T0 + 180)

    second = run_tap(tmp_path, {"path": str(events)}, state=state)

    assert [(Path(r["_sdc_source_file"]).name, r["event_id"]) for r in records(second)] == [
        ("part-0003.tsv.gz", ROWS[0]["event_id"]),
        ("part-0003.tsv.gz", ROWS[1]["event_id"]),
        ("part-0000-late.tsv.gz", ROWS[2]["event_id"]),
    ]
    third = run_tap(tmp_path, {"path": str(events)}, state=last_state(second))
    assert records(third) == []


def test_a_run_stopped_inside_a_file_resumes_after_its_last_sent_line(tmp_path):
    events = tmp_path / "events"
    two_files(events)
    full = records(run_tap(tmp_path, {"path": str(events)}))
    # The state a target would have confirmed after the third event of the first file.
    stopped = {
        "bookmarks": {
            STREAM: {
                "replication_key": "_sdc_source_position",
                "replication_key_value": full[2]["_sdc_source_position"],
            }
        }
    }

    resumed = records(run_tap(tmp_path, {"path": str(events)}, state=stopped))

    assert [r["event_id"] for r in resumed] == [row["event_id"] for row in ROWS[3:]]


def test_files_younger_than_settle_seconds_wait_for_the_next_run(tmp_path, caplog):
    events = tmp_path / "events"
    events.mkdir()
    samples.write_enriched_tsv(events / "part-0001.tsv.gz", ROWS[:2])  # modified just now
    tap = TapSnowplowFiles(config={"path": str(events), "settle_seconds": 300})

    with caplog.at_level("INFO"):
        assert list(tap.streams[STREAM].get_records(None)) == []

    assert (
        "0 files to read, 0 read by earlier runs, 1 younger than settle_seconds=300" in caplog.text
    )


def test_plain_files_and_globs_work_too(tmp_path):
    samples.write_enriched_tsv(tmp_path / "a.tsv", ROWS[:3], gzip=False)
    samples.write_enriched_tsv(tmp_path / "b.other", ROWS[3:5], gzip=False)

    got = records(run_tap(tmp_path, {"path": f"file://{tmp_path}/*.tsv"}))

    assert [r["event_id"] for r in got] == [row["event_id"] for row in ROWS[:3]]


def read_all(path: Path) -> list[dict]:
    return list(
        TapSnowplowFiles(config={"path": str(path), "settle_seconds": 0})
        .streams[STREAM]
        .get_records(None)
    )


def test_a_line_with_the_wrong_number_of_fields_names_its_file_and_line(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wt") as out:
        out.write("\t".join(["x"] * 131) + "\n\n")
        out.write("only\tthree\tfields\n")

    with pytest.raises(
        MalformedFileError, match=r"bad\.gz, line 3: 3 tab-separated fields, expected 131"
    ):
        read_all(path)


def test_a_cut_off_gzip_file_and_bad_bytes_are_named_too(tmp_path):
    whole = tmp_path / "whole.gz"
    samples.write_enriched_tsv(whole, ROWS[:3])
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[:-20])
    latin = tmp_path / "latin.tsv"
    latin.write_bytes(
        ("\t".join(["x"] * 131) + "\n").encode() + "\t".join(["é"] * 131).encode("latin-1")
    )

    with pytest.raises(
        MalformedFileError, match=r"cut\.gz, after line \d+: damaged or cut-off gzip file"
    ):
        read_all(cut)
    with pytest.raises(MalformedFileError, match=r"latin\.tsv, line 2: not UTF-8"):
        read_all(latin)


def test_a_bookmark_from_another_tap_is_a_clear_error(tmp_path):
    two_files(tmp_path / "events")
    state = {
        "bookmarks": {
            STREAM: {
                "replication_key": "_sdc_source_position",
                "replication_key_value": "part-0002.tsv.gz",
            }
        }
    }

    done = run_tap_process(tmp_path, {"path": str(tmp_path / "events")}, state)

    assert done.returncode != 0
    assert (
        "bookmark 'part-0002.tsv.gz' of stream atomic-events is not a tap-snowplow-files position"
        in done.stderr
    )
    assert "clear the state" in done.stderr
    assert not [line for line in done.stdout.splitlines() if '"RECORD"' in line]


def test_tap_into_target_gives_the_expected_interactions(tmp_path, sandbox):
    two_files(tmp_path / "events")
    messages = run_tap(tmp_path, {"path": str(tmp_path / "events")})
    singer = "\n".join(json.dumps(m) for m in messages) + "\n"
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}

    run = run_target(write_config(tmp_path, sandbox.url, mappings={STREAM: options}), singer)

    assert run.returncode == 0, run.stderr[-2000:]
    received = sorted(sandbox.interactions, key=lambda i: (i["timestamp"], i["type"]))
    assert received == samples.expected_interactions()
    assert bookmark(run.states[-1]) == bookmark(last_state(messages)), (
        "the target passes the bookmark on"
    )


# The SDK's standard tap tests need the files when the class is built (at import).
SDK_SUITE_FILES = Path(tempfile.mkdtemp(prefix="tap-snowplow-files-"))
samples.write_demo_files(SDK_SUITE_FILES)

TestTapSnowplowFiles = get_tap_test_class(
    TapSnowplowFiles, config={"path": str(SDK_SUITE_FILES), "settle_seconds": 0}
)
