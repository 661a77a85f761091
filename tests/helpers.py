"""Shared test helpers: Singer message builders and running the real target process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

API_KEY = "sandbox-secret-key"
ROOT = Path(__file__).resolve().parent.parent
MELTANO = str(Path(sys.executable).with_name("meltano"))
#: The Meltano plugins the end-to-end tests run.
PLUGINS = ("tap-postgres", "tap-postgres-copy", "tap-snowplow-files", "target-miso")

INTERACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "user_id": {"type": ["string", "null"]},
        "anonymous_id": {"type": ["string", "null"]},
        "timestamp": {"type": ["string", "null"], "format": "date-time"},
        "product_ids": {"type": ["array", "null"], "items": {"type": "string"}},
        "quantities": {"type": ["array", "null"], "items": {"type": "number"}},
        "revenue": {"type": ["number", "null"]},
        "context": {"type": ["object", "null"]},
        "seq": {"type": "integer"},
    },
}


def schema_message(stream: str = "interactions", schema: dict | None = None) -> str:
    """Return a SCHEMA line."""
    return json.dumps(
        {
            "type": "SCHEMA",
            "stream": stream,
            "schema": schema or INTERACTION_SCHEMA,
            "key_properties": [],
        },
    )


def record_message(record: dict, stream: str = "interactions") -> str:
    """Return a RECORD line."""
    return json.dumps({"type": "RECORD", "stream": stream, "record": record})


def state_message(value: dict) -> str:
    """Return a STATE line."""
    return json.dumps({"type": "STATE", "value": value})


def interaction(seq: int, **extra: t.Any) -> dict:
    """A valid product_detail_page_view carrying its sequence number in custom_context."""
    record = {
        "type": "product_detail_page_view",
        "user_id": f"user-{seq % 97}",
        "timestamp": f"2024-05-01 10:{(seq // 60) % 60:02d}:{seq % 60:02d}",
        "product_ids": [f"sku-{seq}"],
        "context": {"custom_context": {"seq": seq}},
        "seq": seq,
    }
    record.update(extra)
    return record


def singer_input(
    records: t.Iterable[dict],
    *,
    state_every: int = 0,
    stream: str = "interactions",
) -> str:
    """Build a Singer input: SCHEMA, RECORDs and a STATE ``{"seq": n}`` every N records."""
    lines = [schema_message(stream)]
    last = None
    for count, record in enumerate(records, start=1):
        lines.append(record_message(record, stream))
        last = record.get("seq", count)
        if state_every and count % state_every == 0:
            lines.append(state_message({"bookmarks": {stream: {"seq": last}}}))
    if last is not None:
        lines.append(state_message({"bookmarks": {stream: {"seq": last}}}))
    return "\n".join(lines) + "\n"


def seqs(interactions: t.Iterable[dict]) -> list[int]:
    """The sequence numbers of delivered interactions, in arrival order."""
    return [item["context"]["custom_context"]["seq"] for item in interactions]


@dataclass
class TargetRun:
    """What one run of the target process produced."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def states(self) -> list[dict]:
        """The STATE values written to stdout."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def target_command() -> list[str]:
    """The target's console script, from the environment running the tests."""
    script = Path(sys.executable).with_name("target-miso")
    return [str(script)] if script.exists() else [sys.executable, "-m", "target_miso"]


def write_config(tmp_path: Path, url: str, **settings: t.Any) -> Path:
    """Write a config file for the sandbox at ``url`` with fast retries."""
    config = {
        "api_url": url,
        "api_key": API_KEY,
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "resend_guard_store": str(tmp_path / "resend-guard.sqlite"),
        "retry_initial_delay": 0.01,
        "retry_max_delay": 0.2,
        "max_requests_per_second": 0,
        "progress_log_seconds": 0,
    }
    config.update(settings)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def run_target(
    config: Path,
    singer: str | bytes,
    *,
    timeout: float = 300,
    cwd: Path | None = None,
) -> TargetRun:
    """Run the real target process on a Singer input (text, or raw bytes) and wait for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARGET_MISO_")}
    done = subprocess.run(
        [*target_command(), "--config", str(config)],
        input=singer if isinstance(singer, bytes) else singer.encode(),
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )
    return TargetRun(
        done.returncode,
        done.stdout.decode(),
        done.stderr.decode("utf-8", "replace"),
    )


def read_rejects(path: Path) -> list[dict]:
    """The entries of a rejects file (empty when it was never created)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


#: The real tap-postgres, as `meltano install` puts it (the tests that run it need that fixture).
TAP_POSTGRES = ROOT / ".meltano/extractors/tap-postgres/venv/bin/tap-postgres"


def tap_postgres_output(tmp_path: Path, settings: dict[str, t.Any]) -> str:
    """Run the real tap-postgres: discover, select every table for FULL_TABLE, read them.

    Args:
        tmp_path: Where the tap's config and catalog files go.
        settings: The tap's settings (host, database, filter_schemas, batch_config, ...).

    Returns:
        The tap's Singer output.
    """
    config = tmp_path / "tap.json"
    config.write_text(json.dumps(settings))
    discovered = subprocess.run(
        [str(TAP_POSTGRES), "--config", str(config), "--discover"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"].update(selected=True, **{"replication-method": "FULL_TABLE"})
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    read = subprocess.run(
        [str(TAP_POSTGRES), "--config", str(config), "--catalog", str(catalog_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return read.stdout
