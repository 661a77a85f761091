"""Backfills after a fix: only delivered events are remembered, per Miso environment.

The real target process against the sandbox: a struct event without a rule (skipped) and
interactions Miso refused are sent by the next run once the rule and the data are fixed;
events already delivered are not sent again; another environment gets everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

from target_miso import samples
from target_miso.miso.sandbox import Faults, Sandbox
from tests.helpers import read_rejects, run_target, write_config
from tests.snowplow.test_layouts import STREAM, by_time, singer_lines

VIDEO_RULE = {
    "category": "video",
    "type": "custom",
    "fields": {"custom_action_name": "video {action}"},
}


def options(tmp_path, *extra_rules, **extra):
    base = samples.SAMPLE_MAPPING_OPTIONS
    return {
        **base,
        "struct_rules": [*base["struct_rules"], *extra_rules],
        "dedupe_store": str(tmp_path / "seen.sqlite"),
        **extra,
    }


def video_seeks(interactions):
    return [i for i in interactions if i["type"] == "custom"]


def test_skipped_and_refused_events_are_sent_after_the_fix_and_nothing_else(
    sandbox_factory, tmp_path
):
    sandbox = sandbox_factory(reject_user_ids=["u-42"])
    singer = singer_lines(samples.render_tsv_shaped(samples.sample_events()))
    expected = samples.expected_interactions()
    of_u42 = [i for i in expected if i.get("user_id") == "u-42"]
    assert len(of_u42) == 4, "home page view (held for its ping), checkout, product view, refund"

    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)})
    first = run_target(config, singer)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "        1  struct: video/seek (no struct rule)\n" in first.stderr
    refused = [r for r in read_rejects(tmp_path / "rejects.jsonl") if r["stage"] == "miso"]
    assert len(refused) == 4
    assert by_time(sandbox.interactions) == [i for i in expected if i not in of_u42]

    # The fix: a rule for the video events, and Miso accepts u-42's interactions again.
    sandbox.store.set_faults(Faults())
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path, VIDEO_RULE)})
    second = run_target(config, singer)

    assert second.returncode == 0, second.stderr[-3000:]
    sent_now = sandbox.interactions[len(expected) - 4 :]
    seeks = video_seeks(sent_now)
    assert [s["custom_action_name"] for s in seeks] == ["video seek"], "the skipped event, once"
    assert by_time([i for i in sent_now if i not in seeks]) == of_u42, "the refused ones, once"
    assert by_time([i for i in sandbox.interactions if i["type"] != "custom"]) == expected

    third = run_target(config, singer)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(sandbox.interactions) == len(expected) + 1, "everything was delivered already"


def test_another_miso_environment_gets_everything_from_the_same_store(sandbox, tmp_path):
    singer = singer_lines(samples.render_tsv_shaped(samples.sample_events()))
    mappings = {STREAM: options(tmp_path)}
    first = run_target(write_config(tmp_path, sandbox.url, mappings=mappings), singer)
    assert first.returncode == 0, first.stderr[-3000:]

    with Sandbox(api_key="staging-secret-key") as staging:
        config = write_config(
            tmp_path, staging.url, api_key="staging-secret-key", mappings=mappings
        )
        second = run_target(config, singer)
        assert second.returncode == 0, second.stderr[-3000:]
        assert by_time(staging.interactions) == samples.expected_interactions()
    assert "        1  snowplow: duplicate event_id\n" in second.stderr, "only row 11's copy"
    assert len(sandbox.interactions) == len(samples.expected_interactions())


def test_dedupe_replay_sends_again_once_and_still_drops_duplicates_within_the_run(
    sandbox, tmp_path
):
    singer = singer_lines(samples.render_tsv_shaped(samples.sample_events()))
    expected = samples.expected_interactions()
    first = run_target(
        write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)}), singer
    )
    assert first.returncode == 0, first.stderr[-3000:]

    replay = {STREAM: options(tmp_path, dedupe_replay=True)}
    second = run_target(write_config(tmp_path, sandbox.url, mappings=replay), singer)
    assert second.returncode == 0, second.stderr[-3000:]
    assert by_time(sandbox.interactions[len(expected) :]) == expected, "each event once more"

    normal = run_target(
        write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)}), singer
    )
    assert normal.returncode == 0, normal.stderr[-3000:]
    assert len(sandbox.interactions) == 2 * len(expected)


def test_the_rejects_file_replayed_after_a_fix_sends_the_set_aside_record_once(sandbox, tmp_path):
    rows = samples.render_tsv_shaped(samples.sample_events())
    like = next(row for row in rows if row.get("se_action") == "like")
    broken_rule = {"category": "product", "action": "like", "type": "rate",
                   "fields": {"product_ids": ["{label}"], "rating": "{label}"}}  # fmt: skip
    mappings = {STREAM: {**options(tmp_path), "struct_rules": [broken_rule]}}
    first = run_target(write_config(tmp_path, sandbox.url, mappings=mappings), singer_lines(rows))
    assert first.returncode == 0, first.stderr[-3000:]
    rejects_path = tmp_path / "rejects.jsonl"
    [reject] = read_rejects(rejects_path)
    assert (reject["stage"], reject["record"]["event_id"]) == ("mapping", like["event_id"])
    assert "like" not in {i["type"] for i in sandbox.interactions}

    fixed = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)},
                         rejects_path=str(tmp_path / "rejects-2.jsonl"))  # fmt: skip
    command = [sys.executable, "-m", "target_miso.rejects_replay", "--stream", STREAM]
    replayed = subprocess.run(
        [*command, str(rejects_path)], capture_output=True, text=True, check=True
    )
    assert "rejects_replay: 1 records of stream atomic-events" in replayed.stderr
    second = run_target(fixed, replayed.stdout)
    third = run_target(fixed, replayed.stdout)

    assert second.returncode == third.returncode == 0, second.stderr[-3000:]
    likes = [i for i in sandbox.interactions if i["type"] == "like"]
    assert likes == [i for i in samples.expected_interactions() if i["type"] == "like"]
    assert "        1  snowplow: duplicate event_id\n" in third.stderr


def test_rejects_replay_leaves_out_what_cannot_be_mapped_again(tmp_path):
    path = tmp_path / "rejects.jsonl"
    entries = [
        {"stream": "s", "stage": "mapping", "record": {"event_id": "1", "se_label": "x"}},
        {"stream": "s", "stage": "miso", "record": {"event_id": "2", "page_url": "u"}},
        {"stream": "s", "stage": "input", "record": "not json"},
        {"stream": "other", "stage": "mapping", "record": {"event_id": "3", "x": 1}},
    ]
    path.write_text("".join(f"{json.dumps(e)}\n" for e in entries))
    command = [sys.executable, "-m", "target_miso.rejects_replay", "--stream", "s", str(path)]

    done = subprocess.run(command, capture_output=True, text=True, check=True)

    assert done.stdout.splitlines() == [
        '{"type": "SCHEMA", "stream": "s", "schema": {"type": "object", "properties": {}}, '
        '"key_properties": []}',
        '{"type": "RECORD", "stream": "s", "record": {"event_id": "1", "se_label": "x"}}',
    ]
    assert "left out 1: only the columns that identify the row" in done.stderr
    assert "left out 1: stage input not chosen" in done.stderr
