"""Rewrite a generated part of a file, or with ``--check`` only say that it is stale.

Shared by readme_settings.py and meltano_settings.py (run as scripts: this folder is on
``sys.path``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def rewrite_or_check(path: Path, updated: str, script: str) -> int:
    """Write ``updated`` to ``path``; with ``--check``, exit 1 when they differ instead.

    Args:
        path: The file holding the generated part.
        updated: The file's text with the part generated afresh.
        script: The script that rewrites it, named in the message.

    Returns:
        The exit code.

    """
    if "--check" in sys.argv[1:]:
        if updated != path.read_text():
            print(f"{path.name}'s generated settings are stale: run scripts/{script}")
            return 1
        return 0
    path.write_text(updated)
    return 0
