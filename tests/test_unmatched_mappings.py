"""A ``mappings`` key that no stream of the run used fails the run at its end (or warns)."""

from __future__ import annotations

from tests.helpers import interaction, run_target, seqs, singer_input, write_config

STREAM = "atomic-events_for_miso"  # the stream tap-postgres gives for the shipped view
RECORDS = [interaction(seq) for seq in range(1, 26)]
LAST_STATE = {"bookmarks": {STREAM: {"seq": 25}}}


def error_lines(stderr: str, level: str = "ERROR") -> list[str]:
    return [line for line in stderr.splitlines() if level in line and "mappings:" in line]


def test_a_key_matching_no_stream_fails_after_delivering_everything_and_the_final_state(
    sandbox, tmp_path
):
    mappings = {"atomic-events": {"preset": "passthrough"}, "*_for_miso": {"preset": "auto"}}
    config = write_config(tmp_path, sandbox.url, batch_size_rows=10, mappings=mappings)

    run = run_target(config, singer_input(RECORDS, state_every=10, stream=STREAM))

    assert run.returncode == 1, run.stderr[-3000:]
    assert sorted(seqs(sandbox.interactions)) == list(range(1, 26)), "every record delivered"
    assert run.states[-1] == LAST_STATE, "the final STATE is written"
    [line] = error_lines(run.stderr)
    assert "'atomic-events' matched no stream" in line
    assert "'*_for_miso'" not in line.partition("matched")[0], "the used glob is not named"
    assert f"(streams seen: '{STREAM}')" in line
    assert "Run summary" in run.stderr


def test_warn_logs_a_warning_and_exits_0(sandbox, tmp_path):
    config = write_config(
        tmp_path,
        sandbox.url,
        unmatched_mappings="warn",
        mappings={"atomic-events": {"preset": "passthrough"}},
    )

    run = run_target(config, singer_input(RECORDS, stream=STREAM))

    assert run.returncode == 0, run.stderr[-3000:]
    assert len(sandbox.interactions) == len(RECORDS)
    assert run.states[-1] == LAST_STATE
    assert error_lines(run.stderr) == []
    [line] = error_lines(run.stderr, "WARNING")
    assert "'atomic-events' matched no stream" in line
    assert f"(streams seen: '{STREAM}')" in line


def test_a_glob_that_matches_the_stream_is_not_reported(sandbox, tmp_path):
    config = write_config(
        tmp_path, sandbox.url, mappings={"atomic-events*": {"preset": "passthrough"}}
    )

    run = run_target(config, singer_input(RECORDS, stream=STREAM))

    assert run.returncode == 0, run.stderr[-3000:]
    assert len(sandbox.interactions) == len(RECORDS)
    assert "matched no stream" not in run.stderr


def test_a_glob_shadowed_by_the_exact_name_is_reported(sandbox, tmp_path):
    mappings = {"atomic-*": {"preset": "passthrough"}, STREAM: {"preset": "passthrough"}}
    config = write_config(tmp_path, sandbox.url, mappings=mappings)

    run = run_target(config, singer_input(RECORDS, stream=STREAM))

    assert run.returncode == 1
    [line] = error_lines(run.stderr)
    assert "mappings: 'atomic-*' matched no stream" in line


def test_a_run_without_any_stream_is_not_checked(sandbox, tmp_path):
    config = write_config(
        tmp_path, sandbox.url, mappings={"atomic-events": {"preset": "passthrough"}}
    )

    run = run_target(config, "")

    assert run.returncode == 0, run.stderr[-3000:]
    assert "matched no stream" not in run.stderr
