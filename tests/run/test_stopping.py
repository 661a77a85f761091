"""Stops the way production stops a run: SIGTERM, SIGINT, a second signal, kill -9.

Each test runs the real target process against the sandbox, with the input fed from a
thread and left open, so the signal lands while the target is reading, mapping, handing a
batch over or waiting for the tap; then it checks what the last STATE promises, and resumes
from that STATE as a tap would.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from target_miso.run.graceful_stop import SAME_REQUEST_SECONDS
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

#: The tap in these tests writes a STATE every this many records (not a divisor of the
#: batch sizes, so a STATE often falls inside a batch being handed over).
STATE_EVERY = 37


class FedTarget:
    """The target process with its input written from a thread and left open."""

    def __init__(self, config, singer: str) -> None:
        self.process = subprocess.Popen(
            [*target_command(), "--config", str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if not k.startswith("TARGET_MISO_")},
        )
        self._feeder = threading.Thread(target=self._feed, args=(singer.encode(),), daemon=True)
        self._feeder.start()

    def _feed(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the target stopped reading: that is what these tests do to it

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def finish(self, timeout: float = 60) -> tuple[int, list[dict], str, float]:
        """Wait for the exit; return (code, STATE values, stderr, seconds it took)."""
        started = time.monotonic()
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            pytest.fail(f"the target did not exit within {timeout} s")
        took = time.monotonic() - started
        lines = stdout.decode().splitlines()
        states = [json.loads(line) for line in lines]  # a cut STATE line fails here
        return self.process.returncode, states, stderr.decode(), took


def _wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.01)


def _last_seq(states: list[dict]) -> int:
    return states[-1]["bookmarks"]["interactions"]["seq"] if states else -1


def _resume(config, records: list[dict], states: list[dict]) -> None:
    # The tap resumes from the last STATE the target wrote (an inclusive bookmark).
    after = _last_seq(states)
    rerun = run_target(
        config,
        singer_input([r for r in records if r["seq"] >= after], state_every=STATE_EVERY),
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]


PROFILES = {
    # Small batches and checkpoints, few requests at once: delivery is saturated most of
    # the time, so the signal often lands while a batch is being handed over.
    "small batches": {
        "batch_size_rows": 50,
        "state_checkpoint_records": 200,
        "max_concurrent_requests": 2,
    },
    "default batches": {},
}
#: Records per run: enough that the signal lands mid-input, few enough to stay quick.
TOTALS = {"small batches": 8_000, "default batches": 30_000}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_at_a_random_point_loses_nothing_and_the_run_resumes(
    sandbox_factory,
    tmp_path,
    signum,
    profile,
):
    rng = random.Random(f"{signum}-{profile}")  # noqa: S311 - test data
    total = TOTALS[profile]
    records = [interaction(i) for i in range(total)]
    for attempt in range(3):
        sandbox = sandbox_factory(latency_ms=rng.choice([20, 50, 100]))
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        config = write_config(workdir, sandbox.url, **PROFILES[profile])
        target = FedTarget(config, singer_input(records, state_every=STATE_EVERY))
        _wait_for(lambda: sandbox.stats()["requests_total"] > 0)  # noqa: B023
        time.sleep(rng.uniform(0, 0.4))
        target.signal(signum)
        code, states, stderr, _ = target.finish()

        assert code == 128 + signum, stderr[-2000:]
        assert "Traceback" not in stderr
        assert API_KEY not in stderr
        promised = _last_seq(states)
        delivered = set(seqs(sandbox.interactions))
        assert set(range(promised + 1)) <= delivered, "the last STATE covers lost records"
        # A graceful stop delivers everything it read: what the tap resends is only what
        # came after its last STATE message (and the inclusive bookmark row).
        read_past_state = {s for s in delivered if s > promised}
        assert len(read_past_state) <= STATE_EVERY

        _resume(config, records, states)
        counts = collections.Counter(seqs(sandbox.interactions))
        assert set(counts) == set(range(total)), "every record arrives after the resume"
        assert sum(n - 1 for n in counts.values()) <= STATE_EVERY + 1


def test_sigterm_while_rejects_are_written_ends_and_keeps_every_reject(
    sandbox_factory,
    tmp_path,
):
    rng = random.Random(14)  # noqa: S311 - test data
    total = 20_000
    # Every third record has no identity: set aside at validation, so the rejects file is
    # being written most of the time.
    records = [interaction(i, user_id=None) if i % 3 == 0 else interaction(i) for i in range(total)]
    for attempt in range(8):
        sandbox = sandbox_factory(latency_ms=20)
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        config = write_config(workdir, sandbox.url, batch_size_rows=50, max_rejects=None)
        target = FedTarget(config, singer_input(records, state_every=STATE_EVERY))
        _wait_for((workdir / "rejects.jsonl").exists)
        time.sleep(rng.uniform(0, 0.2))
        target.signal(signal.SIGTERM)
        code, states, stderr, _ = target.finish(timeout=30)

        assert code == 128 + signal.SIGTERM, stderr[-2000:]
        rejected = {r["record"]["seq"] for r in read_rejects(workdir / "rejects.jsonl")}
        delivered = set(seqs(sandbox.interactions))
        promised = _last_seq(states)
        assert set(range(promised + 1)) <= delivered | rejected
        assert f"set aside: {len(rejected)} " in stderr, "every reject counted is on disk"


def _started_in_an_outage(sandbox_factory, tmp_path, **settings) -> FedTarget:
    # Every request answers 503: nothing can be delivered while the run is stopped.
    sandbox = sandbox_factory(fail_all_status=503)
    config = write_config(
        tmp_path,
        sandbox.url,
        batch_size_rows=50,
        max_retries=50,
        retry_initial_delay=1,
        **settings,
    )
    target = FedTarget(config, singer_input([interaction(i) for i in range(500)], state_every=50))
    _wait_for(lambda: sandbox.stats()["requests_total"] > 0)
    return target


def test_sigterm_during_an_outage_ends_within_the_grace_period_without_state(
    sandbox_factory,
    tmp_path,
):
    target = _started_in_an_outage(
        sandbox_factory,
        tmp_path,
        stop_grace_seconds=2,
        retry_max_delay=5,
    )

    target.signal(signal.SIGTERM)
    code, states, stderr, took = target.finish(timeout=30)

    assert code == 128 + signal.SIGTERM
    assert took < 2 + 3, f"took {took:.1f} s with stop_grace_seconds=2"
    assert states == [], "nothing was delivered, so no STATE may be written"
    assert "stop_grace_seconds=2" in stderr
    assert "Traceback" not in stderr
    assert API_KEY not in stderr


def test_a_second_signal_stops_at_once(sandbox_factory, tmp_path):
    target = _started_in_an_outage(sandbox_factory, tmp_path, stop_grace_seconds=120)

    target.signal(signal.SIGTERM)
    time.sleep(SAME_REQUEST_SECONDS + 0.5)
    target.signal(signal.SIGINT)
    code, states, stderr, took = target.finish(timeout=30)

    assert took < 5
    assert code in {128 + signal.SIGTERM, 128 + signal.SIGINT}
    assert states == []
    assert "a second signal" in stderr


def test_a_signal_repeated_at_once_is_the_same_stop_request(sandbox_factory, tmp_path):
    # A process group's SIGTERM reaches the target directly and again, milliseconds later,
    # through Meltano's forwarding: that is one request, and the stop stays graceful.
    sandbox = sandbox_factory(latency_ms=50)
    config = write_config(tmp_path, sandbox.url, batch_size_rows=50)
    records = [interaction(i) for i in range(3000)]
    target = FedTarget(config, singer_input(records, state_every=STATE_EVERY))
    _wait_for(lambda: len(sandbox.interactions) >= 100)

    target.signal(signal.SIGTERM)
    time.sleep(0.05)  # back to back, two signals of one kind can merge into one
    target.signal(signal.SIGTERM)
    code, states, stderr, _ = target.finish(timeout=60)

    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped at once" not in stderr
    assert "the same stop request" in stderr
    promised = _last_seq(states)
    assert promised >= 0, "the STATE covering what was delivered was written"
    assert set(range(promised + 1)) <= set(seqs(sandbox.interactions))


def test_kill_9_under_faults_resends_at_most_the_stated_window(sandbox_factory, tmp_path):
    # Some requests spend seconds in retries while the others go on: without back-pressure
    # reading runs far past the last STATE, and a kill -9 then resends all of it.
    rng = random.Random(9)  # noqa: S311 - test data
    total = 6_000
    records = [interaction(i) for i in range(total)]
    settings = {
        "batch_size_rows": 50,
        "state_checkpoint_records": 200,
        "max_concurrent_requests": 4,
        "max_retries": 30,
        "retry_initial_delay": 0.3,
        "retry_max_delay": 1,
    }
    # The README's bound: a checkpoint interval plus the batches delivery holds.
    bound = 200 + 50 * (4 + 2)
    widest = 0
    for attempt in range(3):
        sandbox = sandbox_factory(rate_503=0.15, latency_ms=5, seed=attempt)
        workdir = tmp_path / str(attempt)
        workdir.mkdir()
        config = write_config(workdir, sandbox.url, **settings)
        target = FedTarget(config, singer_input(records, state_every=STATE_EVERY))
        _wait_for(lambda: len(sandbox.interactions) >= 1000)  # noqa: B023
        time.sleep(rng.uniform(0, 1))
        target.process.kill()
        _, states, _, _ = target.finish()

        promised = _last_seq(states)
        accepted_past_state = {s for s in seqs(sandbox.interactions) if s > promised}
        widest = max(widest, len(accepted_past_state))
        assert len(accepted_past_state) <= bound

        _resume(config, records, states)
        assert set(seqs(sandbox.interactions)) == set(range(total))
    assert widest > 0, "the kill should land while records were past the last STATE"


def _duplicates(interactions) -> dict[int, int]:
    counts = collections.Counter(seqs(interactions))
    return {seq: n for seq, n in counts.items() if n > 1}


def test_after_a_graceful_stop_the_next_run_sends_nothing_twice(sandbox_factory, tmp_path):
    # The tap's STATEs are far apart, so much was delivered past the last one when the signal
    # lands; the tap re-reads all of it. The resend guard skips what Miso already has; only
    # the bookmark row itself (an inclusive tap re-sends it, and the last STATE covers it)
    # may come twice.
    total, state_every = 12_000, 1_500
    records = [interaction(i) for i in range(total)]
    sandbox = sandbox_factory(latency_ms=20)
    config = write_config(tmp_path, sandbox.url, batch_size_rows=100)
    target = FedTarget(config, singer_input(records, state_every=state_every))
    _wait_for(lambda: len(sandbox.interactions) >= 2_000)
    target.signal(signal.SIGTERM)
    code, states, stderr, _ = target.finish()
    assert code == 128 + signal.SIGTERM, stderr[-2000:]
    promised = _last_seq(states)
    assert max(seqs(sandbox.interactions)) > promised, "delivered past the last STATE"

    rerun = run_target(
        config,
        singer_input([r for r in records if r["seq"] >= promised], state_every=state_every),
    )

    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert set(seqs(sandbox.interactions)) == set(range(total)), "nothing lost"
    assert set(_duplicates(sandbox.interactions)) <= {promised}
    assert "not sent again:" in rerun.stderr


def test_after_kill_9_the_next_run_resends_only_what_was_unsaved(sandbox_factory, tmp_path):
    # Without the guard a kill resends everything accepted past the last STATE (up to the
    # replay bound); with it, only what Miso accepted after the guard's last save: the
    # batches answered since the last batch was handed over.
    total, state_every = 12_000, 1_500
    records = [interaction(i) for i in range(total)]
    sandbox = sandbox_factory(latency_ms=20)
    config = write_config(tmp_path, sandbox.url, batch_size_rows=100, max_concurrent_requests=2)
    target = FedTarget(config, singer_input(records, state_every=state_every))
    _wait_for(lambda: len(sandbox.interactions) >= 2_000)
    target.process.kill()
    _, states, _, _ = target.finish()
    promised = _last_seq(states)
    accepted_past_state = {s for s in seqs(sandbox.interactions) if s > promised}

    _resume(config, records, states)

    assert set(seqs(sandbox.interactions)) == set(range(total)), "nothing lost"
    resent = set(_duplicates(sandbox.interactions)) - {promised}
    assert len(accepted_past_state) > 300, "the kill landed with much accepted past the STATE"
    assert len(resent) <= 100 * (2 + 2), f"{len(resent)} of {len(accepted_past_state)} resent"
