"""The interactions sink: map each record, validate, batch by rows and bytes, hand over.

One sink per Singer stream. A record goes through the stream's mapping, each interaction
is validated against Miso's schema (invalid ones are set aside with their reasons), encoded
once, and added to a batch bounded by ``batch_size_rows`` and ``max_request_bytes``. Full
batches go to the target's ``Delivery``, which sends them concurrently.
"""

from __future__ import annotations

import typing as t

import orjson
from singer_sdk.sinks import BatchSink

from target_miso.delivery import Batch
from target_miso.mappings import MappingError

if t.TYPE_CHECKING:
    from target_miso.target import TargetMiso

# The {"data":[ ... ]} envelope around the records of one request.
_ENVELOPE_BYTES = len(b'{"data":[]}')


def encode_interaction(interaction: dict[str, t.Any]) -> bytes:
    """Encode one interaction as compact JSON, exactly as it is sent.

    Args:
        interaction: A validated interaction record.

    Returns:
        UTF-8 JSON without spaces (orjson: ~10x the standard library's speed).
    """
    return orjson.dumps(interaction)


class InteractionsSink(BatchSink):
    """Maps one stream's records to interactions and batches them for Miso."""

    #: Records per request, as Miso's own tools send them; ``batch_size_rows`` overrides it.
    MAX_SIZE_DEFAULT = 1000

    def __init__(
        self,
        target: TargetMiso,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Create the sink; the mapping is bound in ``setup``.

        Args:
            target: The running target, which owns delivery, rejects and mappings.
            stream_name: The stream (or its stream-map alias).
            schema: The stream's schema.
            key_properties: The stream's key properties.
        """
        super().__init__(target, stream_name, schema, key_properties)
        self._target = target
        self._max_bytes = int(target.config["max_request_bytes"]) - _ENVELOPE_BYTES
        self._batch = self._new_batch()
        self._full: list[Batch] = []

    def setup(self) -> None:
        """Find this stream's mapping (errors in its options stop the run here)."""
        self.mapping = self._target.mapping_for(self.stream_name, self.schema)

    def get_validator(self) -> None:
        """Skip the SDK's validation of incoming records against the tap's schema.

        Each interaction is validated against Miso's schema instead, which is what
        decides whether Miso accepts it; validating the input as well cost ~5x the
        throughput (see docs/performance.md).
        """

    def _validate_and_parse(self, record: dict) -> dict:
        # The SDK would also parse date-time strings into datetimes on every record; the
        # mappings read raw values (strings, Decimals, JSON text) and normalize only the
        # fields they use, so that work is skipped here.
        return record

    @property
    def current_size(self) -> int:
        """Interactions waiting to be handed over."""
        return len(self._batch) + sum(len(batch) for batch in self._full)

    @property
    def is_full(self) -> bool:
        """A batch reached its row or byte limit."""
        return bool(self._full)

    def process_record(self, record: dict, context: dict) -> None:
        """Map, validate and batch one source record.

        Args:
            record: The record as the tap sent it.
            context: ``{"line": ...}``: the Singer line the record was read from, when the
                target passes it (no stream maps). The batch keeps what the mapping chooses
                (``kept_source``), else this line, else the record.
        """
        self._target.tally.records_in += 1
        try:
            interactions = self.mapping.map(record)
        except MappingError as error:
            self._target.set_aside(self.stream_name, [str(error)], record, None, "mapping")
            return
        if not interactions:
            return
        kept = self.mapping.kept_source(record) or context.get("line") or record
        for interaction in interactions:
            self.add_interaction(interaction, record, kept)

    def add_interaction(
        self, interaction: dict[str, t.Any], source: object, kept: object = None,
    ) -> None:
        """Validate one interaction and add it to the current batch.

        Args:
            interaction: The mapped interaction.
            source: The source record it came from.
            kept: What the batch keeps of the source (its Singer line); default: ``source``.
        """
        target = self._target
        reasons = target.validator.reasons(interaction)
        if reasons:
            target.set_aside(self.stream_name, reasons, source, interaction, "validation")
            return
        encoded = encode_interaction(interaction)
        if len(encoded) + 1 > self._max_bytes:
            reason = (
                f"record: {len(encoded)} bytes once encoded, more than max_request_bytes allows"
            )
            target.set_aside(self.stream_name, [reason], source, interaction, "validation")
            return
        batch = self._batch
        if batch.records and batch.size_bytes + len(encoded) + 1 > self._max_bytes:
            self._seal()
            batch = self._batch
        batch.add(encoded, source if kept is None else kept)
        target.tally.interactions += 1
        if len(batch) >= self.max_size:
            self._seal()

    def add_held(self, held: list[tuple[dict[str, t.Any], dict[str, t.Any]]]) -> None:
        """Take the interactions a mapping held back (e.g. page views awaiting pings).

        Args:
            held: Pairs of (interaction, source record).
        """
        for interaction, source in held:
            self.add_interaction(interaction, source)

    def process_batch(self, context: dict) -> None:  # noqa: ARG002
        """Hand every pending batch to delivery (which sends them concurrently).

        Args:
            context: The SDK's batch context (unused).
        """
        if self._batch.records:
            self._seal()
        full, self._full = self._full, []
        for batch in full:
            self._target.delivery.submit(batch)

    def _seal(self) -> None:
        self._full.append(self._batch)
        self._batch = self._new_batch()

    def _new_batch(self) -> Batch:
        # Catalog streams override this: another endpoint, and a hook for accepted records.
        return Batch(self.stream_name)
