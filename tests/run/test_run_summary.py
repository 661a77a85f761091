"""What the run summary says about a failed run and about answers lost in flight."""

from __future__ import annotations

import collections
import re

from tests.helpers import interaction, run_target, seqs, singer_input, write_config

NOT_DELIVERED = re.compile(
    r"mapped but not delivered: (\d+) interactions \(of (\d+) handed to batches: (\d+) "
    r"accepted, (\d+) refused by Miso and set aside\)",
)
LOST = "answers lost in flight: "


def summary(stderr: str) -> str:
    return stderr.partition("Run summary:")[2]


def test_a_failed_run_counts_exactly_what_was_mapped_and_not_delivered(sandbox_factory, tmp_path):
    # user-3 is refused by Miso; with max_rejects 0 its reject fails the run, while the other
    # batches are delivered (or not) concurrently, and reading stops at the next hand-over.
    sandbox = sandbox_factory(reject_user_ids=["user-3"])
    records = [interaction(seq) for seq in range(60)]
    config = write_config(tmp_path, sandbox.url, batch_size_rows=10, max_rejects=0)

    run = run_target(config, singer_input(records))

    assert run.returncode == 1
    [found] = NOT_DELIVERED.findall(summary(run.stderr))
    missing, handed, accepted, refused = map(int, found)
    assert 10 <= handed <= 60, "the failure may stop the reading before the end"
    assert refused == 1
    assert accepted == len(sandbox.interactions)
    assert missing == handed - len(sandbox.interactions) - 1
    assert missing >= 9, "the refused record's batch stored nothing"


def test_a_run_failed_while_reading_counts_what_was_not_delivered(sandbox_factory, tmp_path):
    sandbox = sandbox_factory(fail_all_status=503)
    config = write_config(
        tmp_path, sandbox.url, batch_size_rows=10, state_checkpoint_records=10, max_retries=0
    )

    run = run_target(config, singer_input([interaction(s) for s in range(500)], state_every=10))

    assert run.returncode == 1
    assert sandbox.interactions == []
    [found] = NOT_DELIVERED.findall(summary(run.stderr))
    missing, handed, accepted, refused = map(int, found)
    assert (accepted, refused) == (0, 0)
    assert 0 < missing == handed < 500, "the run stopped reading at the failure"
    assert LOST not in run.stderr, "max_retries 0: nothing was retried"


def test_a_run_that_succeeds_has_no_not_delivered_line(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url)

    run = run_target(config, singer_input([interaction(s) for s in range(30)]))

    assert run.returncode == 0, run.stderr[-3000:]
    assert "mapped but not delivered" not in run.stderr
    assert LOST not in run.stderr


def test_retries_after_lost_answers_warn_that_records_may_be_stored_twice(
    sandbox_factory, tmp_path
):
    sandbox = sandbox_factory(drop_after_store=0.3, rate_500=0.1, rate_429=0.2, seed=3)
    config = write_config(tmp_path, sandbox.url, batch_size_rows=10, max_retries=30)

    run = run_target(config, singer_input([interaction(s) for s in range(300)]))

    assert run.returncode == 0, run.stderr[-3000:]
    faults = sandbox.stats()["faults"]
    lost = faults.get("drop_after_store", 0) + faults.get("500", 0)
    assert lost > 0, "the seed fires the faults"
    assert faults.get("429", 0) > 0
    line = next(line for line in summary(run.stderr).splitlines() if LOST in line)
    assert f"{LOST}{lost} requests were retried" in line, "429s stored nothing: not counted"
    assert "some records may be stored twice (at most one batch per such retry)" in line
    delivered = collections.Counter(seqs(sandbox.interactions))
    assert set(delivered) == set(range(300))
    assert sum(n - 1 for n in delivered.values()) <= faults.get("drop_after_store", 0) * 10
