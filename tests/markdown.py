"""Code blocks of the docs, so that tests can run the examples exactly as they are written."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(doc: str, language: str) -> list[str]:
    """Return the fenced blocks of one language in a doc, in order.

    Args:
        doc: The path below the repository root, e.g. ``docs/catalog.md``.
        language: The fence's language, e.g. ``yaml``.

    Returns:
        The blocks' text.
    """
    text = (ROOT / doc).read_text()
    return [body for lang, body in _FENCE.findall(text) if lang == language]
