"""The README documents what the code does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_settings_table_matches_the_target_about_output():
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_settings.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_set_up_commands_exist_and_the_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "scripts/demo.sh" in readme
    assert "scripts/test.sh" in readme
    assert (ROOT / "scripts" / "test.sh").stat().st_mode & 0o111
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
