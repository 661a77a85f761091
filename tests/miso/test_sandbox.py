"""The sandbox must answer like Miso does, or tests against it prove nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from target_miso.miso.sandbox import Sandbox
from tests.helpers import API_KEY
from tests.helpers import interaction as source_record

HEADERS = {"X-API-KEY": API_KEY}


def interaction(seq: int, **extra) -> dict:
    """A valid interaction as Miso takes it (the source record minus its ``seq`` column)."""
    record = source_record(seq, **extra)
    del record["seq"]
    record["timestamp"] = record["timestamp"].replace(" ", "T") + "Z"
    return record


def post(sandbox: Sandbox, path: str, records: list, **kwargs) -> requests.Response:
    return requests.post(f"{sandbox.url}{path}", json={"data": records}, timeout=5, **kwargs)


def test_valid_interactions_are_stored(sandbox):
    answer = post(sandbox, "/v1/interactions", [interaction(1), interaction(2)], headers=HEADERS)

    assert answer.status_code == 200
    assert answer.json() == {"message": "success"}
    assert [item["product_ids"] for item in sandbox.interactions] == [["sku-1"], ["sku-2"]]


def test_one_invalid_record_refuses_the_request_with_miso_style_lines(sandbox):
    records = [interaction(1), interaction(2, revenue="a lot")]

    answer = post(sandbox, "/v1/interactions", records, headers=HEADERS)

    assert answer.status_code == 422
    body = answer.json()
    assert body["errors"] is True
    assert body["data"] == [
        "data.1.revenue is invalid. not allowed on type 'product_detail_page_view'"
    ]
    assert sandbox.interactions == [], "a 422 stores nothing"


def test_errors_in_200_stores_the_valid_records_and_flags_the_rest(sandbox_factory):
    sandbox = sandbox_factory(errors_in_200=True, reject_user_ids=["user-2"])

    answer = post(sandbox, "/v1/interactions", [interaction(1), interaction(2)], headers=HEADERS)

    assert answer.status_code == 200
    assert answer.json()["errors"] is True
    assert answer.json()["data"][0].startswith("data.1.user_id is invalid.")
    assert [item["user_id"] for item in sandbox.interactions] == ["user-1"]


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({"X-API-KEY": "wrong"}, {}, 401),
        ({}, {}, 401),
        ({}, {"api_key": API_KEY}, 200),
        ({"X-API-KEY": "pub-key"}, {}, 403),
    ],
)
def test_keys(headers, params, status):
    with Sandbox(api_key=API_KEY, publishable_key="pub-key") as sandbox:
        answer = post(sandbox, "/v1/interactions", [interaction(1)], headers=headers, params=params)
    assert answer.status_code == status
    if status == 403:
        assert "bot blocking" in answer.json()["message"]


def test_dry_run_validates_and_stores_nothing(sandbox):
    ok = post(sandbox, "/v1/interactions", [interaction(1)], headers=HEADERS, params={"dry_run": 1})
    refused = post(
        sandbox, "/v1/interactions", [{"type": "nope"}], headers=HEADERS, params={"dry_run": 1}
    )

    assert ok.status_code == 200
    assert refused.status_code == 422
    assert sandbox.interactions == []


def test_catalog_upload_ids_delete_and_task_status(sandbox):
    base = f"{sandbox.url}/v1/products"
    assert requests.get(f"{base}/_ids", headers=HEADERS, timeout=5).status_code == 404

    upload = post(
        sandbox, "/v1/products", [{"product_id": "p1"}, {"product_id": "p2"}], headers=HEADERS
    )
    task_id = upload.json()["data"]["task_id"]
    ids = requests.get(f"{base}/_ids", headers=HEADERS, timeout=5).json()["data"]["ids"]
    deleted = requests.post(
        f"{base}/_delete",
        json={"data": {"product_ids": ["p1", "nope"]}},
        headers=HEADERS,
        timeout=5,
    )
    status = requests.get(f"{base}/_status/{task_id}", headers=HEADERS, timeout=5).json()

    assert sorted(ids) == ["p1", "p2"]
    assert deleted.status_code == 200
    assert list(sandbox.products) == ["p2"]
    assert sandbox.stats()["deleted"]["products"] == ["p1"]
    assert status["data"]["status"] == "succeeded"
    refused = post(sandbox, "/v1/products", [{"product_id": "_hidden"}], headers=HEADERS)
    assert refused.json()["data"] == ["data.0.product_id is invalid. must not start with '_'"]


def test_omit_task_id_answers_catalog_requests_without_a_task(sandbox_factory):
    sandbox = sandbox_factory(omit_task_id=True)
    upload = post(sandbox, "/v1/products", [{"product_id": "p1"}], headers=HEADERS)
    deleted = requests.post(
        f"{sandbox.url}/v1/products/_delete",
        json={"data": {"product_ids": ["p1"]}},
        headers=HEADERS,
        timeout=5,
    )
    assert upload.json() == {"message": "success"}
    assert deleted.json() == {"message": "deleted"}
    assert sandbox.stats()["deleted"]["products"] == ["p1"]


def test_outage_and_drops_are_counted(sandbox_factory):
    outage = sandbox_factory(fail_all_status=503)
    assert post(outage, "/v1/interactions", [interaction(1)], headers=HEADERS).status_code == 503

    dropping = sandbox_factory(drop_after_store=1.0)
    with pytest.raises(requests.ConnectionError):
        post(dropping, "/v1/interactions", [interaction(1)], headers=HEADERS)
    assert len(dropping.interactions) == 1, "dropped after the records were stored"
    assert dropping.stats()["faults"] == {"drop_after_store": 1}
    assert dropping.stats()["requests_by_status"] == {"0": 1}


def test_unknown_fault_option_is_refused():
    with pytest.raises(TypeError, match="rate_502"):
        Sandbox(api_key=API_KEY, rate_502=0.1)


def test_command_line_sandbox_serves_and_reports(tmp_path):
    capture = tmp_path / "received.jsonl"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "target_miso.miso.sandbox",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--capture",
            str(capture),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = process.stdout.readline()
        url = banner.rsplit(" ", 1)[-1].strip()
        answer = requests.post(
            f"{url}/v1/interactions", json={"data": [interaction(7)]}, headers=HEADERS, timeout=5
        )
        stats = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert banner.startswith("Miso sandbox listening on http://127.0.0.1:")
    assert answer.status_code == 200
    assert stats["interactions_accepted"] == 1
    assert '"sku-7"' in capture.read_text()
