"""Write target-miso's settings in meltano.yml from ``target-miso --about --format=json``.

    .venv/bin/python scripts/meltano_settings.py          # rewrite the settings in meltano.yml
    .venv/bin/python scripts/meltano_settings.py --check  # exit 1 when meltano.yml is stale

The settings sit between the comments ``# settings:start`` and ``# settings:end`` under the
target-miso loader; each gets its name, kind, label, description and default (``value``) from
the target's own schema, so `meltano config target-miso list` documents every setting and a
new one cannot go undeclared (Meltano reads ``TARGET_MISO_<SETTING>`` only for declared
settings). tests/test_meltano_yml.py runs the check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from pathlib import Path

from generated_text import rewrite_or_check

MELTANO_YML = Path(__file__).resolve().parent.parent / "meltano.yml"
START, END = "# settings:start", "# settings:end"
INDENT = "    "
# Fractional settings are `kind: string`: Meltano 4.4 crashes on `kind: decimal` values given
# by environment variables (Decimal is not JSON serializable); the target reads numeric text
# as numbers.
KINDS = {
    "string": "string",
    "boolean": "boolean",
    "integer": "integer",
    "number": "string",
    "object": "object",
    "array": "array",
}


def about() -> dict[str, t.Any]:
    """Return the target's --about output."""
    return json.loads(
        subprocess.run(
            [sys.executable, "-m", "target_miso", "--about", "--format=json"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )


def kind(schema: dict[str, t.Any]) -> str:
    """Return the Meltano kind of a setting's JSON schema."""
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    (json_type,) = [name for name in types if name != "null"]
    return KINDS[json_type]


def settings_block(settings: dict[str, t.Any]) -> str:
    """Return the YAML list of settings, indented for the loader's ``settings:`` key."""
    lines = []
    for name, schema in settings["properties"].items():
        fields: dict[str, t.Any] = {"name": name, "kind": kind(schema)}
        if schema.get("title"):
            fields["label"] = schema["title"]
        if schema.get("description"):
            fields["description"] = " ".join(schema["description"].split())
        if schema.get("secret"):
            fields["sensitive"] = True
        if "default" in schema:
            fields["value"] = schema["default"]
        # JSON scalars and flow collections are valid YAML, and quote whatever needs it.
        first, *rest = [
            f"{key}: {value if key in ('name', 'kind') else json.dumps(value)}"
            for key, value in fields.items()
        ]
        lines.append(f"{INDENT}- {first}")
        lines.extend(f"{INDENT}  {line}" for line in rest)
    return "\n".join(lines)


def with_block(text: str, block: str) -> str:
    """Return meltano.yml's text with the settings between the markers replaced."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    marker_line = head.rsplit("\n", 1)[1]  # the start marker's indentation
    return f"{head}{START}\n{block}\n{marker_line}{END}{tail}"


def main() -> int:
    """Rewrite or check meltano.yml; return the exit code."""
    updated = with_block(MELTANO_YML.read_text(), settings_block(about()["settings"]))
    return rewrite_or_check(MELTANO_YML, updated, "meltano_settings.py")


if __name__ == "__main__":
    sys.exit(main())
