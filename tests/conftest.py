"""Shared fixtures: a fresh local Miso sandbox per test."""

from __future__ import annotations

import os
import subprocess
import typing as t

import pytest

from target_miso.miso.sandbox import Sandbox
from tests.helpers import API_KEY, MELTANO, PLUGINS, ROOT
from tests.s3 import run_moto_server


@pytest.fixture
def sandbox() -> t.Iterator[Sandbox]:
    """A well-behaved sandbox API, empty, on a free port."""
    with Sandbox(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def sandbox_factory() -> t.Iterator[t.Callable[..., Sandbox]]:
    """Start sandboxes with faults: ``sandbox_factory(rate_503=0.1, seed=1)``."""
    started: list[Sandbox] = []

    def start(**faults: t.Any) -> Sandbox:
        running = Sandbox(api_key=API_KEY, **faults).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def s3_server() -> t.Iterator[str]:
    """moto's standalone S3-compatible server on a free port: its URL."""
    yield from run_moto_server()


@pytest.fixture(scope="session")
def meltano_installed(tmp_path_factory) -> None:
    """`meltano install` of the plugins the tests run.

    Slow the first time; then cached in .meltano.
    """
    db = tmp_path_factory.mktemp("meltano-install") / "meltano.db"
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{db}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    done = subprocess.run(
        [MELTANO, "install", *PLUGINS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"meltano install failed:\n{done.stderr[-4000:]}")
