"""The real target process against the sandbox over HTTP: delivery, faults, STATE, secrets."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from tests.helpers import (
    API_KEY,
    interaction,
    read_rejects,
    run_target,
    seqs,
    singer_input,
    target_command,
    write_config,
)


def assert_key_hidden(*outputs: str) -> None:
    for output in outputs:
        assert API_KEY not in output


def test_one_invalid_record_among_1000_is_set_aside_and_999_are_delivered(sandbox, tmp_path):
    records = [interaction(i) for i in range(1000)]
    records[500]["revenue"] = 12.5  # revenue is not allowed on a page view
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_input(records))

    assert run.returncode == 0, run.stderr
    delivered = seqs(sandbox.interactions)
    assert sorted(delivered) == [i for i in range(1000) if i != 500]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert len(rejects) == 1
    assert rejects[0]["stream"] == "interactions"
    assert rejects[0]["record"]["seq"] == 500
    assert rejects[0]["reasons"] == ["revenue: not allowed on type 'product_detail_page_view'"]
    assert run.states[-1] == {"bookmarks": {"interactions": {"seq": 999}}}
    assert "Set aside a record of stream 'interactions' (validation: field 'revenue'" in run.stderr
    assert "12.5" not in run.stderr, "values stay out of the log"
    assert_key_hidden(run.stdout, run.stderr)


def test_records_the_server_refuses_are_set_aside_and_the_rest_resent(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(reject_user_ids=["user-3"])
    records = [interaction(i) for i in range(300)]
    config = write_config(tmp_path, sandbox.url, batch_size_rows=100)

    run = run_target(config, singer_input(records))

    assert run.returncode == 0, run.stderr
    refused = [i for i in range(300) if i % 97 == 3]
    assert sorted(seqs(sandbox.interactions)) == [i for i in range(300) if i not in refused]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert sorted(r["record"]["seq"] for r in rejects) == refused
    assert {r["stage"] for r in rejects} == {"miso"}
    assert all(r["reasons"][0].startswith("user_id: ") for r in rejects)


def test_100k_records_through_faults_lose_nothing(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(
        rate_500=0.05,
        rate_503=0.05,
        rate_429=0.10,
        drop_before_store=0.03,
        drop_after_store=0.02,
        seed=7,
    )
    records = [interaction(i) for i in range(100_000)]
    records[4242]["timestamp"] = "not a time"
    config = write_config(tmp_path, sandbox.url, max_retries=20)

    run = run_target(config, singer_input(records, state_every=5000))

    assert run.returncode == 0, run.stderr[-3000:]
    delivered = collections.Counter(seqs(sandbox.interactions))
    expected = set(range(100_000)) - {4242}
    assert set(delivered) == expected, "every valid record must arrive"
    stats = sandbox.stats()
    # Duplicates can only come from connections dropped after the batch was stored.
    duplicates = sum(count - 1 for count in delivered.values())
    assert duplicates <= stats["faults"].get("drop_after_store", 0) * 1000
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [r["record"]["seq"] for r in rejects] == [4242]
    assert rejects[0]["reasons"][0].startswith("timestamp: ")
    assert run.states[-1] == {"bookmarks": {"interactions": {"seq": 99_999}}}
    assert "retry" in run.stderr
    assert_key_hidden(run.stdout, run.stderr)


def test_outage_exhausts_retries_exits_non_zero_and_writes_no_state(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(fail_all_status=503)
    config = write_config(tmp_path, sandbox.url, max_retries=2)

    run = run_target(config, singer_input([interaction(i) for i in range(50)], state_every=10))

    assert run.returncode != 0
    assert run.states == []
    assert "failed 3 times" in run.stderr
    assert "HTTP 503" in run.stderr
    assert_key_hidden(run.stdout, run.stderr)


def test_wrong_key_is_fatal_at_once_with_a_message_that_says_what_to_fix(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    settings = json.loads(config.read_text())
    settings["api_key"] = "wrong-key-value-12345"
    config.write_text(json.dumps(settings))

    run = run_target(config, singer_input([interaction(i) for i in range(10)]))

    assert run.returncode != 0
    assert run.states == []
    assert "401" in run.stderr
    assert "secret" in run.stderr
    assert "wrong-key-value-12345" not in run.stdout + run.stderr
    assert sandbox.stats()["requests_by_status"].get("401", 0) == 1, "401 is not retried"


def test_key_never_appears_even_when_connections_fail(tmp_path):
    # Nothing listens on this port: every attempt fails with a connection error.
    config = write_config(tmp_path, "http://127.0.0.1:9", max_retries=1)

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert "connection failed" in run.stderr
    assert_key_hidden(run.stdout, run.stderr)


def test_dry_run_validates_but_stores_nothing(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url, dry_run=True)

    run = run_target(config, singer_input([interaction(i) for i in range(20)]))

    assert run.returncode == 0, run.stderr
    assert sandbox.interactions == []
    assert sandbox.stats()["requests_by_status"].get("200", 0) >= 1
    assert "dry run" in run.stderr


def test_too_many_rejects_fail_the_run_without_state(sandbox, tmp_path):
    records = [interaction(i, user_id=None) for i in range(30)]  # no identity at all
    config = write_config(tmp_path, sandbox.url, max_rejects=5)

    run = run_target(config, singer_input(records))

    assert run.returncode != 0
    assert run.states == []
    assert "max_rejects=5" in run.stderr
    assert len(read_rejects(tmp_path / "rejects.jsonl")) == 6


def test_state_is_written_only_after_its_records_are_acknowledged(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(latency_ms=30)
    total = 2000
    singer = singer_input([interaction(i) for i in range(total)], state_every=100)
    config = write_config(tmp_path, sandbox.url, batch_size_rows=50, state_checkpoint_records=200)
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    process.stdin.write(singer)
    process.stdin.close()
    written = _read_states_checking_each(process, sandbox)
    assert process.wait(timeout=60) == 0
    assert len(written) >= 5, "the run should checkpoint several times"


def test_killed_run_resumed_from_its_last_state_delivers_every_record(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(latency_ms=20)
    total = 3000
    records = [interaction(i) for i in range(total)]
    config = write_config(tmp_path, sandbox.url, batch_size_rows=50, state_checkpoint_records=100)
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    process.stdin.write(singer_input(records, state_every=100))
    process.stdin.close()
    states = []
    for line in process.stdout:
        states.append(json.loads(line))
        if len(states) == 3:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    resume_after = states[-1]["bookmarks"]["interactions"]["seq"]
    assert resume_after < total - 1, "the kill must land mid-run"

    # The tap resumes from the last STATE the target wrote (an inclusive bookmark).
    rerun = run_target(config, singer_input(r for r in records if r["seq"] >= resume_after))

    assert rerun.returncode == 0, rerun.stderr
    assert set(seqs(sandbox.interactions)) == set(range(total))


def test_float_in_state_is_written_back_unchanged(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)
    singer = (
        singer_input([interaction(1)])
        + json.dumps(
            {
                "type": "STATE",
                "value": {"bookmarks": {"s": {"replication_key_value": 1717200000.125}}},
            },
        )
        + "\n"
    )

    run = run_target(config, singer)

    assert run.returncode == 0, run.stderr
    assert run.states[-1] == {"bookmarks": {"s": {"replication_key_value": 1717200000.125}}}


def test_api_key_in_the_url_is_refused_before_any_request(sandbox, tmp_path):
    config = write_config(tmp_path, f"{sandbox.url}/?api_key={API_KEY}")

    run = run_target(config, singer_input([interaction(1)]))

    assert run.returncode != 0
    assert "api_url: must not carry a query string" in run.stderr
    assert sandbox.stats()["requests_total"] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_terminated_run_delivers_what_it_read_and_says_it_did_not_finish(
    sandbox,
    tmp_path,
    signum,
):
    config = write_config(
        tmp_path,
        sandbox.url,
        batch_size_rows=300,
        state_checkpoint_seconds=3600,
    )
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    process.stdin.write(singer_input([interaction(i) for i in range(500)], state_every=500))
    process.stdin.flush()  # stdin stays open: the target waits for more input
    # The first full batch (300) is sent; the other 200 wait in the sink's buffer.
    deadline = time.monotonic() + 30
    while len(sandbox.interactions) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sandbox.interactions) == 300
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 128 + signum
    assert sorted(seqs(sandbox.interactions)) == list(range(500))
    assert json.loads(stdout.splitlines()[-1]) == {"bookmarks": {"interactions": {"seq": 499}}}
    assert_key_hidden(stdout, stderr)


def _read_states_checking_each(process: subprocess.Popen, sandbox, on_state=None) -> list[int]:
    # Each STATE line, as it appears, must cover only records the sandbox already stored.
    written = []
    for line in process.stdout:
        state_seq = json.loads(line)["bookmarks"]["interactions"]["seq"]
        stored = set(seqs(sandbox.interactions))
        assert set(range(state_seq + 1)) <= stored, f"STATE seq={state_seq} came too early"
        written.append(state_seq)
        if on_state is not None:
            on_state(written)
    return written


def test_reading_goes_on_while_a_checkpoints_requests_are_answered(sandbox_factory, tmp_path):
    # One batch per checkpoint and a slow API: if each checkpoint waited for its request,
    # never more than one request would be on the wire.
    sandbox = sandbox_factory(latency_ms=200)
    total = 1000
    config = write_config(
        tmp_path,
        sandbox.url,
        batch_size_rows=50,
        state_checkpoint_records=50,
        max_concurrent_requests=4,
    )
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    process.stdin.write(singer_input([interaction(i) for i in range(total)], state_every=50))
    process.stdin.close()

    written = _read_states_checking_each(process, sandbox)

    assert process.wait(timeout=60) == 0
    assert sandbox.stats()["max_in_flight"] == 4, "checkpoints must not serialize requests"
    assert written == sorted(written), "STATEs come out in input order"
    assert written[-1] == total - 1
    assert sorted(seqs(sandbox.interactions)) == list(range(total))


def test_an_outage_mid_run_stops_states_before_the_first_undelivered_record(
    sandbox_factory,
    tmp_path,
):
    sandbox = sandbox_factory(latency_ms=50)
    total = 3000

    def start_outage(written: list[int]) -> None:
        if len(written) == 2:
            sandbox.set_faults(latency_ms=50, fail_all_status=503)

    config = write_config(
        tmp_path,
        sandbox.url,
        batch_size_rows=50,
        state_checkpoint_records=100,
        max_retries=1,
    )
    process = subprocess.Popen(
        [*target_command(), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # A target that hangs instead of failing is killed, and the test fails on its exit code.
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    # stdin is written from a thread: the target stops reading when it fails.
    singer = singer_input([interaction(i) for i in range(total)], state_every=100)
    feeder = threading.Thread(target=_feed, args=(process, singer))
    feeder.start()

    written = _read_states_checking_each(process, sandbox, start_outage)
    stderr = process.stderr.read()
    feeder.join(timeout=60)
    watchdog.cancel()

    assert process.wait(timeout=60) == 1, "the run must fail, not hang or succeed"
    assert len(written) >= 2
    assert written[-1] < total - 1, "no STATE after the outage began"
    assert "HTTP 503" in stderr
    assert_key_hidden("\n".join(map(str, written)), stderr)


def _feed(process: subprocess.Popen, singer: str) -> None:
    try:
        process.stdin.write(singer)
        process.stdin.close()
    except BrokenPipeError:
        pass  # the target stopped reading: that is the point of the test


def test_a_failed_run_does_not_wait_out_the_backoffs_of_other_requests(sandbox_factory, tmp_path):
    # Requests are in a 30-60 s backoff when too many rejects end the run: it must stop
    # then, not once they have used up their retries.
    sandbox = sandbox_factory(fail_all_status=503)
    records = [interaction(i) for i in range(20)] + [
        interaction(i, user_id=None)
        for i in range(20, 40)  # no identity: set aside
    ]
    config = write_config(
        tmp_path,
        sandbox.url,
        batch_size_rows=10,
        max_rejects=2,
        max_retries=5,
        retry_initial_delay=60,
        retry_max_delay=60,
    )
    started = time.monotonic()

    run = run_target(config, singer_input(records), timeout=120)

    assert run.returncode == 1
    assert "max_rejects=2" in run.stderr
    assert run.states == []
    assert time.monotonic() - started < 25, "the backoffs were waited out"
