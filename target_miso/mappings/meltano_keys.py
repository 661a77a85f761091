r"""Keys with a dot in ``mappings``, and what Meltano 4.4 does to them.

Meltano reads a dot in a setting's key as a path. In meltano.yml, ``context.page.url:
page_url`` reaches the target as ``context: {page: {url: page_url}}`` (the target reads that
form of a field path, ``fields.field_entries``). In JSON given by the environment
(``TARGET_MISO_MAPPINGS``), a key with a dot is dropped without a word, and a field, a stream
entry or a map value is lost. A backslash keeps the dot in both (``context\.page\.url``).

This module refuses, at start-up and naming the key, the forms that lost something: keys
Meltano dropped from the environment's JSON, and stream names it split into nested objects.
"""

from __future__ import annotations

import json
import os
import re
import typing as t

from target_miso.mappings.base import MappingConfigError

#: Where docs/mappings.md explains the forms that survive Meltano.
DOCS = "docs/mappings.md#field-paths-under-meltano"
_ENV_VAR = "TARGET_MISO_MAPPINGS"
#: Set by Meltano in the environment of every plugin it runs.
_MELTANO_MARK = "MELTANO_PROJECT_ROOT"
_KINDS = frozenset({"interactions", "products", "users"})


def dotted_key_hint(key: str, value: object) -> str:
    """Explain an unknown option that holds an object: a name with a dot, split by Meltano.

    Meltano turns ``v1.view: like`` in meltano.yml into ``v1: {view: like}``, so the target
    sees an object where the name should be.

    Args:
        key: The unknown key.
        value: Its value.

    Returns:
        The hint (starting with ``; ``), or an empty string when the value is no object.

    """
    if not isinstance(value, dict) or not value:
        return ""
    inner = next(iter(value))
    return (
        f"; if the name '{key}.{inner}' was meant, Meltano split it at the dot into nested "
        f"objects: write it '{key}\\.{inner}' in meltano.yml ({DOCS})"
    )


def check_split_stream_names(mappings: t.Mapping[str, t.Any]) -> None:
    """Refuse an entry that holds another stream's entry: a stream name split at its dot.

    Args:
        mappings: The ``mappings`` setting.

    Raises:
        MappingConfigError: Naming the stream as it was meant, and the escaped form.

    """
    for key, options in mappings.items():
        found = _nested_entry(options, [str(key)])
        if found:
            name = ".".join(found)
            yaml_form, json_form = "\\.".join(found), "\\\\.".join(found)
            reason = (
                f"holds the entry of a stream named '{name}': Meltano split that name at its "
                f"dots into nested objects; write it '{yaml_form}' in meltano.yml, or "
                f'"{json_form}" in JSON ({DOCS})'
            )
            raise MappingConfigError(f"mappings.{key}", reason)


def _nested_entry(options: object, path: list[str]) -> list[str] | None:
    # An entry's options never hold an object with a preset or a kind of its own.
    if not isinstance(options, dict):
        return None
    for key, value in options.items():
        if not isinstance(value, dict):
            continue
        if value.get("kind") in _KINDS or isinstance(value.get("preset"), str):
            return [*path, str(key)]
        if all(isinstance(item, dict) for item in value.values()):
            found = _nested_entry(value, [*path, str(key)])
            if found:
                return found
    return None


def check_env_mappings(
    received: t.Mapping[str, t.Any],
    environ: t.Mapping[str, str] | None = None,
) -> None:
    """Refuse a run whose ``TARGET_MISO_MAPPINGS`` lost keys with a dot on its way through Meltano.

    Meltano passes the variable on to the target as it was given (with the mappings in
    meltano.yml instead, it sets it to their flattened form), so what it dropped is found by
    comparing the two. Outside Meltano (``--config ENV``) the SDK reads the JSON itself and
    nothing is lost.

    Args:
        received: The ``mappings`` the target was given.
        environ: The environment (default: the process's).

    Raises:
        MappingConfigError: Naming the first key lost and how to write it.

    """
    environ = os.environ if environ is None else environ
    if _MELTANO_MARK not in environ or _ENV_VAR not in environ:
        return
    try:
        given = json.loads(environ[_ENV_VAR])
    except ValueError:
        return  # Meltano refuses it or passes it on as text; the settings check names it
    lost = _lost_key(given, received, "mappings")
    if lost is None:
        return
    path, key = lost
    parts = key.split(".")
    nested = "".join(f'{{"{part}": ' for part in parts) + "..." + "}" * len(parts)
    escaped = key.replace(".", "\\\\.")  # as written in JSON text
    reason = (
        f"Meltano dropped this key from {_ENV_VAR}: it drops every key with a dot given in "
        f"JSON by the environment, and the target never received it. Write a field path "
        f'nested, {nested}, and escape the dots of a stream name or of a value ("{escaped}") '
        f"({DOCS})"
    )
    raise MappingConfigError(path, reason)


def _lost_key(given: object, received: object, path: str) -> tuple[str, str] | None:
    if isinstance(given, dict):
        for key, value in given.items():
            name = str(key).replace("\\.", ".")
            found = _find(str(key), received)
            if found is _MISSING:
                if "." in name and "\\." not in str(key):
                    return f"{path}.{name}", name
                continue  # not a key Meltano drops: not ours to judge
            lost = _lost_key(value, found, f"{path}.{name}")
            if lost is not None:
                return lost
    elif isinstance(given, list) and isinstance(received, list):
        for index, (item, got) in enumerate(zip(given, received, strict=False)):
            lost = _lost_key(item, got, f"{path}[{index}]")
            if lost is not None:
                return lost
    return None


_MISSING = object()
_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def _find(key: str, received: object) -> object:
    """Find what a key of the variable holds in the settings received (else ``_MISSING``).

    The key is found as it is (a backslash-escaped dot unescaped, as Meltano does) or as a
    path its dots spell: when meltano.yml holds the mappings, Meltano itself sets the
    variable to their flattened form (``{"public-events.fields.user_id": ...}``), where a
    name that holds a dot may or may not be escaped.
    """
    parts = [part.replace("\\.", ".") for part in _UNESCAPED_DOT.split(key)]
    return _walk(parts, received)


def _walk(parts: list[str], place: object) -> object:
    if not parts:
        return place
    if not isinstance(place, dict):
        return _MISSING
    for end in range(len(parts), 0, -1):  # the longest name first: "a.b" before "a"
        name = ".".join(parts[:end])
        if name in place:
            found = _walk(parts[end:], place[name])
            if found is not _MISSING:
                return found
    return _MISSING
