"""End-to-end fixtures: the repo's own Meltano project, a Postgres database, the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
from pathlib import Path

import psycopg
import pytest

from target_miso import samples
from target_miso.miso.sandbox import Sandbox
from tests.helpers import API_KEY, MELTANO, ROOT
from tests.postgres import database_name, fresh_database

DATABASE = database_name("target_miso_e2e")

pytestmark = pytest.mark.e2e


class Meltano:
    """`meltano` in the repo's project, with its own system database and settings from env."""

    def __init__(
        self, tmp_path: Path, sandbox: Sandbox, project: Path = ROOT, **settings: t.Any
    ) -> None:
        self.project = project  # another project uses this one's installed plugins
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TARGET_MISO_", "TAP_"))
        }
        self.env.update(
            MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
            MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
            MELTANO_ENVIRONMENT="dev",
            TARGET_MISO_API_KEY=API_KEY,
            TARGET_MISO_API_URL=sandbox.url,
            TARGET_MISO_REJECTS_PATH=str(tmp_path / "rejects.jsonl"),
            TARGET_MISO_RESEND_GUARD_STORE=str(tmp_path / "resend-guard.sqlite"),
            TARGET_MISO_RETRY_INITIAL_DELAY="0.01",
            TARGET_MISO_RETRY_MAX_DELAY="0.1",
            TARGET_MISO_MAX_REQUESTS_PER_SECOND="0",
            # Meltano merges this into meltano.yml's entries: those of tap-postgres's streams
            # must be overridden too (no lookback here: test_late_rows_lookback.py).
            TARGET_MISO_MAPPINGS=json.dumps(
                {
                    pattern: {
                        **samples.SAMPLE_MAPPING_OPTIONS,
                        "dedupe_store": str(tmp_path / "seen.sqlite"),
                        **extra,
                    }
                    for pattern, extra in (
                        ("atomic-events*", {}),
                        ("atomic-events_for_miso*", {"state_lookback_seconds": 0}),
                        ("atomic-events_for_miso_json", {"state_lookback_seconds": 0}),
                    )
                }
            ),
            TAP_POSTGRES_DATABASE=DATABASE,
            TAP_POSTGRES_COPY_DATABASE=DATABASE,
            TAP_POSTGRES_PASSWORD=os.environ.get(
                "PGPASSWORD", "postgres"
            ),  # any value under trust auth
        )
        if project != ROOT:
            self.env["MELTANO_SYS_DIR_ROOT"] = str(ROOT / ".meltano")
        self.env.update({key: str(value) for key, value in settings.items()})

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [MELTANO, *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(
                f"meltano {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
            )
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [MELTANO, *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def state(self, state_id: str = "dev:tap-postgres-to-target-miso") -> dict | None:
        done = self("state", "get", state_id, check=False)
        return json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else None


@pytest.fixture
def meltano(meltano_installed, tmp_path, sandbox) -> Meltano:
    return Meltano(tmp_path, sandbox)


@pytest.fixture
def events_db() -> t.Iterator[psycopg.Connection]:
    """A fresh database with the Snowplow Postgres loader's `atomic` schema.

    The tables are made by the test.
    """
    with fresh_database(DATABASE) as conn:
        yield conn
