"""Records that already look like Miso interactions: normalize them and send them."""

from __future__ import annotations

import typing as t

from target_miso.mappings.base import Mapping, MappingError
from target_miso.normalize import normalize_interaction
from target_miso.schema import ALL_FIELDS

_MISO_FIELDS = frozenset(ALL_FIELDS)


class PassthroughMapping(Mapping):
    """Send each record as one interaction, keeping only Miso's fields.

    Columns that are not Miso fields (ids, load timestamps, ``_sdc_*``) are ignored, and
    named once in a warning so that a misspelt column does not go unnoticed.
    """

    preset = "passthrough"

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
