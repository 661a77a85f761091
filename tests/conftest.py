"""Shared fixtures: a fresh local Miso sandbox per test."""

from __future__ import annotations

import typing as t

import pytest

from target_miso.sandbox import Sandbox
from tests.helpers import API_KEY


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
