"""The interactions sink: map each record, validate, batch by rows and bytes, hand over.

One sink per Singer stream. A record goes through the stream's mapping, each interaction
is validated against Miso's schema (invalid ones are set aside with their reasons), encoded
once, and added to a batch bounded by ``batch_size_rows`` and ``max_request_bytes``. Full
batches go to the target's ``Delivery``, which sends them concurrently.
"""

from __future__ import annotations

import math
import typing as t

import orjson
from singer_sdk.sinks import BatchSink

from target_miso.batch_files import batch_records
from target_miso.mappings import MappingConfigError, MappingError
from target_miso.miso.schema import not_finite
from target_miso.reader import line_text
from target_miso.run.delivery import Batch

if t.TYPE_CHECKING:
    from singer_sdk import Target
    from singer_sdk.helpers._batch import BaseBatchFileEncoding

    from target_miso.run.run import HasRun

#: What ``map_or_set_aside`` returns for a record it set aside.
SET_ASIDE = object()
# The {"data":[ ... ]} envelope around the records of one request.
_ENVELOPE_BYTES = len(b'{"data":[]}')
# orjson writes integers in this range and nests at most this deep.
_INT_MIN, _INT_END = -(2**63), 2**64
_MAX_DEPTH = 254
_INT_BITS_SHOWN = 128


def encode_interaction(interaction: dict[str, t.Any]) -> bytes:
    """Encode one interaction as compact JSON, exactly as it is sent.

    Args:
        interaction: A validated interaction record.

    Returns:
        UTF-8 JSON without spaces (orjson: ~10x the standard library's speed).

    """
    return orjson.dumps(interaction)


def unsendable(value: object) -> str | None:
    """Find the first value orjson cannot write as it is, and say where and why.

    orjson raises on lone surrogates, integers beyond 64 bits and nesting deeper than 254
    levels, and writes NaN and Infinity as ``null``; Miso takes none of them.

    Args:
        value: An interaction.

    Returns:
        A reason naming the field (``revenue: ...``, ``context.page.title: ...``), or None
        when everything can be sent.

    """
    stack: list[tuple[object, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        where = path or "record"
        if isinstance(item, (dict, list, tuple)):
            if depth >= _MAX_DEPTH:
                return f"{where}: nested more than {_MAX_DEPTH} levels deep"
            if isinstance(item, dict):
                if not all(_is_utf8(key) for key in item if isinstance(key, str)):
                    return f"{where}: a key holds a lone surrogate (not valid Unicode)"
                entries = [(v, f"{path}.{k}" if path else str(k)) for k, v in item.items()]
            else:
                entries = [(v, f"{where}[{i}]") for i, v in enumerate(item)]
            stack.extend((v, p, depth + 1) for v, p in reversed(entries))
            continue
        problem = _unsendable_scalar(item)
        if problem:
            return f"{where}: {problem}"
    return None


def _unsendable_scalar(item: object) -> str | None:
    if isinstance(item, str):
        return None if _is_utf8(item) else "text holds a lone surrogate (not valid Unicode)"
    if isinstance(item, bool):
        return None
    if isinstance(item, int) and not _INT_MIN <= item < _INT_END:
        return f"integer {_digits(item)} is beyond 64 bits"
    if isinstance(item, float) and not math.isfinite(item):
        return not_finite(item)
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _digits(number: int) -> str:
    if number.bit_length() > _INT_BITS_SHOWN:  # str() of a huge int is refused past 4,300 digits
        return f"of about {int(number.bit_length() * 0.30103)} digits"
    return str(number)


class InteractionsSink(BatchSink):
    """Maps one stream's records to interactions and batches them for Miso."""

    #: Records per request, as Miso's own tools send them; ``batch_size_rows`` overrides it.
    MAX_SIZE_DEFAULT = 1000

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: t.Sequence[str] | None,
    ) -> None:
        """Create the sink; the mapping is bound in ``setup``.

        Args:
            target: The running target (the SDK passes it); the sink uses only its ``run``,
                which owns delivery, rejects and mappings.
            stream_name: The stream (or its stream-map alias).
            schema: The stream's schema.
            key_properties: The stream's key properties.

        """
        super().__init__(target, stream_name, schema, key_properties)
        self.run = t.cast("HasRun", target).run
        self._max_bytes = int(target.config["max_request_bytes"]) - _ENVELOPE_BYTES
        self._batch = self._new_batch()
        self._full: list[Batch] = []

    def setup(self) -> None:
        """Find this stream's mapping (errors in its options stop the run here)."""
        self.mapping = self.run.mapping_for(self.stream_name, self.schema)

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
        self.run.tally.records_in += 1
        interactions = self.map_or_set_aside(self.mapping.map, record, context)
        if interactions is SET_ASIDE:
            return
        if not interactions:
            return
        kept = self.mapping.kept_source(record) or context.get("line") or record
        for interaction in interactions:
            self.add_interaction(interaction, record, kept)

    def map_or_set_aside(
        self,
        mapper: t.Callable[[dict], t.Any],
        record: dict,
        context: dict,
    ) -> t.Any:
        """Run the stream's mapping on one record; whatever it raises sets the record aside.

        Args:
            mapper: The mapping's ``map``.
            record: The record as the tap sent it.
            context: ``{"line": ...}`` when the target passes the Singer line.

        Returns:
            What the mapping returned, or ``SET_ASIDE``.

        Raises:
            MappingConfigError: A mistake in the mapping's options ends the run.

        """
        try:
            return mapper(record)
        except MappingError as error:
            reasons = error.reasons  # one per failing field
        except MappingConfigError:
            raise
        except RecursionError:
            # Too deep to map is too deep to write back as JSON too: keep the line as text.
            line = context.get("line")
            record = line_text(line) if line is not None else None  # type: ignore[assignment]
            reasons = ["record: nests objects or arrays too deeply to be mapped"]
        except Exception as error:  # one record never ends the run
            reasons = [f"record: the mapping failed on it ({type(error).__name__}: {error})"]
        self.run.set_aside(self.stream_name, reasons, record, None, "mapping")
        return SET_ASIDE

    def encode_or_set_aside(self, mapped: dict[str, t.Any], source: object) -> bytes | None:
        """Encode a validated record exactly as it is sent, or set it aside.

        Args:
            mapped: The interaction (or catalog record).
            source: The source record, for the rejects file.

        Returns:
            The encoded record, or None when it was set aside.

        """
        try:
            encoded = encode_interaction(mapped)
        except TypeError as error:  # orjson.JSONEncodeError: surrogates, big ints, depth
            reason = unsendable(mapped) or f"record: cannot be encoded as JSON ({error})"
        else:
            # orjson writes NaN and Infinity as null: look for them only where a null is.
            problem = unsendable(mapped) if b"null" in encoded else None
            if problem is None and len(encoded) + 1 <= self._max_bytes:
                return encoded
            reason = problem or (
                f"record: {len(encoded)} bytes once encoded, more than max_request_bytes allows"
            )
        self.run.set_aside(self.stream_name, [reason], source, mapped, "validation")
        return None

    def add_interaction(
        self,
        interaction: dict[str, t.Any],
        source: object,
        kept: object = None,
    ) -> None:
        """Validate one interaction and add it to the current batch.

        Args:
            interaction: The mapped interaction.
            source: The source record it came from.
            kept: What the batch keeps of the source (its Singer line); default: ``source``.

        """
        run = self.run
        reasons = run.validator.reasons(interaction)
        if reasons:
            run.set_aside(self.stream_name, reasons, source, interaction, "validation")
            return
        encoded = self.encode_or_set_aside(interaction, source)
        if encoded is None:
            return
        if run.resend_guard.delivered_before(self.stream_name, encoded, run.states_received):
            return
        batch = self._batch
        if batch.records and batch.size_bytes + len(encoded) + 1 > self._max_bytes:
            self._seal()
            batch = self._batch
        batch.add(encoded, source if kept is None else kept)
        self._marks.append(run.states_received)
        run.tally.interactions += 1
        if len(batch) >= self.max_size:
            self._seal()

    def add_held(self, held: list[tuple[dict[str, t.Any], dict[str, t.Any]]]) -> None:
        """Take the interactions a mapping held back (e.g. page views awaiting pings).

        Args:
            held: Pairs of (interaction, source record).

        """
        for interaction, source in held:
            self.add_interaction(interaction, source)

    def process_batch_files(
        self,
        encoding: BaseBatchFileEncoding,
        files: t.Sequence[str],
    ) -> None:
        """Take the records of a BATCH message one at a time, exactly as RECORDs are taken.

        (The SDK's own version loads each file whole and hands it to ``process_batch``,
        which does not read records: every record of the BATCH was lost.)

        Args:
            encoding: The BATCH message's encoding (checked by ``batch_encoding``).
            files: The manifest.

        """
        storage = self.batch_config.storage if self.batch_config else None
        run = self.run
        for record in batch_records(self.stream_name, encoding, files, storage):
            self.tally_record_read()
            self.process_record(record, {})
            self.record_counter_metric.increment()
            if self.is_full:
                self.hand_over_full()
                run.after_batch()
            run.after_record()

    def hand_over_full(self) -> None:
        """Hand the batches that reached their row or byte limit to delivery."""
        full, self._full = self._full, []
        for batch in full:
            self.run.delivery.submit(batch)

    def process_batch(self, context: dict) -> None:
        """Hand every pending batch to delivery (which sends them concurrently).

        Args:
            context: The SDK's batch context (unused).

        """
        if self._batch.records:
            self._seal()
        self.hand_over_full()

    def _seal(self) -> None:
        self._full.append(self._batch)
        self._batch = self._new_batch()

    def _new_batch(self) -> Batch:
        # Catalog streams override this: another endpoint, and a hook for accepted records.
        # The resend guard marks each record with the STATEs received before it.
        batch = Batch(self.stream_name)
        self._marks: list[int] = []
        batch.on_stored = self.run.resend_guard.stored_callback(
            self.stream_name, batch.records, self._marks
        )
        return batch
