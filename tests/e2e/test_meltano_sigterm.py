"""`meltano run` stopped with SIGTERM, the way Kubernetes and Airflow stop it.

Meltano 4.4 forwards the SIGTERM to the tap and the target and cancels its own reading of the
target's output: a STATE the target writes while it drains is never saved (measured here), so
the next run re-reads everything past the last STATE saved before the signal. The target's
resend guard keeps that re-read from reaching Miso twice, whatever the preset: here a plain
table with the passthrough preset, which has no ids of its own to drop repeats by.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import pytest

from tests.e2e.conftest import Meltano
from tests.postgres import create_web_events

pytestmark = pytest.mark.e2e
ROWS = 20_000
STREAM = "web-events"


def _meltano(tmp_path, sandbox) -> Meltano:
    return Meltano(
        tmp_path,
        sandbox,
        TAP_POSTGRES_FILTER_SCHEMAS='["web"]',
        TAP_POSTGRES__SELECT=json.dumps([f"{STREAM}.*"]),
        TAP_POSTGRES__METADATA=json.dumps(
            {STREAM: {"replication-method": "INCREMENTAL", "replication-key": "seq"}}
        ),
        TARGET_MISO_MAPPINGS=json.dumps({STREAM: {"preset": "passthrough"}}),
        TARGET_MISO_UNMATCHED_MAPPINGS="warn",  # meltano.yml's Snowplow keys match nothing here
        TARGET_MISO_BATCH_SIZE_ROWS=500,
        TARGET_MISO_MAX_CONCURRENT_REQUESTS=1,
    )


@pytest.mark.parametrize("stopped", ["meltano", "process group"])
def test_a_sigterm_run_then_a_rerun_delivers_every_row_once(
    meltano_installed, events_db, tmp_path, sandbox_factory, stopped
):
    create_web_events(events_db, 1, ROWS)
    sandbox = sandbox_factory(latency_ms=300)  # the tap reads far ahead of delivery
    meltano = _meltano(tmp_path, sandbox)
    running = meltano.popen("run", "tap-postgres", "target-miso")
    deadline = time.monotonic() + 300
    while len(sandbox.interactions) < 9_000 and running.poll() is None:
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.05)
    if stopped == "meltano":
        os.kill(running.pid, signal.SIGTERM)  # Kubernetes: the container's main process
    else:
        os.killpg(running.pid, signal.SIGTERM)  # Airflow, Ctrl-C: the whole group
    _, stderr = running.communicate(timeout=120)
    delivered_before = len(sandbox.interactions)

    assert running.returncode == 143, stderr[-3000:]
    assert "stopped at once" not in stderr, "Meltano's forwarded SIGTERM is the same request"
    assert "delivering what was read" in stderr
    rerun = meltano("run", "--force", "tap-postgres", "target-miso")

    received = collections.Counter(i["product_ids"][0] for i in sandbox.interactions)
    assert 0 < delivered_before < ROWS
    assert set(received) == {f"sku-{i}" for i in range(1, ROWS + 1)}, "nothing lost"
    twice = sorted(sku for sku, n in received.items() if n > 1)
    # At most the bookmark row, which an inclusive tap re-sends after a saved STATE.
    assert len(twice) <= 1, f"{len(twice)} rows sent twice, e.g. {twice[:5]}"
    assert "not sent again:" in rerun.stderr
