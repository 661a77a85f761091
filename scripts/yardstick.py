"""The benchmark's yardstick: the least a Miso loader must do, written plainly.

Reads Singer lines with orjson, maps RECORDs with plain Python (interaction-shaped rows:
keep Miso's fields; Snowplow rows: a minimal page-view/e-commerce mapping), and POSTs
batches of 1,000 with requests, 4 in flight. No validation, no retries, no STATE handling:
it is what target-miso is measured against, not a loader anyone should use.

Usage: python scripts/yardstick.py API_URL API_KEY SHAPE < input.singer
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import orjson
import requests

MISO_FIELDS = (
    "type", "user_id", "anonymous_id", "timestamp", "product_ids", "quantities", "revenue",
    "duration", "search", "category", "rating", "context", "miso_id",
)  # fmt: skip


def map_interaction(record: dict) -> dict | None:
    """Keep the Miso fields of an interaction-shaped row; timestamps to RFC 3339 UTC."""
    interaction = {key: record[key] for key in MISO_FIELDS if record.get(key) is not None}
    interaction["timestamp"] = interaction["timestamp"].replace(" ", "T") + "Z"
    return interaction


def map_snowplow(record: dict) -> dict | None:
    """Map Snowplow rows minimally: page views and e-commerce product views only."""
    event = record.get("event_name")
    if event not in ("page_view", "snowplow_ecommerce_action"):
        return None
    interaction = {
        "type": "product_detail_page_view",
        "anonymous_id": record.get("domain_userid"),
        "timestamp": (record.get("derived_tstamp") or record["collector_tstamp"]).replace(" ", "T")
        + "Z",
        "product_ids": [str(record.get("page_urlpath", "")).rsplit("/", 1)[-1] or "home"],
        "context": {"page": {"url": record.get("page_url") or ""}},
    }
    if record.get("user_id"):
        interaction["user_id"] = record["user_id"]
    return interaction


def main() -> None:
    """Run the yardstick on stdin."""
    api_url, api_key, shape = sys.argv[1:4]
    mapper = map_snowplow if shape == "snowplow" else map_interaction
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=4)
    session.mount("http://", adapter)
    headers = {"X-API-KEY": api_key, "Content-Type": "application/json"}
    url = f"{api_url}/v1/interactions"

    def post(batch: list[bytes]) -> None:
        answer = session.post(url, data=b'{"data":[' + b",".join(batch) + b"]}", headers=headers)
        answer.raise_for_status()

    batch: list[bytes] = []
    with ThreadPoolExecutor(4) as pool:
        pending = []
        for line in sys.stdin.buffer:
            message = orjson.loads(line)
            if message.get("type") != "RECORD":
                continue
            interaction = mapper(message["record"])
            if interaction is None:
                continue
            batch.append(orjson.dumps(interaction))
            if len(batch) == 1000:
                pending.append(pool.submit(post, batch))
                batch = []
                if len(pending) > 8:
                    pending.pop(0).result()
        if batch:
            pending.append(pool.submit(post, batch))
        for future in pending:
            future.result()


if __name__ == "__main__":
    main()
