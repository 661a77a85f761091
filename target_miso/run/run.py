"""One run of the target: who delivers, what was set aside, when a STATE may be written.

The target creates one ``Run`` and hands it to every sink and to the catalog code; none of
them import the target. The run owns the API client, delivery, the rejects file, the
interaction validator, the mappings, the checkpoint queue, the graceful stop and the
counters of the summary.

Data flows one way: the sinks map and validate each record and hand full batches to
``delivery``; at each checkpoint every batch is handed over, and its STATE is written only
once the requests on the wire at that moment were answered (``checkpoints.py``), so every
earlier record was accepted by Miso or set aside. Reading goes on meanwhile, but never more
than ``replay_bound`` records past the last STATE written.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import logging
import sys
import threading
import time
import typing as t

from target_miso.batch_files import BatchFileError
from target_miso.catalog.deletes import CatalogError
from target_miso.catalog.hashes import environment_key
from target_miso.catalog.sync import Catalogs
from target_miso.mappings import MappingConfigError, build_mapping, entry_key
from target_miso.miso.client import MisoAPIError, MisoClient
from target_miso.miso.schema import InteractionValidator
from target_miso.reader import line_text, stream_of
from target_miso.run import lookback
from target_miso.run.checkpoints import Checkpoint, CheckpointQueue
from target_miso.run.delivery import Delivery
from target_miso.run.graceful_stop import GracefulStop
from target_miso.run.rejects import RejectsFile, RejectsWriteError, TooManyRejectsError
from target_miso.run.resend_guard import ResendGuard

if t.TYPE_CHECKING:
    from target_miso.mappings import Mapping

#: Failures that end the run with a clear message instead of a traceback.
RUN_ERRORS = (
    BatchFileError,
    MisoAPIError,
    TooManyRejectsError,
    RejectsWriteError,
    MappingConfigError,
    CatalogError,
)


class TakesHeld(t.Protocol):
    """A sink, as far as a checkpoint needs it: it takes the interactions a mapping held."""

    def add_held(self, held: list[tuple[dict[str, t.Any], dict[str, t.Any]]]) -> None:
        """Validate and batch them."""


class HasRun(t.Protocol):
    """What a sink is given by the SDK (the target), as far as a sink needs it."""

    run: Run


@dataclasses.dataclass
class Tally:
    """Counters for progress lines and the run summary (main thread only)."""

    records_in: int = 0
    interactions: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)


class Run:
    """The state of one run, shared by the target, its sinks and the catalog code."""

    def __init__(
        self,
        config: t.Mapping[str, t.Any],
        logger: logging.Logger,
        *,
        drain_sinks: t.Callable[[bool], None],
        sink_for: t.Callable[[str], TakesHeld],
        interrupt_read: t.Callable[[], None],
    ) -> None:
        """Prepare delivery; the settings were checked before (``settings.py``).

        Args:
            config: The target's settings.
            logger: The target's logger.
            drain_sinks: Hands every sink's batches to delivery (the SDK's ``drain_all``);
                the latest STATE comes back through ``take_state``.
            sink_for: The active sink of a stream.
            interrupt_read: Tells the reader to stop (called from the signal handler).

        """
        self.config = config
        self.logger = logger
        self._drain_sinks = drain_sinks
        self._sink_for = sink_for
        self.validator = InteractionValidator(config.get("max_future_timestamp_seconds"))
        self.rejects = RejectsFile(config["rejects_path"], config.get("max_rejects"))
        self.client = MisoClient(
            api_url=config["api_url"],
            api_key=config["api_key"],
            dry_run=bool(config["dry_run"]),
            timeout=float(config["request_timeout"]),
            max_retries=int(config["max_retries"]),
            retry_initial_delay=float(config["retry_initial_delay"]),
            retry_max_delay=float(config["retry_max_delay"]),
            max_requests_per_second=float(config["max_requests_per_second"]),
            pool_size=int(config["max_concurrent_requests"]),
        )
        self.delivery = Delivery(
            self.client,
            self.rejects,
            int(config["max_concurrent_requests"]),
            on_refused=self._refused,
        )
        self.tally = Tally()
        self.resend_guard = ResendGuard(
            config.get("resend_guard_store"),
            environment_key(config["api_url"], config["api_key"]),
        )
        #: STATE messages received so far (a new value each): marks what the guard keeps.
        self.states_received = 0
        #: The input was read to its end (not cut short by a signal or a bad line).
        self._input_complete = False
        self.catalogs = Catalogs(self)
        self.mappings: dict[str, Mapping] = {}
        #: Set at the end of a run when a ``mappings`` key matched no stream and
        #: ``unmatched_mappings`` is ``error``: the target then exits 1.
        self.failed_unmatched_mappings = False
        self._summary_logged = False
        self._checkpoint_records = int(config["state_checkpoint_records"])
        self._checkpoint_seconds = float(config["state_checkpoint_seconds"])
        self._progress_seconds = float(config["progress_log_seconds"])
        self._records_since_checkpoint = 0
        self._checkpoints = CheckpointQueue(self._release_checkpoint)
        #: Back-pressure: records read past the last STATE written never exceed a checkpoint
        #: interval plus the batches delivery holds, so a kill -9 resends at most that many
        #: records even while one request is stuck in its retries.
        self.replay_bound = self._checkpoint_records + int(config["batch_size_rows"]) * (
            Delivery.batches_held(int(config["max_concurrent_requests"]))
        )
        #: ``tally.records_in`` when the last STATE was released.
        self._records_at_last_state = 0
        #: Held while a STATE line is written, so that a forced stop never cuts one in half.
        self._output_lock = threading.Lock()
        self.stop = GracefulStop(
            float(config["stop_grace_seconds"]),
            self._output_lock,
            interrupt_read,
        )
        #: The STATE the SDK hands over while a checkpoint drains the sinks.
        self._state_at_checkpoint: dict | None = None
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_seconds
        self._next_progress_at = time.monotonic() + (self._progress_seconds or float("inf"))

    # --- Mappings and rejects ----------------------------------------------------------

    def mapping_for(self, stream_name: str, schema: dict) -> Mapping:
        """Return the stream's mapping, created on its first SCHEMA.

        The mapping outlives a sink replaced after a schema change, so interactions it
        holds (e.g. page views awaiting their pings) are not lost with the old sink.

        Args:
            stream_name: The stream (or stream-map alias).
            schema: The stream's latest schema.

        Returns:
            The stream's mapping.

        """
        mapping = self.mappings.get(stream_name)
        if mapping is None:
            mapping = build_mapping(stream_name, self.config.get("mappings") or {}, schema)
            mapping.bind_environment(
                environment_key(self.config["api_url"], self.config["api_key"])
            )
            self.logger.info(
                "Stream '%s' is mapped with the '%s' preset",
                stream_name,
                mapping.preset,
            )
            self.mappings[stream_name] = mapping
        else:
            mapping.bind_schema(schema)
        return mapping

    def set_aside(
        self,
        stream: str,
        reasons: list[str],
        source: object,
        interaction: object,
        stage: str,
    ) -> None:
        """Write one record to the rejects file.

        Args:
            stream: The stream it came from.
            reasons: Why it cannot be delivered.
            source: The source record.
            interaction: The mapped interaction, if any.
            stage: ``mapping``, ``validation`` or ``miso``.

        """
        if self.catalogs.rejected_before(stream, reasons, source, interaction):
            return  # a catalog row an earlier run set aside unchanged: counted, not rewritten
        self.rejects.add(
            stream=stream,
            reasons=reasons,
            source=source,
            interaction=interaction,
            stage=stage,
        )
        if stage != "mapping":  # a mapping's own set-asides are known to it already
            self._refused(stream, source)

    def _refused(self, stream: str, source: object) -> None:
        # Set aside at validation or by Miso (a delivery thread): not delivered.
        mapping = self.mappings.get(stream)
        if mapping is not None:
            mapping.refused(source)

    def set_aside_line(self, line_number: int, line: str | bytes, reason: str) -> None:
        """Write a RECORD line that cannot be decoded to the rejects file, as text.

        Args:
            line_number: Its number in the input.
            line: The raw line (bytes that are not UTF-8 are kept as backslash escapes).
            reason: Why it cannot be read, naming the line number.

        """
        self.tally.records_in += 1
        self.rejects.add(
            stream=stream_of(line),  # None when it cannot be found
            reasons=[reason],
            source=line_text(line),
            interaction=None,
            stage="input",
        )
        self.logger.debug("Set aside input line %d", line_number)

    # --- Checkpoints and STATE ----------------------------------------------------------

    def after_record(self) -> None:
        """After every RECORD: checkpoint every N records or T seconds, back-pressure, progress."""
        self._records_since_checkpoint += 1
        now = time.monotonic()
        if (
            self._records_since_checkpoint >= self._checkpoint_records
            or now >= self._next_checkpoint_at
        ):
            self.checkpoint()
        if self.tally.records_in - self._records_at_last_state > self.replay_bound:
            self._wait_for_oldest_checkpoint()
        if now >= self._next_progress_at:
            self.log_progress()
            self._next_progress_at = now + self._progress_seconds

    def after_batch(self) -> None:
        """After a full batch was handed over: release the checkpoints now delivered."""
        if self._checkpoints:
            self._checkpoints.release_ready()
        self.resend_guard.save()

    def checkpoint(self, *, is_endofpipe: bool = False) -> None:
        """Hand everything read so far to delivery; its STATE follows once it is delivered.

        At the end of input (and whenever catalog streams run: their task waits and hash
        saves are per checkpoint) this waits for every request and writes the STATE now.
        Otherwise the checkpoint is queued with the requests on the wire, and reading goes on.

        Args:
            is_endofpipe: True at the end of input (sinks are also cleaned up).

        """
        for stream_name, mapping in self.mappings.items():
            held = mapping.flush()
            if held:
                self._sink_for(stream_name).add_held(held)
        self._state_at_checkpoint = None
        self._drain_sinks(is_endofpipe)  # hands the latest STATE over through take_state
        if is_endofpipe or self.catalogs.streams:
            self._settle()
            self._checkpoints.discard()  # the STATE just written covers them
            self._records_at_last_state = self.tally.records_in
            if self._state_at_checkpoint is not None:
                self.write_state(self._state_at_checkpoint)
            if is_endofpipe and self._input_complete:
                # Read to its end and delivered: the run is done with it, STATE or not.
                self._resend_guard_covered(None)
            elif self._state_at_checkpoint is not None:
                self._resend_guard_covered(self.states_received)
        else:
            self._checkpoints.add(
                Checkpoint(
                    state=self._state_at_checkpoint,
                    requests=self.delivery.in_flight(),
                    tokens=tuple((m, m.seal()) for m in self.mappings.values()),
                    records_read=self.tally.records_in,
                    state_number=self.states_received,
                ),
            )
        self._records_since_checkpoint = 0
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_seconds

    def state_received(self) -> None:
        """Count a STATE message with a new value (the records after it get the next mark)."""
        self.states_received += 1

    def take_state(self, state: dict) -> None:
        """Take the latest STATE at a checkpoint; ``checkpoint`` decides when it is written.

        Args:
            state: The latest STATE received from the tap (the SDK's own copy).

        """
        self._state_at_checkpoint = state

    def write_state(self, state: dict) -> None:
        """Write one STATE line to stdout (never cut by a forced stop).

        Streams with a ``state_lookback_seconds`` get their bookmark moved back
        (``lookback.py``).

        Args:
            state: The STATE value.

        """
        lookbacks = {
            stream: mapping.state_lookback_seconds
            for stream, mapping in self.mappings.items()
            if mapping.state_lookback_seconds
        }
        state = lookback.move_back(state, lookbacks)
        line = json.dumps(state, default=_state_default) + "\n"
        with self._output_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def _settle(self) -> None:
        # The full wait: every request answered, then everything read so far is committed.
        self.delivery.settle()
        self.rejects.sync()
        self.catalogs.commit()
        for mapping in self.mappings.values():
            mapping.commit()

    def _release_checkpoint(self, checkpoint: Checkpoint) -> None:
        # Its requests were delivered: make its rejects durable, commit, write its STATE.
        self.rejects.sync()
        for mapping, token in checkpoint.tokens:
            mapping.commit(token)
        self._records_at_last_state = checkpoint.records_read
        if checkpoint.state is not None:
            self.write_state(checkpoint.state)
            self._resend_guard_covered(checkpoint.state_number)

    def _resend_guard_covered(self, state_number: int | None) -> None:
        # A STATE written after a stop signal may be dropped by the orchestrator (Meltano
        # does): from then on the guard forgets nothing.
        if self.stop.requested:
            self.resend_guard.frozen = True
        self.resend_guard.covered(state_number)

    def _wait_for_oldest_checkpoint(self) -> None:
        # Reading has run too far ahead of the last STATE (a request stuck in retries):
        # wait for the oldest checkpoint's requests before reading on.
        if not self._checkpoints:
            return
        self._checkpoints.wait_for_oldest()
        self.delivery.raise_if_failed()

    # --- The end of a run ----------------------------------------------------------------

    def finish(self, *, read_cut_short: bool) -> None:
        """Deliver the rest, write the final STATE and the run summary.

        Args:
            read_cut_short: The input was left before its end (a signal, a bad line): a
                full-table read may be incomplete, so catalog deletes are skipped.

        """
        failed = True
        try:
            if read_cut_short:
                self.catalogs.terminating = True  # a read cut short must not delete anything
            self._input_complete = not read_cut_short
            self.catalogs.finish()  # deletes after full-table reads, before the final STATE
            self.checkpoint(is_endofpipe=True)
            # Only after the final STATE: the data was fine, the configuration is not. A read
            # cut short may not have seen every stream yet, so it is not checked.
            unmatched = [] if read_cut_short else self.unmatched_mapping_keys()
            failed = False
        finally:
            self.log_summary(failed=failed)
            self.close()
        if unmatched:
            self._report_unmatched(unmatched)

    def streams_seen(self) -> list[str]:
        """Return the streams of this run that got a sink (interactions and catalog), sorted."""
        return sorted({*self.mappings, *self.catalogs.streams})

    def unmatched_mapping_keys(self) -> list[str]:
        """Return the ``mappings`` keys no stream of this run used (none when no stream came).

        A key counts as used when it is the entry a stream was given (``entry_key``: its
        exact name first, then the first matching glob); a glob shadowed by an earlier one
        or by an exact name was used by no stream either.

        Returns:
            The unused keys, in the order of the setting.

        """
        seen = self.streams_seen()
        if not seen:
            return []
        mappings = self.config.get("mappings") or {}
        used = {entry_key(stream, mappings) for stream in seen}
        return [key for key in mappings if key not in used]

    def _report_unmatched(self, keys: list[str]) -> None:
        # One line: which keys, which streams came, and that the data itself was delivered.
        warn = self.config.get("unmatched_mappings", "error") == "warn"
        message = (
            f"mappings: {', '.join(repr(key) for key in keys)} matched no stream of this run "
            f"(streams seen: {', '.join(repr(s) for s in self.streams_seen())}); a stream "
            "without a key of its own is mapped with preset auto. Everything read was "
            "delivered and the final STATE written; fix the key (a stream name, or a glob "
            "such as 'name*')"
        )
        if warn:
            self.logger.warning("%s.", message)
            return
        self.failed_unmatched_mappings = True
        self.logger.error("%s, or set unmatched_mappings: warn (exit code 1).", message)

    def fail(self, error: BaseException) -> None:
        """Fail the run: say why, and release the checkpoints that were delivered.

        Checkpoints whose own requests were all delivered still get their STATE, so the
        next run replays as little as possible; nothing after the first checkpoint with a
        failed request is released.

        Args:
            error: One of ``RUN_ERRORS``.

        """
        self.logger.error("target-miso stopped: %s", self.client.scrub(str(error)))
        self.client.stop_retrying()  # the run fails anyway: do not linger in backoffs
        if self._checkpoints:
            self.delivery.wait_idle()
            self._checkpoints.release_ready()
        if isinstance(error, MappingConfigError) and self.tally.records_in == 0:
            # A setting found wrong at a stream's SCHEMA, before any record: nothing was
            # delivered or lost, so no summary and no word about resending to puzzle over.
            self.logger.error("No record was read before it: fix the setting and run again.")
            return
        if not self._summary_logged:  # failed while reading: finish() did not log it
            self.log_summary(failed=True)
        self.logger.error(
            "No STATE was written past the records that were not delivered; the next "
            "run starts from the last STATE written and resends them.",
        )

    def close(self) -> None:
        """Stop the workers and close every file and store."""
        self.delivery.close()
        self.client.close()
        self.rejects.close()
        self.resend_guard.close()
        for mapping in self.mappings.values():
            mapping.close()
        self.catalogs.close()

    # --- Reporting -----------------------------------------------------------------------

    def log_progress(self) -> None:
        """Log one progress line."""
        elapsed = time.monotonic() - self.tally.started
        self.logger.info(
            "Progress: %d records read, %d interactions delivered, %d set aside, %.0f records/s",
            self.tally.records_in,
            sum(self.delivery.accepted.values()),
            self.rejects.count,
            self.tally.records_in / elapsed if elapsed else 0.0,
        )

    def log_summary(self, *, failed: bool = False) -> None:
        """Log the run summary: what came in, what was accepted, set aside, skipped.

        Args:
            failed: The run failed: say what was mapped and not delivered (the requests
                still on the wire are waited for first, so that the count is exact).

        """
        self._summary_logged = True
        if failed:
            self.client.stop_retrying()
            self.delivery.wait_idle()
        elapsed = time.monotonic() - self.tally.started
        stats = self.client.stats
        skipped: dict[str, int] = {}
        for mapping in self.mappings.values():
            for reason, count in mapping.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
        catalog_streams = self.catalogs.streams
        accepted = sum(n for s, n in self.delivery.accepted.items() if s not in catalog_streams)
        lines = [
            f"records in: {self.tally.records_in}",
            f"interactions sent and accepted: {accepted}"
            + ("" if not self.client.dry_run else " (dry run: Miso stored nothing)"),
            f"set aside: {self.rejects.count}"
            + (f" in {self.rejects.path}" if self.rejects.count else ""),
            f"requests: {stats.requests} ({stats.retries} retries; by answer: "
            f"{_counts(stats.by_status)})",
            f"elapsed: {elapsed:.1f} s, {self.tally.records_in / elapsed if elapsed else 0:.0f} "
            "records/s",
        ]
        if self.rejects.by_reason:
            lines.insert(3, "set aside by reason:" + _count_lines(self.rejects.by_reason))
        not_resent = sum(self.resend_guard.skipped.values())
        if not_resent:
            lines.insert(
                3,
                f"not sent again: {not_resent} interactions that a stopped or failed earlier "
                "run had delivered after its last saved STATE (resend_guard_store)",
            )
        if skipped:
            lines.insert(3, "skipped by design:" + _count_lines(skipped))
        for stream, count in sorted(self.delivery.accepted.items()):
            if stream not in catalog_streams:
                lines.insert(2, f"  stream {stream}: {count} accepted")
        lines[2:2] = self.catalogs.summary_lines()
        if failed:
            lines.insert(2, self._not_delivered_line(accepted))
        if stats.retries_after_lost_answer:
            lines.append(
                f"answers lost in flight: {stats.retries_after_lost_answer} requests were "
                "retried after a timeout, a dropped connection or a 5xx, which may come after "
                "Miso stored the batch: some records may be stored twice (at most one batch "
                "per such retry)",
            )
        self.logger.info("Run summary:\n  %s", "\n  ".join(lines))

    def _not_delivered_line(self, accepted: int) -> str:
        # Exact, with every request answered (log_summary waited): each interaction handed
        # to a batch (tally.interactions; catalog records are not counted there) ends as
        # accepted by Miso (counted once per batch, however often it was retried), refused
        # by Miso and set aside (counted once: refused records leave the batch before it is
        # resent), or neither: still in a sink's batch, in a batch never sent, or in the
        # request that failed. Records set aside before batching (mapping, validation) never
        # reached tally.interactions. Interactions a mapping still held (Snowplow page views
        # awaiting the flush) were never handed over, and are not counted either.
        catalog_streams = self.catalogs.streams
        refused = sum(n for s, n in self.delivery.refused.items() if s not in catalog_streams)
        missing = self.tally.interactions - accepted - refused
        return (
            f"mapped but not delivered: {missing} interactions (of {self.tally.interactions} "
            f"handed to batches: {accepted} accepted, {refused} refused by Miso and set aside); "
            "the next run resends them from the last STATE written"
        )


def _state_default(value: object) -> object:
    # The SDK reads numbers with a fraction as Decimal, and its own STATE writer then
    # crashes on them (meltano/sdk#3787). The tap wrote them as floats, so a float
    # gives back the same text.
    if isinstance(value, decimal.Decimal):
        exponent = value.as_tuple().exponent
        integral = (
            value == value.to_integral_value() and isinstance(exponent, int) and exponent >= 0
        )
        return int(value) if integral else float(value)
    msg = f"{type(value).__name__} in STATE is not JSON serializable"
    raise TypeError(msg)


def _count_lines(counter: t.Mapping[str, int]) -> str:
    # One reason per line, largest first: the summary is read by people at 3 a.m.
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return "".join(f"\n    {count:>9,}  {reason}" for reason, count in ranked)


def _counts(counter: t.Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"
