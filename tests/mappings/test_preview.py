"""The preview CLI, run as a real process: ``python -m target_miso.preview``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.mappings.fixtures import DATA
from tests.mappings.test_declarative import EVENTS_MAPPING, STREAM

ROOT = Path(__file__).resolve().parents[2]


def _preview(args: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "target_miso.preview", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def _config(tmp_path: Path, mappings: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"api_key": "not-used", "mappings": mappings}), encoding="utf-8")
    return path


def test_singer_input_gives_interactions_and_rejects_with_reasons(tmp_path: Path) -> None:
    config = _config(tmp_path, {STREAM: EVENTS_MAPPING})
    bad_time = {
        "event_id": "b1",
        "event_name": "search",
        "anonymous_id": "a",
        "occurred_at": "yesterday",
    }
    no_product = {"event_id": "b2", "event_name": "product_view", "anonymous_id": "a"}
    lines = (DATA / "custom_events.singer").read_text(encoding="utf-8")
    lines += "".join(
        json.dumps({"type": "RECORD", "stream": STREAM, "record": record}) + "\n"
        for record in (bad_time, no_product)
    )
    rejects = tmp_path / "rejects.jsonl"
    result = _preview(["--config", str(config), "--rejects", str(rejects)], stdin=lines)
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry["stream"] for entry in out] == [STREAM] * 5
    assert [entry["interaction"]["type"] for entry in out] == [
        "product_detail_page_view", "add_to_cart", "checkout", "search", "add_to_cart",
    ]  # fmt: skip
    note = out[0]["interaction"]["context"]["custom_context"]["note"]
    assert note == "He said \"great\"\nthen left; 'quoted' \\ back\tslash"
    set_aside = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(entry["stage"], entry["record"]["event_id"]) for entry in set_aside] == [
        ("mapping", "b1"),
        ("validation", "b2"),
    ]
    assert set_aside[0]["reasons"] == ["timestamp: 'yesterday' is not a date-time with seconds"]
    assert set_aside[0]["interaction"] is None
    assert set_aside[1]["reasons"] == [
        "product_ids: type 'product_detail_page_view' needs product_ids or product_group_ids "
        "(non-empty)",
    ]
    assert "records in: 10" in result.stderr
    assert "skipped 1: public-events: filtered out" in result.stderr


def test_jsonl_sample_file_with_stream_option_writes_to_files(tmp_path: Path) -> None:
    config = _config(tmp_path, {"orders": {"preset": "segment"}})
    sample = tmp_path / "sample.jsonl"
    rows = [
        {
            "id": "m1", "anonymous_id": "a", "event": "order_completed",
            "timestamp": "2024-05-01 10:00:00", "total": "12.50",
            "products": '[{"product_id": "p\\"1", "quantity": 1}]',
        },
        {
            "id": "m1", "anonymous_id": "a", "event": "order_completed",
            "timestamp": "2024-05-01 10:00:00",
        },
    ]  # fmt: skip
    sample.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = _preview(
        [
            "--config",
            str(config),
            "--stream",
            "orders",
            "--input",
            str(sample),
            "--output",
            str(output),
        ],
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()] == [
        {
            "stream": "orders",
            "interaction": {
                "type": "checkout",
                "product_ids": ['p"1'],
                "quantities": [1],
                "revenue": 12.5,
                "anonymous_id": "a",
                "timestamp": "2024-05-01T10:00:00.000Z",
            },
        },
    ]
    assert "skipped 1: segment: duplicate id (messageId)" in result.stderr


def test_wrong_mapping_settings_exit_2_with_the_setting_path(tmp_path: Path) -> None:
    config = _config(
        tmp_path, {STREAM: {"preset": "custom", "type": "checkout", "fields": {"rating": "r"}}}
    )
    result = _preview(["--config", str(config)], stdin="")
    assert result.returncode == 2
    assert (
        f"mappings.{STREAM}.fields.rating: 'rating' is not allowed on type 'checkout'"
        in result.stderr
    )


def test_plain_records_without_stream_exit_1(tmp_path: Path) -> None:
    config = _config(tmp_path, {})
    result = _preview(["--config", str(config)], stdin='{"user_id": "u"}\n')
    assert result.returncode == 1
    assert "line 1: a plain record (not a Singer message) needs --stream" in result.stderr
