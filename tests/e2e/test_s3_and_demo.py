"""The S3 path (moto's S3-compatible server) and the README's first command, end to end."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from target_miso import samples
from tests.e2e.conftest import ROOT, Meltano
from tests.helpers import run_target, write_config
from tests.s3 import MOTO_CREDENTIALS, free_port, s3_client

pytestmark = pytest.mark.e2e
BUCKET = "snowplow-enriched"


def upload(client, key: str, rows: list[dict]) -> None:
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb") as out:
        out.writelines(
            ("\t".join(row.get(c) or "" for c in samples.ENRICHED_TSV_COLUMNS) + "\n").encode()
            for row in rows
        )
    client.put_object(Bucket=BUCKET, Key=key, Body=body.getvalue())


@pytest.fixture
def bucket(s3_server):
    client = s3_client(s3_server)
    client.create_bucket(Bucket=BUCKET)
    return client


def by_time(interactions: list[dict]) -> list[dict]:
    return sorted(interactions, key=lambda i: (i["timestamp"], i["type"]))


def test_s3_loader_files_piped_into_the_target_deliver_each_event_once(
    s3_server, bucket, tmp_path, sandbox
):
    """The real tap piped into the real target; the endpoint only from AWS_ENDPOINT_URL."""
    rows = samples.render_tsv_shaped(samples.sample_events())
    upload(bucket, "enriched/good/2024/05/01/10/part-0001-a1b2.gz", rows[:10])
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "TARGET_MISO_"))
    }
    env.update(
        AWS_ENDPOINT_URL=s3_server,
        **MOTO_CREDENTIALS,
    )
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(
        json.dumps({"path": f"s3://{BUCKET}/enriched/good/", "settle_seconds": 0})
    )
    options = {**samples.SAMPLE_MAPPING_OPTIONS, "dedupe_store": None}  # exactly once without it
    target_config = write_config(tmp_path, sandbox.url, mappings={"atomic-events": options})

    def pipeline(state: dict | None) -> dict:
        args = [
            str(Path(sys.executable).with_name("tap-snowplow-files")),
            "--config",
            str(tap_config),
        ]
        if state:
            (tmp_path / "state.json").write_text(json.dumps(state))
            args += ["--state", str(tmp_path / "state.json")]
        tap = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert tap.returncode == 0, tap.stderr[-3000:]
        run = run_target(target_config, tap.stdout)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.states[-1]

    state = pipeline(None)
    first = len(sandbox.interactions)
    upload(bucket, "enriched/good/2024/05/01/11/part-0002-c3d4.gz", rows[10:])
    state = pipeline(state)

    assert 0 < first < len(sandbox.interactions)
    assert by_time(sandbox.interactions) == samples.expected_interactions(), (
        "every event once over two runs"
    )
    assert state["bookmarks"]["atomic-events"]["replication_key_value"].endswith(
        f"|s3://{BUCKET}/enriched/good/2024/05/01/11/part-0002-c3d4.gz|end"
    )


def test_s3_loader_files_through_meltano_deliver_each_event_once(
    meltano_installed, s3_server, bucket, tmp_path, sandbox
):
    rows = samples.render_tsv_shaped(samples.sample_events())
    # The S3 loader names files by time and gives them no .tsv extension.
    upload(bucket, "enriched/good/2024/05/01/10/part-0001-a1b2.gz", rows[:10])
    meltano = Meltano(
        tmp_path,
        sandbox,
        TAP_SNOWPLOW_FILES_PATH=f"s3://{BUCKET}/enriched/good/",
        TAP_SNOWPLOW_FILES_ENDPOINT_URL=s3_server,
        TAP_SNOWPLOW_FILES_SETTLE_SECONDS=0,
        **MOTO_CREDENTIALS,
    )

    meltano("run", "tap-snowplow-files", "target-miso")
    first = len(sandbox.interactions)
    upload(bucket, "enriched/good/2024/05/01/11/part-0002-c3d4.gz", rows[10:])
    second = meltano("run", "tap-snowplow-files", "target-miso")

    assert 0 < first < len(sandbox.interactions)
    assert by_time(sandbox.interactions) == samples.expected_interactions(), (
        "every event once over two runs"
    )
    assert "1 files to read, 1 read by earlier runs" in second.stderr, (
        "the second run reads only the new file"
    )
    state = meltano.state("dev:tap-snowplow-files-to-target-miso")
    assert state["singer_state"]["bookmarks"]["atomic-events"]["replication_key_value"].endswith(
        f"|s3://{BUCKET}/enriched/good/2024/05/01/11/part-0002-c3d4.gz|end"
    )


def test_the_readme_demo_command_ends_with_interactions_in_the_sandbox(meltano_installed):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARGET_MISO_")}
    env["DEMO_PORT"] = str(free_port())
    expected = samples.expected_interactions()

    for _ in range(2):  # idempotent: the second run starts afresh and gives the same
        done = subprocess.run(
            [str(ROOT / "scripts" / "demo.sh")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert f"The sandbox received {len(expected)} interactions" in done.stdout
        assert "Run summary:" in done.stdout
        received = (ROOT / "output" / "demo" / "received.jsonl").read_text().splitlines()
        assert by_time([json.loads(line) for line in received]) == expected
        assert not Path(ROOT / "output" / "demo" / "miso-rejects.jsonl").exists()
