"""Records that already look like Miso interactions: normalize them and send them.

Normalized as in every preset (docs/mappings.md): timestamps to UTC, numbers from Decimals
or text, ids given as numbers to text, one value of a list field to a one-item list.
"""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import Columns, Mapping, MappingConfigError, MappingError
from target_miso.miso.schema import ALL_FIELDS
from target_miso.normalize import normalize_interaction

_MISO_FIELDS = frozenset(ALL_FIELDS)


class PassthroughMapping(Mapping):
    """Send each record as one interaction, keeping only Miso's fields.

    Columns that are not Miso fields (ids, load timestamps, ``_sdc_*``) are ignored, and
    named once in a warning so that a misspelt column does not go unnoticed.
    """

    preset = "passthrough"

    def __init__(
        self,
        options: t.Mapping[str, t.Any],
        *,
        stream_name: str,
        config_path: str,
    ) -> None:
        """Refuse options: the preset takes none (a typo must not pass unnoticed).

        Args:
            options: This stream's mapping settings (without ``preset``).
            stream_name: The Singer stream.
            config_path: ``mappings.<stream>``.

        Raises:
            MappingConfigError: On any option.

        """
        super().__init__(options, stream_name=stream_name, config_path=config_path)
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            reason = "unknown option (the passthrough preset takes none besides preset)"
            raise MappingConfigError(f"{config_path}.{unknown[0]}", reason)

    def columns(self) -> Columns:
        """Return Miso's interaction fields: the only columns sent.

        Returns:
            Every Miso field name.

        """
        return Columns(tuple(ALL_FIELDS))

    def bind_schema(self, schema: dict[str, t.Any]) -> None:
        """Warn once about the columns that will not be sent.

        Args:
            schema: The stream's JSON Schema.

        """
        ignored = sorted(
            name
            for name in schema.get("properties", {})
            if name not in _MISO_FIELDS and not name.startswith("_sdc_")
        )
        if ignored:
            import logging  # noqa: PLC0415 - only needed for this one warning

            logging.getLogger("target-miso").warning(
                "Stream '%s': columns %s are not Miso interaction fields and are not sent",
                self.stream_name,
                ", ".join(ignored),
            )

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Normalize the record's Miso fields.

        Args:
            record: A record with ``type``, ``user_id``, ``timestamp``, ...

        Returns:
            The one interaction.

        Raises:
            MappingError: If a field cannot be normalized.

        """
        interaction, problems = normalize_interaction(record, _MISO_FIELDS)
        if problems:
            field, _, reason = problems[0].partition(": ")
            raise MappingError(field, "; ".join([reason, *problems[1:]]))
        return [interaction]
