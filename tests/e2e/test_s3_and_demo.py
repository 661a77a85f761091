"""The S3 path (moto's S3-compatible server) and the README's first command, end to end."""

from __future__ import annotations

import gzip
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from target_miso import samples
from tests.e2e.conftest import ROOT, Meltano

pytestmark = pytest.mark.e2e
BUCKET = "snowplow-enriched"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3_server():
    """moto's standalone S3-compatible server on a free port."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(timeout=10)


def upload(client, key: str, rows: list[dict]) -> None:
    body = io.BytesIO()
    with gzip.GzipFile(fileobj=body, mode="wb") as out:
        out.writelines(("\t".join(row.get(c) or "" for c in samples.ENRICHED_TSV_COLUMNS) + "\n").encode() for row in rows)
    client.put_object(Bucket=BUCKET, Key=key, Body=body.getvalue())


def test_s3_loader_files_through_meltano_deliver_each_event_once(meltano_installed, s3_server, tmp_path, sandbox):
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    rows = samples.render_tsv_shaped(samples.sample_events())
    # The S3 loader names files by time and gives them no .tsv extension.
    upload(client, "enriched/good/2024/05/01/10/part-0001-a1b2.gz", rows[:10])
    meltano = Meltano(tmp_path, sandbox, TAP_SNOWPLOW_FILES_PATH=f"s3://{BUCKET}/enriched/good/",
                      TAP_SNOWPLOW_FILES_ENDPOINT_URL=s3_server, AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")  # fmt: skip

    meltano("run", "tap-snowplow-files", "target-miso")
    first = len(sandbox.interactions)
    upload(client, "enriched/good/2024/05/01/11/part-0002-c3d4.gz", rows[10:])
    meltano("run", "tap-snowplow-files", "target-miso")

    assert first == 3
    received = sorted(sandbox.interactions, key=lambda i: (i["timestamp"], i["type"]))
    assert received == samples.expected_interactions(), "every event once over two runs"
    state = meltano.state("dev:tap-snowplow-files-to-target-miso")
    assert state["singer_state"]["bookmarks"]["atomic-events"]["replication_key_value"].endswith("part-0002-c3d4.gz")


def test_the_readme_demo_command_ends_with_interactions_in_the_sandbox(meltano_installed):
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARGET_MISO_")}
    env["DEMO_PORT"] = str(free_port())

    done = subprocess.run([str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "The sandbox received 12 interactions" in done.stdout
    assert "Run summary:" in done.stdout
    received = (ROOT / "output" / "demo" / "received.jsonl").read_text().splitlines()
    assert len(received) == 12
    assert not Path(ROOT / "output" / "demo" / "miso-rejects.jsonl").exists()
