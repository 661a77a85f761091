"""preset: custom through the real target process and the sandbox: what reaches Miso, what not."""

from __future__ import annotations

import json

from tests.helpers import read_rejects, record_message, run_target, schema_message, state_message
from tests.helpers import write_config as _write_config

STREAM = "public-events"
COLUMNS = ("event_id", "event_name", "user_id", "sku", "total", "occurred_at")
SCHEMA = {"type": "object", "properties": {column: {} for column in COLUMNS}}
ORDERS = {
    "preset": "custom",
    "dedup_key": "event_id",
    "type": {"column": "event_name", "map": {"order": "checkout"}, "default": "custom"},
    "fields": {
        "user_id": "user_id",
        "product_ids": "sku",
        "revenue": "float(total)",
        "timestamp": "occurred_at",
        "custom_action_name": "event_name",
    },
}


def write_config(tmp_path, sandbox, mapping=None, **settings):
    return _write_config(tmp_path, sandbox.url, mappings={STREAM: mapping or ORDERS}, **settings)


def row(event_id: int, name: str = "order", total: str = "10.5", **extra) -> dict:
    return {
        "event_id": event_id,
        "event_name": name,
        "user_id": "u-1",
        "sku": f"sku-{event_id}",
        "total": total,
        "occurred_at": f"2024-05-01 10:00:{event_id:02d}",
        **extra,
    }


def singer(rows: list[dict], bookmark: int) -> str:
    lines = [schema_message(STREAM, SCHEMA), *(record_message(r, STREAM) for r in rows)]
    lines.append(state_message({"bookmarks": {STREAM: {"replication_key_value": bookmark}}}))
    return "\n".join(lines) + "\n"


def test_nan_and_infinity_never_reach_miso_and_are_set_aside_with_the_field(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox)
    rows = [row(1, total="nan"), row(2, total="-inf"), row(3, total="1e999"), row(4)]

    done = run_target(config, singer(rows, 4))

    assert done.returncode == 0, done.stderr
    assert [i["product_ids"] for i in sandbox.interactions] == [["sku-4"]]
    assert b"null" not in json.dumps(sandbox.interactions).encode()
    assert [r["reasons"] for r in read_rejects(tmp_path / "rejects.jsonl")] == [
        ["revenue: NaN is not a finite number (JSON has no NaN or Infinity)"],
        ["revenue: -Infinity is not a finite number (JSON has no NaN or Infinity)"],
        ["revenue: Infinity is not a finite number (JSON has no NaN or Infinity)"],
    ]


def test_a_custom_type_without_its_action_name_stops_the_run_before_any_record(sandbox, tmp_path):
    mapping = {
        **ORDERS,
        "fields": {k: v for k, v in ORDERS["fields"].items() if k != "custom_action_name"},
    }
    config = write_config(tmp_path, sandbox, mapping)

    done = run_target(config, singer([row(1), row(2, name="signup")], 2))

    assert done.returncode == 1
    assert (
        "mappings.public-events.type.default: type 'custom' needs custom_action_name, and no "
        "setting gives it" in done.stderr
    )
    assert sandbox.interactions == []
    assert not (tmp_path / "rejects.jsonl").exists()


def test_a_setting_wrong_at_the_schema_says_nothing_of_state_or_resending(sandbox, tmp_path):
    mapping = {**ORDERS, "fields": {**ORDERS["fields"], "user_id": "customer"}}
    config = write_config(tmp_path, sandbox, mapping)

    done = run_target(config, singer([row(1)], 1))

    assert done.returncode == 1
    assert "mappings.public-events.fields.user_id: 'customer' is not a column" in done.stderr
    assert "No record was read before it: fix the setting and run again." in done.stderr
    assert "No STATE was written" not in done.stderr
    assert "mapped but not delivered" not in done.stderr
    assert done.states == []


def test_a_reject_lists_every_failing_field(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox)

    done = run_target(config, singer([row(1, total="N/A", occurred_at="yesterday"), row(2)], 2))

    assert done.returncode == 0, done.stderr
    (reject,) = read_rejects(tmp_path / "rejects.jsonl")
    assert reject["stage"] == "mapping"
    assert reject["reasons"] == [
        "revenue: expression 'float(total)' failed: ValueError: could not convert string to "
        "float: 'N/A'",
        "timestamp: 'yesterday' is not a date-time with seconds",
    ]


def test_the_dedup_store_sends_the_boundary_row_of_incremental_runs_once(sandbox, tmp_path):
    # SQL taps re-read the row at their bookmark (inclusive) on the next run.
    store = tmp_path / "keys.sqlite"
    config = write_config(tmp_path, sandbox, {**ORDERS, "dedup_store": str(store)})

    first = run_target(config, singer([row(1), row(2)], 2))
    second = run_target(config, singer([row(2), row(3)], 3))

    assert first.returncode == second.returncode == 0, second.stderr
    assert [i["product_ids"][0] for i in sandbox.interactions] == ["sku-1", "sku-2", "sku-3"]
    assert "duplicate dedup_key" in second.stderr

    without = tmp_path / "without"
    without.mkdir()
    plain = write_config(without, sandbox)  # the key remembered for the run only
    sandbox.reset()
    run_target(plain, singer([row(1), row(2)], 2))
    run_target(plain, singer([row(2), row(3)], 3))
    assert [i["product_ids"][0] for i in sandbox.interactions] == [
        "sku-1",
        "sku-2",
        "sku-2",
        "sku-3",
    ]


def test_a_row_refused_by_miso_is_sent_again_by_the_next_run(sandbox, tmp_path):
    config = write_config(tmp_path, sandbox, {**ORDERS, "dedup_store": str(tmp_path / "k.sqlite")})
    sandbox.set_faults(reject_user_ids=["u-bad"])
    run_target(config, singer([row(1), row(2, user_id="u-bad")], 2))
    assert [i["product_ids"][0] for i in sandbox.interactions] == ["sku-1"]

    sandbox.set_faults()  # fixed upstream; the tap reads both rows again
    run_target(config, singer([row(1), row(2, user_id="u-bad")], 2))

    assert [i["product_ids"][0] for i in sandbox.interactions] == ["sku-1", "sku-2"]
