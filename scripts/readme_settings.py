"""Write the settings table of README.md from ``target-miso --about --format=markdown``.

    .venv/bin/python scripts/readme_settings.py          # rewrite the table in README.md
    .venv/bin/python scripts/readme_settings.py --check  # exit 1 when README.md is stale

The table sits between the markers ``<!-- settings:start -->`` and ``<!-- settings:end -->``;
tests/test_readme.py runs the check, so a new setting cannot go undocumented.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from generated_text import rewrite_or_check

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def settings_table() -> str:
    """Return the markdown table of every setting, as the target itself documents it."""
    about = subprocess.run(
        [sys.executable, "-m", "target_miso", "--about", "--format=markdown"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    lines = about.split("## Settings", 1)[1].strip().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def with_table(readme: str, table: str) -> str:
    """README text with the table between the markers replaced."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    """Rewrite or check the README; return the exit code."""
    updated = with_table(README.read_text(), settings_table())
    return rewrite_or_check(README, updated, "readme_settings.py")


if __name__ == "__main__":
    sys.exit(main())
