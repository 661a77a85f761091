"""Mapping presets, and how a stream finds its mapping from the ``mappings`` setting.

``mappings`` maps a stream name (or a glob such as ``atomic-*``) to that stream's options:
``preset`` names one of PRESETS and the rest goes to the preset. A stream with no entry
uses ``preset: auto``: the preset is recognised from the stream's columns.
"""

from __future__ import annotations

import fnmatch
import importlib
import typing as t

from target_miso.mappings.base import Mapping, MappingConfigError, MappingError
from target_miso.mappings.meltano_keys import check_split_stream_names, dotted_key_hint

__all__ = [
    "PRESETS",
    "Mapping",
    "MappingConfigError",
    "MappingError",
    "build_mapping",
    "check_mappings",
    "entry_key",
]

#: preset name -> "module:Class", imported on first use.
PRESETS: dict[str, str] = {
    "passthrough": "target_miso.mappings.passthrough:PassthroughMapping",
    "snowplow": "target_miso.mappings.snowplow.preset:SnowplowMapping",
    "custom": "target_miso.mappings.declarative.preset:CustomMapping",
    "ga4": "target_miso.mappings.ga4:GA4Mapping",
    "segment": "target_miso.mappings.segment:SegmentMapping",
}

#: Columns that identify a preset when ``preset: auto`` (checked in this order).
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("snowplow", frozenset({"event_id", "collector_tstamp", "event"})),
    ("ga4", frozenset({"event_name", "event_timestamp", "user_pseudo_id"})),
    ("segment", frozenset({"anonymous_id", "original_timestamp", "sent_at", "received_at"})),
    ("passthrough", frozenset({"type"})),
)


def _preset_class(name: str, path: str) -> type[Mapping]:
    if name not in PRESETS:
        known = ", ".join(sorted([*PRESETS, "auto"]))
        raise MappingConfigError(path, f"unknown preset {name!r} (known: {known})")
    module_name, _, class_name = PRESETS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def options_for(stream_name: str, mappings: t.Mapping[str, t.Any]) -> tuple[str, dict[str, t.Any]]:
    """Find a stream's entry in ``mappings``: its exact name first, then the first glob.

    Args:
        stream_name: The Singer stream name.
        mappings: The ``mappings`` setting.

    Returns:
        The config path of the entry and its options (empty when there is none).

    """
    key = entry_key(stream_name, mappings)
    if key is None:
        return f"mappings.{stream_name}", {}
    return f"mappings.{key}", dict(mappings[key] or {})


def entry_key(stream_name: str, mappings: t.Mapping[str, t.Any]) -> str | None:
    """Return the key of ``mappings`` a stream uses: its exact name first, then the first glob.

    Args:
        stream_name: The Singer stream name.
        mappings: The ``mappings`` setting.

    Returns:
        The key, or None when no key matches (the stream uses ``preset: auto``).

    """
    if stream_name in mappings:
        return stream_name
    for pattern in mappings:
        if fnmatch.fnmatchcase(stream_name, pattern):
            return pattern
    return None


def detect_preset(properties: t.Iterable[str]) -> str | None:
    """Recognise a preset from a stream's column names.

    Args:
        properties: The column names of the stream's schema.

    Returns:
        The preset name, or None when no preset fits.

    """
    columns = set(properties)
    for preset, signature in _SIGNATURES:
        if signature <= columns and preset in PRESETS:
            return preset
    return None


def build_mapping(
    stream_name: str,
    mappings: t.Mapping[str, t.Any],
    schema: dict[str, t.Any] | None = None,
) -> Mapping:
    """Create the mapping for one stream.

    Args:
        stream_name: The Singer stream name.
        mappings: The target's ``mappings`` setting.
        schema: The stream's schema, needed when the preset is ``auto``.

    Returns:
        A ready mapping, bound to the schema when one was given.

    Raises:
        MappingConfigError: If the options are wrong or no preset fits the stream.

    """
    path, options = options_for(stream_name, mappings)
    if options.pop("kind", "interactions") != "interactions":
        reason = "a catalog stream (products or users) has no interaction mapping"
        raise MappingConfigError(f"{path}.kind", reason)
    preset = options.pop("preset", "auto")
    if preset == "auto":
        columns = (schema or {}).get("properties", {})
        detected = detect_preset(columns)
        if detected is None:
            raise MappingConfigError(
                f"{path}.preset",
                f"stream '{stream_name}' matches no preset (its columns are not Snowplow, "
                "GA4, Segment or interaction-shaped); set a preset or a custom mapping for it",
            )
        preset = detected
    mapping = _preset_class(preset, f"{path}.preset")(
        options,
        stream_name=stream_name,
        config_path=path,
    )
    if schema is not None:
        mapping.bind_schema(schema)
    return mapping


def check_mappings(mappings: t.Mapping[str, t.Any]) -> None:
    """Build every configured mapping once so that mistakes surface before any record.

    Args:
        mappings: The target's ``mappings`` setting.

    Raises:
        MappingConfigError: On the first mistake found.

    """
    if not isinstance(mappings, dict):
        raise MappingConfigError("mappings", "must be an object of stream name -> options")
    from target_miso.catalog.mapping import CatalogOptions, stream_kind  # noqa: PLC0415 - import cycle

    check_split_stream_names(mappings)  # before the options: their errors would mislead

    for key, options in mappings.items():
        if options is not None and not isinstance(options, dict):
            raise MappingConfigError(f"mappings.{key}", "must be an object of options")
        if stream_kind(options, f"mappings.{key}") != "interactions":
            # A catalog stream (docs/catalog.md); its options are a dict (None is of kind
            # interactions).
            CatalogOptions(t.cast("dict[str, t.Any]", options), f"mappings.{key}")
            continue
        if (options or {}).get("preset", "auto") != "auto":
            build_mapping(key, {key: options}).close()
        else:
            _check_auto_options(f"mappings.{key}", options or {})


def _check_auto_options(path: str, options: t.Mapping[str, t.Any]) -> None:
    # The preset is known only once the stream's SCHEMA is: accept an option that one of
    # the recognisable presets takes (that preset checks it then), refuse any other now.
    given = set(options) - {"preset", "kind"}
    if not given:
        return
    allowed = sorted(
        {name for preset, _ in _SIGNATURES for name in _preset_class(preset, path).option_names},
    )
    unknown = sorted(given - set(allowed))
    if unknown:
        reason = (
            "unknown option (preset auto takes the options of the preset it recognises: "
            f"{', '.join(allowed)}){dotted_key_hint(unknown[0], options[unknown[0]])}"
        )
        raise MappingConfigError(f"{path}.{unknown[0]}", reason)
