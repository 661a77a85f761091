"""The preset agrees with Snowplow's reference models on identity, engaged time and page views.

The expected values are worked out by hand from the reference definitions, with the reasoning
next to each case:

* identity: the atomic ``user_id``, else the e-commerce plugin's ``user`` entity's ``id``
  unless ``is_guest`` is true (never its ``email``);
* engaged time (dbt-snowplow-web): ``heartbeat * (distinct heartbeat buckets of the pings - 1)
  + min_visit``, over the pings grouped by page view id *and* ``domain_sessionid``, and only
  while the page view is alive: a ping more than the session timeout after the page view's
  previous counted ping (or the page view itself) does not count. A page view whose pings all
  fell outside gets 0;
* page views: one per ``web_page`` id (dbt keeps one row per ``page_view_id``).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from target_miso import sample_postgres, samples
from target_miso.mappings import MappingConfigError, build_mapping
from target_miso.mappings.snowplow.preset import OPTIONS
from tests.helpers import read_rejects, run_target, write_config
from tests.postgres import scratch_schema
from tests.snowplow.test_layouts import STREAM, singer_lines

RULES = samples.SAMPLE_MAPPING_OPTIONS["page_rules"]
LAYOUTS = {
    "tsv-shaped": samples.render_tsv_shaped,
    "snowflake": samples.render_snowflake,
    "bigquery": samples.render_bigquery,
    "bigquery-v1-names": lambda events: samples.render_bigquery(events, full_version_names=True),
}
HOUR, DAY = 3600, 86_400


def mapping(**options):
    return build_mapping(
        STREAM,
        {STREAM: {"preset": "snowplow", "page_rules": RULES, "dedupe_store": None, **options}},
        {},
    )


def run_all(preset, rows):
    return [i for row in rows for i in preset.map(row)] + [i for i, _ in preset.flush()]


# --- Identity: the e-commerce plugin's user entity -----------------------------------------


def cart(number, user=None, **atomic):
    contexts = [(samples.ECOMMERCE_USER, user)] if user is not None else []
    return samples._ecommerce(
        number, number, "add_to_cart", [samples._product(f"sku-{number}")], None,
        contexts=contexts, **atomic,
    )  # fmt: skip


def identity_events():
    """Each event's expected user_id is in the comment (by the rule in the module docstring)."""
    return [
        cart(1, {"id": "u-7", "is_guest": False, "email": "ann@example.com"}),  # u-7
        cart(2, {"id": "guest-4711", "is_guest": True, "email": "bob@example.com"}),  # none
        cart(3, {"id": "u-other", "is_guest": False}, user_id="u-atomic"),  # u-atomic
        cart(4, {"id": "u-9", "is_guest": None}),  # u-9: not said to be a guest
        cart(5, {"id": None, "is_guest": False, "email": "eve@example.com"}),  # none: no email
        cart(6),  # none: no entity
        # A global context on a page view (setEcommerceUser applies to every event): u-7
        samples.LogicalEvent(
            samples._event(7, "page_view", 7, page_url="https://shop.example/"),
            contexts=((samples.ECOMMERCE_USER, {"id": "u-7", "is_guest": False}),),
        ),
    ]


EXPECTED_USERS = ["u-7", None, "u-atomic", "u-9", None, None, "u-7"]


def user_ids(interactions):
    return [i.get("user_id") for i in sorted(interactions, key=lambda i: i["timestamp"])]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_ecommerce_user_entity_gives_user_id_unless_a_guest(layout):
    interactions = run_all(mapping(ping_duration=False), LAYOUTS[layout](identity_events()))

    assert user_ids(interactions) == EXPECTED_USERS
    assert all(i["anonymous_id"] == "d-visitor-1" for i in interactions), "sent together"
    assert "ann@example.com" not in repr(interactions)


def test_the_ecommerce_user_entity_gives_user_id_in_the_postgres_loader_layout():
    """Real shredded tables (is_guest a boolean column) folded by the shipped view."""
    schema = "miso_test_ecommerce_user"
    with scratch_schema(schema) as conn:
        sample_postgres.load_events(conn, schema, identity_events(), create=True)
        sample_postgres.create_view(conn, schema)
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {}.events_for_miso ORDER BY collector_tstamp").format(
                    sql.Identifier(schema)
                )
            )
            rows = cur.fetchall()
    assert isinstance(rows[0]["contexts"], dict), "JSONB: parsed, not text"

    assert user_ids(run_all(mapping(ping_duration=False), rows)) == EXPECTED_USERS


@pytest.mark.parametrize("is_guest", ["true", "t", "1", 1])
def test_is_guest_read_as_text_or_a_number_still_means_a_guest(is_guest):
    # A boolean column that a tap turned into text, or a loader that wrote 1.
    (interaction,) = run_all(mapping(), samples.render_bigquery([cart(1, {"id": "g-1"})]))
    assert interaction["user_id"] == "g-1"
    guest = samples.render_bigquery([cart(1, {"id": "g-1", "is_guest": is_guest})])
    (interaction,) = run_all(mapping(), guest)
    assert "user_id" not in interaction


# --- Engaged time: a ping counts only while its page view is alive -------------------------


def page_view(number, seconds, page_id="pv-1", path="/", **atomic):
    return samples._page(number, seconds, path, page_id, **atomic)


def ping(number, seconds, page_id="pv-1", path="/", **atomic):
    return samples._ping(number, seconds, path, page_id, **atomic)


def pings(*moments, session="s-session-1", first=10):
    # Pings numbered from ``first`` (the number makes the event_id).
    return [ping(first + n, moment, domain_sessionid=session) for n, moment in enumerate(moments)]


# (page view, its pings) -> the reference's engaged time, with the reasoning. Heartbeat 10 s,
# minimum visit 5 s, session timeout 30 minutes; the page view is at 0 s in "s-session-1".
ENGAGED_TIME_CASES = {
    # Buckets 1..5 (pings at 10-50 s): 10 * (5 - 1) + 5 = 45. The pings 7 hours and 2 days
    # later come more than 30 minutes after the ping at 50 s: the page view was dead. The
    # preset gave 65 (7 buckets) before.
    "pings hours and days later do not count": (
        pings(10, 20, 30, 40, 50, 7 * HOUR, 2 * DAY),
        45,
        {"late": 2},
    ),
    # The only ping is two days later, in another session: no ping of the page view's session
    # while it was alive, engaged time 0 (the preset gave 5 before).
    "a lone ping two days later in another session gives 0": (
        pings(2 * DAY, session="s-session-2"),
        0,
        {"other session": 1},
    ),
    # The ping at 20 s is from another session: buckets 1 and 3 count, 10 * (2 - 1) + 5 = 15
    # (25 before, with bucket 2).
    "a ping from another session does not add": (
        [*pings(10), *pings(20, session="s-session-2", first=20), ping(30, 30)],
        15,
        {"other session": 1},
    ),
    # 1810 s is exactly 30 minutes after the ping at 10 s: still alive (only a longer gap
    # ends it), bucket 181. 3611 s is 1801 s after 1810: dead; 3621 s is still measured from
    # 1810 (the last ping that counted): dead. Buckets 1 and 181: 10 * (2 - 1) + 5 = 15.
    "a gap of exactly the timeout is alive, one second more is not": (
        pings(10, 1810, 3611, 3621),
        15,
        {"late": 2},
    ),
    # Each ping within 30 minutes of the previous one keeps the page view alive, however far
    # from the page view itself: buckets 100, 200, 300: 10 * (3 - 1) + 5 = 25.
    "a page kept alive by its pings counts them all": (pings(1000, 2000, 3000), 25, {}),
    # The first ping is 1801 s after the page view itself: the page view was already dead.
    "the gap before the first ping counts from the page view": (pings(1801), 0, {"late": 1}),
}
REASONS = {
    "late": "page_ping: over session_timeout_seconds after its page view's last activity",
    "other session": "page_ping: another domain_sessionid than its page view",
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", ENGAGED_TIME_CASES)
def test_engaged_time_counts_only_pings_while_the_page_view_is_alive(case, layout):
    page_pings, expected, dropped = ENGAGED_TIME_CASES[case]
    preset = mapping()

    (view,) = run_all(preset, LAYOUTS[layout]([page_view(1, 0), *page_pings]))

    assert view["type"] == "home_page_view"
    assert view["duration"] == expected
    counted = len(page_pings) - sum(dropped.values())
    assert {reason: count for reason, count in preset.skipped.items() if "ping" in reason} == {
        **({"page_ping: added to its page view's duration": counted} if counted else {}),
        **{REASONS[kind]: count for kind, count in dropped.items()},
    }


def test_session_timeout_seconds_sets_how_long_a_page_view_stays_alive():
    # With a 1-hour timeout every gap above (1800 s, 1801 s, 10 s) is alive: buckets 1, 181,
    # 361 and 362: 10 * (4 - 1) + 5 = 35. With 60 s, the ping at 1810 s already ends it: 5.
    events = [page_view(1, 0), *pings(10, 1810, 3611, 3621)]
    (hour,) = run_all(mapping(session_timeout_seconds=3600), samples.render_tsv_shaped(events))
    (minute,) = run_all(mapping(session_timeout_seconds=60), samples.render_tsv_shaped(events))
    assert (hour["duration"], minute["duration"]) == (35, 5)
    with pytest.raises(MappingConfigError, match="positive") as raised:
        mapping(session_timeout_seconds=0)
    assert raised.value.path == "mappings.atomic-events.session_timeout_seconds"


def test_the_plugin_product_view_takes_the_engaged_time_by_the_same_rules():
    # Pings at 10 and 20 s count (buckets 1 and 2: 15), the one a day later does not.
    events = [
        page_view(1, 0, path="/product/sku-1"),
        samples._ecommerce(2, 1, "product_view", [samples._product("sku-1")], "pv-1"),
        ping(3, 10, path="/product/sku-1"),
        ping(4, 20, path="/product/sku-1"),
        ping(5, DAY, path="/product/sku-1"),
    ]
    (view,) = run_all(mapping(), samples.render_snowflake(events))
    assert (view["product_ids"], view["duration"]) == (["sku-1"], 15)


# --- A page view re-sent under the same web_page id ----------------------------------------


def test_a_page_view_resent_with_a_new_event_id_is_one_page_view_with_the_pings_of_both():
    # The first copy (event 1, at 0 s) is sent; the re-send (event 2, at 12 s) is a duplicate.
    # Pings at 10 s (before the re-send), 20 and 30 s (after it) all belong to the one page
    # view: buckets 1, 2, 3: 10 * (3 - 1) + 5 = 25.
    events = [page_view(1, 0), ping(3, 10), page_view(2, 12), ping(4, 20), ping(5, 30)]
    for layout in LAYOUTS.values():
        preset = mapping()
        (view,) = run_all(preset, layout(events))
        assert view["timestamp"] == "2024-05-01T10:00:00.300Z", "the first copy"
        assert view["duration"] == 25
        assert preset.skipped["snowplow: duplicate page view (same web_page id)"] == 1


def test_a_page_view_resent_after_its_first_copy_was_flushed_is_still_a_duplicate():
    preset = mapping()
    (first,) = run_all(preset, samples.render_tsv_shaped([page_view(1, 0), ping(3, 10)]))
    assert first["duration"] == 5
    assert run_all(preset, samples.render_tsv_shaped([page_view(2, 12), ping(4, 20)])) == []
    assert preset.skipped["snowplow: duplicate page view (same web_page id)"] == 1
    assert preset.skipped["page_ping: page view already sent"] == 1


def test_a_page_view_sent_at_once_and_resent_is_a_duplicate_too():
    preset = mapping(ping_duration=False)
    found = run_all(preset, samples.render_tsv_shaped([page_view(1, 0), page_view(2, 5)]))
    assert [i["timestamp"] for i in found] == ["2024-05-01T10:00:00.300Z"]
    assert preset.skipped["snowplow: duplicate page view (same web_page id)"] == 1


def test_without_a_web_page_id_two_views_of_a_url_in_a_session_are_two_page_views():
    # Session and URL are no page view id: a reload is a page view of its own.
    bare = [event._replace(contexts=()) for event in (page_view(1, 0), page_view(2, 60))]
    preset = mapping()
    assert len(run_all(preset, samples.render_tsv_shaped(bare))) == 2
    assert "snowplow: duplicate page view (same web_page id)" not in preset.skipped


def test_the_resent_copy_shares_the_fate_of_the_first_in_the_event_id_store(tmp_path):
    store = str(tmp_path / "seen.sqlite")
    rows = samples.render_tsv_shaped([page_view(1, 0), page_view(2, 12)])
    first_run = mapping(dedupe_store=store)
    assert len(run_all(first_run, rows)) == 1
    first_run.commit(first_run.seal())  # the checkpoint's requests were answered
    first_run.close()

    # A later run reading only the re-sent copy (a lookback window starting after the first)
    # must not send it as a page view of its own: its id was stored with the first copy's.
    later = mapping(dedupe_store=store)
    assert run_all(later, rows[1:]) == []
    assert later.skipped["snowplow: duplicate event_id"] == 1
    later.close()


def test_resent_page_views_and_late_pings_in_the_run_summary(sandbox, tmp_path):
    events = [
        page_view(1, 0),
        ping(2, 10),
        page_view(3, 12),  # a re-send of pv-1
        ping(4, 20),
        ping(5, 2 * DAY, domain_sessionid="s-session-2"),
        cart(6, {"id": "u-7", "is_guest": False}),
    ]
    config = write_config(
        tmp_path, sandbox.url, mappings={STREAM: {"preset": "snowplow", "page_rules": RULES,
                                                  "dedupe_store": None}},
    )  # fmt: skip

    run = run_target(config, singer_lines(samples.render_tsv_shaped(events)))

    assert run.returncode == 0, run.stderr[-3000:]
    assert read_rejects(tmp_path / "rejects.jsonl") == []
    found = sorted(sandbox.interactions, key=lambda i: i["timestamp"])
    assert [(i["type"], i.get("duration"), i.get("user_id")) for i in found] == [
        ("home_page_view", 15, None),  # buckets 1 and 2
        ("add_to_cart", None, "u-7"),
    ]
    assert "        1  snowplow: duplicate page view (same web_page id)\n" in run.stderr
    assert "        1  page_ping: another domain_sessionid than its page view\n" in run.stderr
    assert "        2  page_ping: added to its page view's duration\n" in run.stderr


# --- The options are documented ------------------------------------------------------------


def test_every_option_is_in_the_docs_table_with_its_default():
    docs = (Path(__file__).parents[2] / "docs" / "snowplow.md").read_text()
    section = docs.split("## Options", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = cells[1].strip("`")

    def shown(value):
        if value is None:
            return "none"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    assert table == {name: shown(default) for name, default in OPTIONS.items()}
