"""The real tap-postgres in batch mode (BATCH messages of gzip jsonl files) into the target.

singer-sdk taps with ``batch_config`` send no RECORD lines at all: SCHEMA, BATCH messages
naming files, STATE. Every row must arrive, and the STATE only after them.
"""

from __future__ import annotations

import json
import os
import typing as t

import pytest

from tests.helpers import run_target, tap_postgres_output, write_config
from tests.postgres import (
    connection_settings,
    create_web_events,
    database_name,
    fresh_database,
)

if t.TYPE_CHECKING:
    from pathlib import Path

    from target_miso.miso.sandbox import Sandbox

pytestmark = pytest.mark.e2e

DATABASE = database_name("target_miso_batch_e2e")
ROWS = 3000


@pytest.fixture
def web_db(meltano_installed: None) -> t.Iterator[None]:
    """A fresh database with web.events: interaction-shaped rows."""
    with fresh_database(DATABASE) as conn:
        create_web_events(conn, 0, ROWS - 1)
        yield


def _tap_output(tmp_path: Path) -> str:
    return tap_postgres_output(
        tmp_path,
        {
            **connection_settings(DATABASE),
            "password": os.environ.get("PGPASSWORD", "postgres"),
            "filter_schemas": ["web"],
            "batch_config": {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": (tmp_path / "batches").as_uri(), "prefix": "web-"},
                "batch_size": 1000,
            },
        },
    )


def test_every_row_of_a_batch_mode_tap_arrives(
    tmp_path: Path, web_db: None, sandbox: Sandbox
) -> None:
    singer = _tap_output(tmp_path)
    messages = [json.loads(line) for line in singer.splitlines() if line.strip()]
    assert any(m["type"] == "BATCH" for m in messages), "the tap must be in batch mode"
    assert not any(m["type"] == "RECORD" for m in messages)
    config = write_config(tmp_path, sandbox.url, mappings={"web-events": {"preset": "passthrough"}})

    run = run_target(config, singer)

    assert run.returncode == 0, run.stderr[-3000:]
    delivered = sorted(int(i["product_ids"][0].removeprefix("sku-")) for i in sandbox.interactions)
    assert delivered == list(range(ROWS))
    assert f"records in: {ROWS}" in run.stderr
    assert run.states, "the tap's STATE is written once its rows were delivered"
