"""moto's S3-compatible server for the tests (the `s3_server` fixture is in tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import typing as t
import urllib.request

import boto3
import pytest

#: moto accepts any credentials; boto3 only needs some to sign its requests.
MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_moto_server() -> t.Iterator[str]:
    """Start moto's standalone S3 server on a free port; yield its URL; stop it."""
    port = free_port()
    env = {**os.environ, **MOTO_CREDENTIALS}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("moto's S3 server did not start in 30 s")
    yield url
    server.terminate()
    server.wait(timeout=10)


def s3_client(endpoint_url: str) -> t.Any:
    """A boto3 client of the moto server, with its credentials (not from the environment)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
