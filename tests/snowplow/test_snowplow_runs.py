"""The Snowplow preset inside the real target process: start-up checks, rejects, dedupe, flushes."""

from __future__ import annotations

import sqlite3
import uuid

from target_miso import samples
from tests.helpers import read_rejects, run_target, write_config
from tests.snowplow.test_layouts import STREAM, by_time, singer_lines

RULES = samples.SAMPLE_MAPPING_OPTIONS["page_rules"]


def options(tmp_path, **extra):
    return {
        **samples.SAMPLE_MAPPING_OPTIONS,
        "dedupe_store": str(tmp_path / "seen.sqlite"),
        **extra,
    }


def test_a_bad_rule_stops_the_target_before_any_record_with_the_setting_path(sandbox, tmp_path):
    bad = {
        **samples.SAMPLE_MAPPING_OPTIONS,
        "page_rules": [*RULES, {"pattern": "(", "type": "read"}],
    }
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: bad})

    run = run_target(config, singer_lines(samples.render_tsv_shaped(samples.sample_events())))

    assert run.returncode != 0
    assert (
        "mappings.atomic-events.page_rules[3].pattern: not a valid regular expression" in run.stderr
    )
    assert sandbox.interactions == []
    assert run.states == []


def test_rows_without_a_timestamp_or_with_broken_json_are_set_aside_naming_the_column(
    sandbox, tmp_path
):
    rows = samples.render_tsv_shaped(samples.sample_events())
    rows[16]["unstruct_event"] = (
        '{"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/'  # the search
    )
    rows[17]["derived_tstamp"] = None  # the struct like
    rows[17]["collector_tstamp"] = None
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)})

    run = run_target(config, singer_lines(rows[:-1]) + singer_lines(rows[-1:]))

    assert run.returncode == 0, run.stderr[-3000:]
    rejects = read_rejects(tmp_path / "rejects.jsonl")
    assert [
        (r["stage"], r["reasons"][0].split(":")[0], r["record"]["event_id"]) for r in rejects
    ] == [
        ("mapping", "unstruct_event", rows[16]["event_id"]),
        ("mapping", "collector_tstamp", rows[17]["event_id"]),
    ]
    expected = [i for i in samples.expected_interactions() if i["type"] not in ("search", "like")]
    assert by_time(sandbox.interactions) == expected, "the rest delivered, nothing else lost"


def test_the_dedupe_store_is_written_at_commit_and_a_second_run_sends_nothing(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)})
    singer = singer_lines(samples.render_tsv_shaped(samples.sample_events()))

    first = run_target(config, singer)
    sent = len(sandbox.interactions)
    with sqlite3.connect(tmp_path / "seen.sqlite") as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM delivered_events")}
    second = run_target(config, singer)

    assert first.returncode == second.returncode == 0
    assert sent == len(samples.expected_interactions())
    # Only delivered events are stored: not the pings, the page view no rule matched, the
    # struct event without a rule, the link click and the checkout step (no Miso type).
    # The page view replaced by the plugin's product view (1) and the legacy order's rows
    # (14-16, one checkout) count as delivered.
    skipped = {2, 3, 4, 5, 9, 10, 19, 22, 29}
    assert stored == {str(uuid.UUID(int=n)) for n in range(1, 30) if n not in skipped}
    assert len(sandbox.interactions) == sent, "the second run sends nothing"
    assert "       21  snowplow: duplicate event_id\n" in second.stderr
    assert "        1  struct: video/seek (no struct rule)\n" in second.stderr, "skipped again"


def test_without_a_dedupe_store_duplicates_within_a_run_still_give_one_interaction(
    sandbox, tmp_path
):
    config = write_config(
        tmp_path, sandbox.url, mappings={STREAM: options(tmp_path, dedupe_store=None)}
    )
    rows = samples.render_tsv_shaped(samples.sample_events())

    first = run_target(config, singer_lines(rows + rows))
    again = run_target(config, singer_lines(rows))

    assert first.returncode == again.returncode == 0
    assert "       31  snowplow: duplicate event_id\n" in first.stderr, (
        "30 repeats + 1 Snowplow duplicate"
    )
    assert len(sandbox.interactions) == 2 * len(samples.expected_interactions()), (
        "no memory across runs"
    )
    assert not (tmp_path / "seen.sqlite").exists()


def test_a_checkpoint_flushes_held_page_views_and_late_pings_are_counted(sandbox, tmp_path):
    config = write_config(
        tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)}, state_checkpoint_records=1
    )
    page, first_ping, late_ping = samples.render_tsv_shaped(
        [
            samples._page(1, 0, "/", "pv-home"),
            samples._ping(2, 10, "/", "pv-home"),
            samples._ping(3, 20, "/", "pv-home"),
        ]
    )
    singer = singer_lines([page]) + singer_lines([first_ping, late_ping])

    run = run_target(config, singer)

    assert run.returncode == 0, run.stderr[-3000:]
    (home,) = sandbox.interactions
    assert home["type"] == "home_page_view"
    assert "duration" not in home, "flushed by the checkpoint after its row, before its pings"
    assert "        2  page_ping: page view already sent\n" in run.stderr


def test_an_interaction_miso_refuses_is_set_aside_with_the_columns_that_identify_its_row(
    sandbox_factory,
    tmp_path,
):
    # Batches keep only those columns of each row (wide rows waiting for a slow API cost
    # ~30 MB otherwise); the rejects file must still say which row it was.
    sandbox = sandbox_factory(reject_user_ids=["u-42"])
    rows = samples.render_tsv_shaped(samples.sample_events())
    config = write_config(tmp_path, sandbox.url, mappings={STREAM: options(tmp_path)})

    run = run_target(config, singer_lines(rows))

    assert run.returncode == 0, run.stderr
    refused = [r for r in read_rejects(tmp_path / "rejects.jsonl") if r["stage"] == "miso"]
    assert refused, "the sample events have interactions of user u-42"
    ids_of_user = {row["event_id"] for row in rows if row.get("user_id") == "u-42"}
    for reject in refused:
        assert reject["interaction"]["user_id"] == "u-42"
        assert reject["record"]["event_id"] in ids_of_user
        assert set(reject["record"]) <= {
            "event_id",
            "event_name",
            "collector_tstamp",
            "page_url",
            "tr_orderid",
        }
    assert all(i.get("user_id") != "u-42" for i in sandbox.interactions)
    assert sandbox.interactions, "the other visitors' interactions are delivered"


def test_two_copies_of_a_page_view_give_the_same_interaction_in_either_order(sandbox, tmp_path):
    # The same event_id and collector_tstamp twice: the copy with the earliest derived_tstamp
    # is sent, whichever was read first (an incremental run and a full refresh agree).
    rows = samples.render_tsv_shaped(samples.sample_events())
    original = next(r for r in rows if r["event"] == "page_view" and "/category/" in r["page_url"])
    copy = {**original, "derived_tstamp": "2024-05-01 09:59:00.000", "user_id": "copy-user"}
    config = write_config(
        tmp_path, sandbox.url, mappings={STREAM: options(tmp_path, dedupe_store=None)}
    )
    delivered = []
    for pair in ([original, copy], [copy, original]):
        sandbox.reset()
        at = rows.index(original)
        run = run_target(config, singer_lines([*rows[:at], *pair, *rows[at + 1 :]]))
        assert run.returncode == 0, run.stderr[-3000:]
        assert "        2  snowplow: duplicate event_id\n" in run.stderr  # one in the samples
        delivered.append(by_time(sandbox.interactions))
    assert delivered[0] == delivered[1]
    [view] = [i for i in delivered[0] if i.get("user_id") == "copy-user"]
    assert view["timestamp"] == "2024-05-01T09:59:00.000Z"
    assert len(delivered[0]) == len(samples.expected_interactions())
