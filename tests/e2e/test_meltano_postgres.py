"""`meltano run <extractor> target-miso` on a Snowplow Postgres loader schema.

Both Postgres extractors of meltano.yml: the shipped tap-postgres-copy on
atomic.events_for_miso_narrow, and MeltanoLabs' tap-postgres on atomic.events_for_miso_json
(each row as JSON text).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import pytest

from target_miso import sample_postgres, samples
from tests.e2e.conftest import ROOT, Meltano
from tests.postgres import database_name, fresh_database

pytestmark = pytest.mark.e2e
#: meltano.yml's Postgres extractors and the stream each reads.
EXTRACTORS = {
    "tap-postgres-copy": "atomic-events_for_miso_narrow",
    "tap-postgres": "atomic-events_for_miso_json",
}

#: The tests below use tap-postgres features (stream_options, payload_column) on its stream.
STREAM = EXTRACTORS["tap-postgres"]
STATE_ID = "dev:tap-postgres-to-target-miso"


def by_time(interactions):
    return sorted(interactions, key=lambda item: (item["timestamp"], item["type"]))


def load(conn, events, *, create=False):
    sample_postgres.load_events(conn, "atomic", events, create=create)
    if create:
        sample_postgres.create_view(conn, "atomic")


@pytest.fixture(params=list(EXTRACTORS))
def extractor(request: pytest.FixtureRequest) -> str:
    return request.param


def test_two_incremental_runs_deliver_each_event_exactly_once(
    meltano, events_db, sandbox, extractor
):
    events = samples.sample_events()
    load(events_db, events[:10], create=True)

    meltano("run", extractor, "target-miso")
    first = list(sandbox.interactions)
    bookmark = meltano.state(f"dev:{extractor}-to-target-miso")
    load(events_db, events[10:])
    second_run = meltano("run", extractor, "target-miso")

    assert [i["type"] for i in by_time(first)] == [
        "product_detail_page_view",
        "category_page_view",
        "home_page_view",
    ]
    assert by_time(sandbox.interactions) == samples.expected_interactions(), (
        "every event once, none twice"
    )
    stream = EXTRACTORS[extractor]
    assert bookmark["singer_state"]["bookmarks"][stream]["replication_key_value"].startswith(
        "2024-05-01T10:01:20.5"
    )
    # Snowplow sent one event twice: the preset drops the copy. The tap also re-sends the
    # boundary row (inclusive bookmark), a page view no rule matched: it was not delivered, so
    # the event-id store did not keep it, and it is mapped and skipped again, not a duplicate.
    assert "        1  snowplow: duplicate event_id\n" in second_run.stderr
    assert "        1  page_view: no page rule matched\n" in second_run.stderr


def test_an_api_outage_fails_the_run_and_leaves_the_bookmark(
    meltano_installed, events_db, tmp_path, sandbox_factory, extractor
):
    healthy, down = sandbox_factory(), sandbox_factory(fail_all_status=503)
    state_id = f"dev:{extractor}-to-target-miso"
    events = samples.sample_events()
    load(events_db, events[:10], create=True)
    Meltano(tmp_path, healthy)("run", extractor, "target-miso")
    before = Meltano(tmp_path, healthy).state(state_id)
    load(events_db, events[10:])

    outage = Meltano(tmp_path, down, TARGET_MISO_MAX_RETRIES=1)(
        "run", extractor, "target-miso", check=False
    )

    assert outage.returncode != 0
    assert "503" in outage.stderr
    assert before is not None
    assert Meltano(tmp_path, healthy).state(state_id) == before
    assert down.interactions == []


def _load_page_views(conn, count):
    """`count` product page views without entities, straight into atomic.events (fast)."""
    load(conn, [], create=True)
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO atomic.events (event_id, collector_tstamp, derived_tstamp, event,
                   event_name, event_vendor, domain_userid, page_url, v_collector, v_etl)
               SELECT md5(i::text)::uuid, timestamp '2024-05-01' + i * interval '1 second',
                      timestamp '2024-05-01' + i * interval '1 second', 'page_view', 'page_view',
                      'com.snowplowanalytics.snowplow', 'visitor-' || (i %% 100),
                      'https://shop.example/product/sku-' || i, 'c', 'e'
                 FROM generate_series(1, %s) AS i""",
            (count,),
        )
    conn.commit()


def test_a_killed_run_rerun_loses_nothing(
    meltano_installed, events_db, tmp_path, sandbox_factory, extractor
):
    total = 20_000
    _load_page_views(events_db, total)
    sandbox = sandbox_factory(latency_ms=40)
    settings = {"TARGET_MISO_STATE_CHECKPOINT_RECORDS": 2000, "TARGET_MISO_BATCH_SIZE_ROWS": 500,
                "TARGET_MISO_MAX_CONCURRENT_REQUESTS": 1}  # fmt: skip
    meltano = Meltano(tmp_path, sandbox, **settings)

    running = meltano.popen("run", extractor, "target-miso")
    deadline = time.monotonic() + 120
    while (
        len(sandbox.interactions) < 3000 and time.monotonic() < deadline and running.poll() is None
    ):
        time.sleep(0.05)
    os.killpg(running.pid, signal.SIGKILL)  # meltano, the tap and the target, mid-run
    running.wait()
    delivered_before_kill = len(sandbox.interactions)
    # The killed run's record is left "running": --force starts anyway (docs/meltano.md).
    rerun = meltano("run", "--force", extractor, "target-miso")

    received = collections.Counter(i["product_ids"][0] for i in sandbox.interactions)
    assert 0 < delivered_before_kill < total, "killed mid-way"
    assert set(received) == {f"sku-{i}" for i in range(1, total + 1)}, "nothing lost"
    # Only records after the last STATE are sent again, at most a checkpoint's worth.
    assert sum(received.values()) - total <= 2000 + 500
    assert rerun.returncode == 0


def test_partitioned_pipelines_run_in_parallel_with_their_own_state(
    meltano_installed, events_db, tmp_path, sandbox_factory
):
    events = samples.sample_events()
    for number, event in enumerate(events):
        event.atomic["app_id"] = "shop" if number < 10 else "blog"
    load(events_db, events, create=True)
    shop_api, blog_api = sandbox_factory(), sandbox_factory()

    def partition(app_id, sandbox):
        options = {STREAM: {"custom_where_clauses": [f"app_id = '{app_id}'"]}}
        worker = tmp_path / app_id
        # Each partition runs as its own worker: Meltano writes a plugin's generated config
        # under <sys dir>/run/<plugin>/, which two runs in one directory would share. The
        # workers reuse the installed plugin venvs.
        sys_dir = worker / ".meltano"
        sys_dir.mkdir(parents=True)
        for kind in ("extractors", "loaders"):
            (sys_dir / kind).symlink_to(ROOT / ".meltano" / kind)
        meltano = Meltano(worker, sandbox, TAP_POSTGRES_STREAM_OPTIONS=json.dumps(options),
                          MELTANO_SYS_DIR_ROOT=sys_dir)  # fmt: skip
        # One state backend shared by both (a directory here; S3, GCS or Postgres in production).
        meltano.env["MELTANO_STATE_BACKEND_URI"] = f"file://{tmp_path / 'state'}"
        return meltano

    shop, blog = partition("shop", shop_api), partition("blog", blog_api)
    runs = [meltano.popen("run", "--state-id-suffix", name, "tap-postgres", "target-miso")
            for name, meltano in (("shop", shop), ("blog", blog))]  # fmt: skip
    outcomes = [run.communicate(timeout=300) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], "\n".join(err[-3000:] for _, err in outcomes)
    expected = samples.expected_interactions()
    assert by_time(shop_api.interactions) == expected[:3], "the shop partition: its events only"
    assert by_time(blog_api.interactions) == expected[3:], "the blog partition: its events only"
    assert shop.state(f"{STATE_ID}:shop")["singer_state"]["bookmarks"]
    assert blog.state(f"{STATE_ID}:blog")["singer_state"]["bookmarks"]
    assert not shop.state(STATE_ID), "each partition keeps its own bookmark"


LOOKBACK_DATABASE = database_name("target_miso_lookback_meltano_e2e")


@pytest.fixture
def lookback_db():
    """A database of its own (other tests here drop and re-create theirs)."""
    with fresh_database(LOOKBACK_DATABASE) as conn:
        yield conn


def test_the_shipped_lookback_reads_rows_loaded_behind_the_bookmark(
    meltano_installed, tmp_path, lookback_db, sandbox
):
    events_db = lookback_db
    # meltano.yml's own entry for the stream (rules, payload_column and a one-day
    # state_lookback_seconds); Meltano merges this over it, so only the event-id store moves
    # to the test's directory. The select list and metadata are meltano.yml's own too.
    mappings = {STREAM: {"dedupe_store": str(tmp_path / "seen.sqlite")}}
    meltano = Meltano(
        tmp_path,
        sandbox,
        TARGET_MISO_MAPPINGS=json.dumps(mappings),
        TAP_POSTGRES_DATABASE=LOOKBACK_DATABASE,
    )
    load(events_db, samples.sample_events(), create=True)
    meltano("run", "tap-postgres", "target-miso")
    delivered = len(sandbox.interactions)
    bookmark = meltano.state()["singer_state"]["bookmarks"][STREAM]
    assert bookmark["replication_key_value"] == "2024-04-30T10:04:00.500000+00:00"
    assert bookmark["target_miso_lookback"]["seconds"] == 86400

    # Loaded now, collected two hours before the bookmark (a device that was offline).
    late = samples._event(
        500, "event", -7200, se_category="product", se_action="like", se_label="late"
    )
    load(events_db, [samples.LogicalEvent(late)])
    second = meltano("run", "tap-postgres", "target-miso")

    new = sandbox.interactions[delivered:]
    assert [(i["type"], i["product_ids"]) for i in new] == [("like", ["late"])]
    assert "records in: 31" in second.stderr
    assert meltano.state()["singer_state"]["bookmarks"][STREAM] == bookmark
