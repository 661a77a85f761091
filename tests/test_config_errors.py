"""Secrets, bad settings and the rejects file, through the real target process and sandbox."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from target_miso.miso.sandbox import Sandbox
from tests.helpers import (
    interaction,
    read_rejects,
    record_message,
    run_target,
    schema_message,
    seqs,
    singer_input,
    target_command,
    write_config,
)

#: A key that cannot appear in any output by chance.
SECRET = "tcm-Secr3t-9f8e7d6c5b4a3210"  # noqa: S105 - a test key
LOOSE_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "user_id": {},
        "product_ids": {},
        "timestamp": {"type": ["string", "null"]},
        "seq": {"type": "integer"},
    },
}


def write_settings(path, settings: dict) -> None:
    path.write_text(json.dumps(settings))


def with_key(config, key: object) -> None:
    settings = json.loads(config.read_text())
    settings["api_key"] = key
    write_settings(config, settings)


def requests_made(sandbox: Sandbox) -> int:
    return sum(sandbox.stats()["requests_by_status"].values())


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


# --- Secrets ------------------------------------------------------------------------------


def test_key_with_surrounding_whitespace_works_and_never_appears_in_any_output(tmp_path):
    with Sandbox(api_key=SECRET) as sandbox:
        config = write_config(tmp_path, sandbox.url)
        with_key(config, f"  {SECRET} \n")

        run = run_target(config, singer_input([interaction(i) for i in range(20)]))

        assert run.returncode == 0, run.stderr
        assert sorted(seqs(sandbox.interactions)) == list(range(20))
    assert "api_key: removed 4 whitespace characters around the key" in run.stderr
    assert SECRET not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_key_with_whitespace_inside_is_refused_at_start_up_without_showing_it(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    with_key(config, f"{SECRET}\n{SECRET}")

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert (
        "api_key: contains spaces, control or non-ASCII characters (value not shown)" in run.stderr
    )
    assert SECRET not in run.stdout + run.stderr
    assert requests_made(sandbox) == 0


@pytest.mark.parametrize(
    "key", [[SECRET], {"key": SECRET}, 987654321987], ids=["list", "object", "number"]
)
def test_key_of_the_wrong_type_is_reported_without_its_value(sandbox, tmp_path, key):
    config = write_config(tmp_path, sandbox.url)
    with_key(config, key)

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert "api_key: must be a string (value not shown)" in run.stderr
    assert SECRET not in run.stdout + run.stderr
    assert "987654321987" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_a_request_requests_cannot_send_is_reported_with_the_key_scrubbed(tmp_path):
    # A URL requests refuses at send time (an invalid port): the error is a MisoAPIError
    # with requests' text scrubbed, not a traceback; the key never shows.
    config = write_config(tmp_path, "http://127.0.0.1:99999", max_retries=0)
    with_key(config, SECRET)

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert "the request could not be sent (InvalidURL" in run.stderr
    assert "Traceback" not in run.stderr
    assert SECRET not in run.stdout + run.stderr


# --- The config file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "the file is empty"),
        ('{"api_key": "k", "api_url": ', "not valid JSON: Expecting value at line 1"),
        (
            "api_key: k\napi_url: http://x\n",
            "not valid JSON: Expecting value at line 1 column 1 (YAML",
        ),
        ("[1, 2]", "holds a JSON list, not an object of settings"),
    ],
    ids=["empty", "truncated", "yaml", "not-an-object"],
)
def test_an_unreadable_config_file_is_named_in_one_line_without_traceback(
    tmp_path, content, problem
):
    config = tmp_path / "config.json"
    config.write_text(content)

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    errors = error_lines(run.stderr)
    assert len(errors) == 1, run.stderr
    assert f"--config {config}: {problem}" in errors[0]


def test_api_url_with_the_version_path_is_refused_with_the_fix(sandbox, tmp_path):
    config = write_config(tmp_path, f"{sandbox.url}/v1/")

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert f"api_url: give the root, without /v1 (e.g. {sandbox.url})" in run.stderr
    assert requests_made(sandbox) == 0


def test_a_413_names_max_request_bytes_and_a_value_to_set(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(fail_all_status=413)
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_input([interaction(i) for i in range(50)]))

    assert run.returncode != 0
    assert run.states == []
    line = next(line for line in error_lines(run.stderr) if "HTTP 413" in line)
    assert "set max_request_bytes below that, e.g. max_request_bytes: " in line
    assert sandbox.stats()["requests_by_status"] == {"413": 1}, "a 413 is not retried"


# --- Mappings and stores ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"preset": "passthrough", "dedup_key": "id"}, "mappings.interactions.dedup_key"),
        ({"preset": "auto", "fieldz": {}}, "mappings.interactions.fieldz"),
        ({"fieldz": {}}, "mappings.interactions.fieldz"),
    ],
    ids=["passthrough", "auto", "no-preset"],
)
def test_an_unknown_option_is_refused_at_start_up_for_every_preset(sandbox, tmp_path, entry, where):
    config = write_config(tmp_path, sandbox.url, mappings={"interactions": entry})

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert f"{where}: unknown option" in run.stderr
    assert requests_made(sandbox) == 0


def test_a_corrupt_catalog_store_is_refused_at_start_up(sandbox, tmp_path):
    store = tmp_path / "catalog.sqlite"
    store.write_bytes(b"this is not a SQLite database\n" * 200)
    mapping = {"kind": "products", "fields": {"product_id": "sku", "title": "name"}}
    config = write_config(
        tmp_path,
        sandbox.url,
        catalog_store=str(store),
        mappings={"products": mapping},
    )
    singer = "\n".join(
        [
            schema_message("products", {"type": "object", "properties": {"sku": {}, "name": {}}}),
            record_message({"sku": "a", "name": "A"}, "products"),
        ],
    )

    run = run_target(config, singer + "\n")

    assert run.returncode != 0
    assert f"catalog_store: cannot open '{store}': file is not a database" in run.stderr
    assert "Traceback" not in run.stderr
    assert requests_made(sandbox) == 0


@pytest.mark.parametrize("problem", ["corrupt", "under a file"])
def test_a_resend_guard_store_that_cannot_be_opened_is_refused_at_start_up(
    sandbox, tmp_path, problem
):
    if problem == "corrupt":
        store = tmp_path / "guard.sqlite"
        store.write_bytes(b"this is not a SQLite database\n" * 200)
        why = "file is not a database"
    else:
        (tmp_path / "afile").write_text("")
        store = tmp_path / "afile" / "guard.sqlite"
        why = "File exists"  # mkdir of the folder: a file has its name
    config = write_config(tmp_path, sandbox.url, resend_guard_store=str(store))

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert f"resend_guard_store: cannot open '{store}': " in run.stderr
    assert why in run.stderr
    assert "Traceback" not in run.stderr
    assert requests_made(sandbox) == 0


# --- The rejects file ---------------------------------------------------------------------


def test_rejects_path_under_a_file_is_refused_at_start_up(sandbox, tmp_path):
    (tmp_path / "afile").write_text("")
    rejects = tmp_path / "afile" / "rejects.jsonl"
    config = write_config(tmp_path, sandbox.url, rejects_path=str(rejects))

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert (
        f"rejects_path: cannot write the rejects file '{rejects}' (Not a directory: "
        f"{tmp_path / 'afile'} is a file)"
    ) in run.stderr
    assert requests_made(sandbox) == 0


def test_rejects_path_that_is_a_directory_is_refused_at_start_up(sandbox, tmp_path):
    rejects = tmp_path / "rejects"
    rejects.mkdir()
    config = write_config(tmp_path, sandbox.url, rejects_path=str(rejects))

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert f"rejects_path: cannot write the rejects file '{rejects}' (Is a directory)" in run.stderr
    assert requests_made(sandbox) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_rejects_path_in_a_read_only_directory_is_refused_at_start_up(sandbox, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    config = write_config(tmp_path, sandbox.url, rejects_path=str(folder / "rejects.jsonl"))
    try:
        run = run_target(config, singer_input([interaction(1)]))
    finally:
        folder.chmod(0o700)

    assert run.returncode != 0
    assert "rejects_path: cannot write the rejects file" in run.stderr
    assert "Permission denied" in run.stderr


def test_the_start_up_check_leaves_no_rejects_file_behind(sandbox, tmp_path):
    rejects = tmp_path / "new" / "rejects.jsonl"
    config = write_config(tmp_path, sandbox.url, rejects_path=str(rejects))

    run = run_target(config, singer_input([interaction(i) for i in range(5)]))

    assert run.returncode == 0, run.stderr
    assert not rejects.parent.exists()


def test_the_rejects_file_is_private_to_its_owner(sandbox, tmp_path):
    records = [interaction(i) for i in range(5)]
    records[2]["user_id"] = None
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_input(records))

    assert run.returncode == 0, run.stderr
    rejects = tmp_path / "rejects.jsonl"
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    assert [r["record"]["seq"] for r in read_rejects(rejects)] == [2]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_rejects_file_that_fills_up_mid_run_stops_the_run_cleanly(sandbox, tmp_path):
    # /dev/full opens like a file and refuses every write (ENOSPC): a full disk.
    records = [interaction(i) for i in range(5)]
    records[3]["user_id"] = None
    config = write_config(tmp_path, sandbox.url, rejects_path="/dev/full")

    run = run_target(config, singer_input(records))

    assert run.returncode == 1
    assert "rejects_path: cannot write to /dev/full" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states == [], "no STATE may cover a record that was neither sent nor kept"


def test_a_reject_logged_as_set_aside_is_in_the_file_when_the_process_is_killed(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bad = interaction(7, user_id=None)
        process.stdin.write(schema_message() + "\n" + record_message(bad) + "\n")
        process.stdin.flush()  # stdin stays open: the run is not over
        deadline = time.monotonic() + 60
        for line in process.stderr:
            if "Set aside a record" in line or time.monotonic() > deadline:
                break
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert [r["record"]["seq"] for r in read_rejects(tmp_path / "rejects.jsonl")] == [7]


# --- Records ------------------------------------------------------------------------------


def _in(seconds: float) -> str:
    moment = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def test_a_timestamp_too_far_in_the_future_is_set_aside_naming_the_setting(sandbox, tmp_path):
    records = [interaction(i) for i in range(4)]
    records[1]["timestamp"] = _in(3 * 86_400)
    records[2]["timestamp"] = _in(3_600)  # within the default day
    records[3]["timestamp"] = _in(600).replace(" ", "T") + "+09:00"  # 9 h back in UTC
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_input(records))

    assert run.returncode == 0, run.stderr
    assert sorted(seqs(sandbox.interactions)) == [0, 2, 3]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [r["record"]["seq"] for r in rejects] == [1]
    assert rejects[0]["stage"] == "validation"
    reason = rejects[0]["reasons"][0]
    assert reason.startswith("timestamp: more than 86400 s in the future")
    assert "max_future_timestamp_seconds" in reason
    assert "(validation: field 'timestamp'" in run.stderr


def test_the_future_limit_follows_the_setting_and_null_disables_it(sandbox, tmp_path):
    records = [interaction(0, timestamp=_in(120)), interaction(1, timestamp=_in(7_200))]
    config = write_config(tmp_path, sandbox.url, max_future_timestamp_seconds=3_600)
    run = run_target(config, singer_input(records))
    assert run.returncode == 0, run.stderr
    assert seqs(sandbox.interactions) == [0]

    far = [interaction(2, timestamp=_in(400 * 86_400))]
    config = write_config(tmp_path, sandbox.url, max_future_timestamp_seconds=None)
    run = run_target(config, singer_input(far))
    assert run.returncode == 0, run.stderr
    assert seqs(sandbox.interactions) == [0, 2]


def test_passthrough_delivers_ids_and_one_value_lists_normalized(sandbox, tmp_path):
    records = [
        {"type": "product_detail_page_view", "user_id": 12345, "product_ids": "SKU-1", "seq": 1},
        {"type": "add_to_cart", "user_id": "u-2", "product_ids": [1, 2], "seq": 2},
        {"type": "read", "anonymous_id": 678, "product_ids": '["a", "b"]', "seq": 3},
    ]
    for record in records:
        record["timestamp"] = "2024-05-01 10:00:00"
    singer = "\n".join(
        [schema_message(schema=LOOSE_SCHEMA), *(record_message(r) for r in records)],
    )
    config = write_config(
        tmp_path, sandbox.url, mappings={"interactions": {"preset": "passthrough"}}
    )

    run = run_target(config, singer + "\n")

    assert run.returncode == 0, run.stderr
    assert read_rejects(tmp_path / "rejects.jsonl") == []
    delivered = [{k: v for k, v in i.items() if k != "timestamp"} for i in sandbox.interactions]
    assert delivered == [
        {"type": "product_detail_page_view", "user_id": "12345", "product_ids": ["SKU-1"]},
        {"type": "add_to_cart", "user_id": "u-2", "product_ids": ["1", "2"]},
        {"type": "read", "anonymous_id": "678", "product_ids": ["a", "b"]},
    ]
