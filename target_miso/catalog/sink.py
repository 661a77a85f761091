"""The catalog sink: product and user rows mapped, validated, compared and batched.

One sink per catalog stream (``kind: products`` or ``kind: users``). It shares the
interactions sink's mapping, encoding and set-aside rules, and sends only the records whose
content changed since Miso last accepted them (``hashes.py``).
"""

from __future__ import annotations

import functools
import typing as t

from target_miso.catalog.mapping import content_hash
from target_miso.run.delivery import Batch
from target_miso.sinks import SET_ASIDE, InteractionsSink

if t.TYPE_CHECKING:
    from singer_sdk import Target

    from target_miso.run.run import HasRun


class CatalogSink(InteractionsSink):
    """Maps one stream's rows to product or user records and batches the changed ones."""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Create the sink.

        Args:
            target: The running target (the SDK passes it; the sink uses its ``run``).
            stream_name: The stream (or its stream-map alias).
            schema: The stream's schema.
            key_properties: The stream's key properties.

        """
        self.catalog = t.cast("HasRun", target).run.catalogs.stream(stream_name)
        super().__init__(target, stream_name, schema, key_properties)

    def setup(self) -> None:
        """Check the mapping against the stream's columns (mistakes stop the run here)."""
        self.catalog.mapping.bind_schema(self.schema)

    @property
    def max_size(self) -> int:
        """Records per request: ``catalog_batch_size_rows``."""
        return self.run.catalogs.batch_size_rows

    def process_record(self, record: dict, context: dict) -> None:
        """Map, validate, compare and batch one source row.

        Args:
            record: The row as the tap sent it.
            context: ``{"line": ...}``: the Singer line, when the target passes it.

        """
        run, catalog = self.run, self.catalog
        run.tally.records_in += 1
        catalog.counts["read"] += 1
        # Every row read keeps its id from deletes, whatever happens to it below: a row set
        # aside has its id counted by run.set_aside (Catalogs.rejected_before).
        mapped = self.map_or_set_aside(catalog.mapping.map, record, context)
        if mapped is SET_ASIDE:
            return
        if mapped is None:
            catalog.counts["filtered"] += 1
            if not catalog.options.delete_filtered:
                catalog.read_row(record)
            return
        record_id = catalog.read_row(record, mapped)
        reasons = catalog.validator.reasons(mapped)
        if reasons:
            run.set_aside(self.stream_name, reasons, record, mapped, "validation")
            return
        encoded = self.encode_or_set_aside(mapped, record)
        if encoded is None:
            return
        record_id = t.cast("str", record_id)  # validated: a non-empty string
        catalog.rejected_rows.valid(record_id)
        digest = content_hash(mapped)
        if catalog.is_unchanged(record_id, digest):
            catalog.counts["unchanged"] += 1
            return
        batch = self._batch
        if batch.records and batch.size_bytes + len(encoded) + 1 > self._max_bytes:
            self._seal()
            batch = self._batch
        batch.add(encoded, record)
        self._keys.append((record_id, digest))
        if len(batch) >= self.max_size:
            self._seal()

    def activate_version(self, new_version: int | None) -> None:
        """Start a full-table sync of this stream: see ``Catalogs.activate_version``.

        Args:
            new_version: The table version (not needed: ids seen in this run decide).

        """
        self.run.catalogs.activate_version(self.stream_name)

    def _new_batch(self) -> Batch:
        keys: list[tuple[str, str]] = []
        self._keys = keys
        return Batch(
            self.stream_name,
            path=self.catalog.path,
            on_stored=functools.partial(self.catalog.stored, keys),
        )
