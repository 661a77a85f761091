"""The preview CLI, run as a real process: ``python -m target_miso.preview``."""

from __future__ import annotations

import hashlib
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


def _strict_json(line: str) -> dict:
    """Parse one output line as JSON proper: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the output is not JSON: {line}")

    return json.loads(line, parse_constant=refuse)


def _singer(stream: str, columns: list[str], records: list[dict]) -> str:
    lines = [
        {"type": "SCHEMA", "stream": stream, "schema": {"properties": {c: {} for c in columns}},
         "key_properties": []},
        *({"type": "RECORD", "stream": stream, "record": record} for record in records),
    ]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_nan_and_infinity_are_set_aside_and_every_line_is_json(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {
            "orders": {
                "preset": "custom",
                "type": "checkout",
                "fields": {
                    "anonymous_id": "a",
                    "product_ids": "sku",
                    "context": {"custom_context": {"score": "float(score)"}},
                },
            },
        },
    )
    rows = [
        {"a": "v", "sku": "s1", "score": "nan"},
        {"a": "v", "sku": "s2", "score": "inf"},
        {"a": "v", "sku": "s3", "score": "0.5"},
    ]
    result = _preview(
        ["--config", str(config)], stdin=_singer("orders", ["a", "sku", "score"], rows)
    )
    assert result.returncode == 0, result.stderr
    out = [_strict_json(line) for line in result.stdout.splitlines()]
    assert [entry.get("reasons") for entry in out] == [
        ["context.custom_context.score: NaN is not a finite number (JSON has no NaN or Infinity)"],
        ["context.custom_context.score: Infinity is not a finite number (JSON has no NaN or "
         "Infinity)"],
        None,
    ]  # fmt: skip
    assert out[0]["interaction"]["context"] == {"custom_context": {"score": "nan"}}
    assert out[2]["interaction"]["context"] == {"custom_context": {"score": 0.5}}
    assert "interactions: 1\nset aside: 2" in result.stderr


def test_catalog_streams_are_previewed_as_products_and_users(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        {
            "public-products": {
                "kind": "products",
                "filter": "not hidden",
                "fields": {
                    "product_id": "sku",
                    "title": "name",
                    "sale_price": "price",
                    "categories": {"column": "path", "split": " > "},
                },
            },
            "public-customers": {"kind": "users", "fields": {"user_id": "sha256(email)"}},
            STREAM: EVENTS_MAPPING,
        },
    )
    products = [
        {"sku": 1, "name": "Tent", "price": "120.5", "path": "Outdoor > Tents", "hidden": False},
        {"sku": 2, "name": "Old", "price": "1", "path": "x", "hidden": True},
        {"sku": "_bad", "name": "Bad", "price": "2", "path": "x", "hidden": False},
        {"sku": 3, "name": "Odd", "price": "NaN", "path": "x", "hidden": False},
    ]
    lines = _singer("public-products", ["sku", "name", "price", "path", "hidden"], products)
    lines += _singer("public-customers", ["email"], [{"email": "a@b.c"}])
    lines += (DATA / "custom_events.singer").read_text(encoding="utf-8")
    rejects = tmp_path / "rejects.jsonl"
    result = _preview(["--config", str(config), "--rejects", str(rejects)], stdin=lines)
    assert result.returncode == 0, result.stderr
    out = [_strict_json(line) for line in result.stdout.splitlines()]
    assert out[:2] == [
        {
            "stream": "public-products",
            "product": {
                "product_id": "1",
                "title": "Tent",
                "sale_price": 120.5,
                "categories": [["Outdoor", "Tents"]],
            },
        },
        {
            "stream": "public-customers",
            "user": {"user_id": hashlib.sha256(b"a@b.c").hexdigest()},
        },
    ]
    assert {entry["stream"] for entry in out[2:]} == {STREAM}
    set_aside = [_strict_json(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(entry["stage"], entry["reasons"]) for entry in set_aside[:2]] == [
        ("validation", ["product_id: must not start with '_'"]),
        ("mapping", ["sale_price: NaN is not a finite number (JSON has no NaN or Infinity)"]),
    ]
    assert "product records: 1\nuser records: 1\n" in result.stderr
    assert (
        "stream public-products: preset catalog products\n  skipped 1: public-products: "
        "filtered out" in result.stderr
    )
