"""`meltano run` stopped with SIGTERM, the way Kubernetes and Airflow stop it.

Meltano 4.4 forwards the SIGTERM to the tap and the target and cancels its own reading of the
target's output: a STATE the target writes while it drains is never saved (measured here), so
the next run re-reads everything past the last STATE saved before the signal. The target's
resend guard keeps that re-read from reaching Miso twice, whatever the preset: here a plain
table with the passthrough preset, which has no ids of its own to drop repeats by, read by
either Postgres extractor of meltano.yml.
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


def _meltano(tmp_path, sandbox, extractor) -> Meltano:
    prefix = extractor.upper().replace("-", "_")  # TAP_POSTGRES, TAP_POSTGRES_COPY
    return Meltano(
        tmp_path,
        sandbox,
        **{
            f"{prefix}_FILTER_SCHEMAS": '["web"]',
            f"{prefix}__SELECT": json.dumps([f"{STREAM}.*"]),
            f"{prefix}__METADATA": json.dumps(
                {STREAM: {"replication-method": "INCREMENTAL", "replication-key": "seq"}}
            ),
        },
        TARGET_MISO_MAPPINGS=json.dumps({STREAM: {"preset": "passthrough"}}),
        TARGET_MISO_UNMATCHED_MAPPINGS="warn",  # meltano.yml's Snowplow keys match nothing here
        TARGET_MISO_BATCH_SIZE_ROWS=500,
        TARGET_MISO_MAX_CONCURRENT_REQUESTS=1,
    )


@pytest.mark.usefixtures("meltano_installed")
@pytest.mark.parametrize("extractor", ["tap-postgres-copy", "tap-postgres"])
@pytest.mark.parametrize("stopped", ["meltano", "process group"])
def test_a_sigterm_run_then_a_rerun_delivers_every_row_once(
    events_db, tmp_path, sandbox_factory, stopped, extractor
):
    create_web_events(events_db, 1, ROWS)
    sandbox = sandbox_factory(latency_ms=300)  # the tap reads far ahead of delivery
    meltano = _meltano(tmp_path, sandbox, extractor)
    running = meltano.popen("run", extractor, "target-miso")
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
    rerun = meltano("run", "--force", extractor, "target-miso")

    received = collections.Counter(i["product_ids"][0] for i in sandbox.interactions)
    assert 0 < delivered_before < ROWS
    assert set(received) == {f"sku-{i}" for i in range(1, ROWS + 1)}, "nothing lost"
    twice = sorted(sku for sku, n in received.items() if n > 1)
    # At most the bookmark row, which an inclusive tap re-sends after a saved STATE.
    assert len(twice) <= 1, f"{len(twice)} rows sent twice, e.g. {twice[:5]}"
    assert "not sent again:" in rerun.stderr
