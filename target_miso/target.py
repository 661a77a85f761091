"""TargetMiso: the singer-sdk wiring of the target.

The SDK reads Singer messages and calls the hooks below; everything a run owns (delivery,
rejects, checkpoints and STATE, the graceful stop, the summary) lives in ``run/``, and the
settings with their start-up checks in ``settings.py``. Data flows one way: RECORD -> the
stream's mapping -> validation -> batch -> delivery -> STATE.
"""

from __future__ import annotations

import gc
import sys
import traceback
import typing as t
from functools import cached_property

import click
from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_miso.batch_files import batch_encoding
from target_miso.catalog.sink import CatalogSink
from target_miso.reader import (
    FIX_THE_TAP,
    BadInputLine,
    OrjsonSingerReader,
    RecordBeforeSchema,
)
from target_miso.run.run import RUN_ERRORS, Run
from target_miso.settings import (
    SETTINGS_SCHEMA,
    check_settings,
    config_file_problem,
    normalize_config,
)
from target_miso.sinks import InteractionsSink

if t.TYPE_CHECKING:
    from types import FrameType


def _tune_garbage_collector() -> None:
    # Records are acyclic dicts, freed by reference counting the moment their batch is sent;
    # the cycle collector only re-scanned the live heap (every module, every batch held).
    # Freezing the start-up heap and scanning less often cut the CPU per record by a fifth
    # (docs/performance.md). Called from listen(), which the target process runs and the
    # SDK's in-process test runners do not.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class TargetMiso(Target):
    """Singer target for Miso.ai interactions."""

    name = "target-miso"
    capabilities: t.ClassVar[list] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        PluginCapabilities.ACTIVATE_VERSION,  # full-table syncs of catalog streams
    ]
    default_sink_class = InteractionsSink
    message_reader_class = OrjsonSingerReader
    config_jsonschema = SETTINGS_SCHEMA

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Add the SDK's built-in settings, less those that mean nothing for Miso.

        Args:
            config_jsonschema: The settings schema to extend in place.

        """
        super().append_builtin_config(config_jsonschema)
        # Interactions are append-only and carry no _sdc_ columns: hide the knobs.
        for name in ("load_method", "add_record_metadata"):
            config_jsonschema["properties"].pop(name, None)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> t.Any:
        """Read the ``--config`` files; a file that is not a JSON object is named in one line.

        Args:
            ctx: The click context.
            param: The ``--config`` option.
            value: The paths given (or ``ENV``).

        Returns:
            The SDK's config input.

        """
        for path in value:
            problem = config_file_problem(path)
            if problem:
                cls.logger.error("--config %s: %s", path, problem)
                ctx.exit(1)
        return super().cb_config(ctx, param, value)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        hidden, stripped = normalize_config(self._config, self.config_jsonschema)
        if stripped:
            self.logger.warning(
                "api_key: removed %d whitespace characters around the key", stripped
            )
        errors = super()._validate_config(raise_errors=raise_errors and not hidden)
        if hidden:
            errors = ["api_key: must be a string (value not shown)", *errors]
            if raise_errors:
                raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Check the settings and prepare the run; fails before any record is read.

        Args:
            *args: Passed to the SDK's Target.
            **kwargs: Passed to the SDK's Target.

        """
        super().__init__(*args, **kwargs)
        check_settings(self.config)
        self.run = Run(
            self.config,
            self.logger,
            drain_sinks=lambda is_endofpipe: self.drain_all(is_endofpipe=is_endofpipe),
            sink_for=lambda stream_name: t.cast(
                "InteractionsSink", self._sinks_active[stream_name]
            ),
            interrupt_read=self._interrupt_read,
        )
        if isinstance(self.message_reader, OrjsonSingerReader):
            self.message_reader.set_aside = self.run.set_aside_line

    # --- Sinks ---------------------------------------------------------------------------

    def get_sink_class(self, stream_name: str) -> type[InteractionsSink]:
        """Catalog streams (``kind: products|users``) get the catalog sink.

        Args:
            stream_name: The stream.

        Returns:
            The sink class.

        """
        if self.run.catalogs.is_catalog(stream_name):
            return CatalogSink
        return t.cast("type[InteractionsSink]", super().get_sink_class(stream_name))

    def _process_activate_version_message(self, message_dict: dict) -> None:
        # The SDK's handler warns about _sdc_ metadata columns, which catalog streams do
        # not use; they only need to know that the stream is read in full.
        stream = message_dict.get("stream")
        if (
            isinstance(stream, str)
            and self.run.catalogs.is_catalog(stream)
            and self.config.get("process_activate_version_messages", True)
        ):
            # A catalog stream's sink is a CatalogSink (get_sink_class); it needs no version.
            sink = t.cast("CatalogSink", self.get_sink(stream))
            sink.activate_version(message_dict.get("version"))
            return
        super()._process_activate_version_message(message_dict)

    def _bad_record_line(self, problem: str) -> BadInputLine:
        return BadInputLine(getattr(self.message_reader, "line_number", 0), problem)

    def _record_before_schema(self, stream_name: str, kind: str = "RECORD") -> RecordBeforeSchema:
        number = getattr(self.message_reader, "line_number", 0)
        return RecordBeforeSchema(number, *_no_schema(stream_name, kind))

    # --- The per-record path -------------------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        # Without stream maps or flattening, the SDK's per-record work (a copy of the
        # record, an identity transform, _sdc_ key removal, a debug log call per record)
        # changes nothing for this target but cost a third of its time on wide rows.
        # This path keeps what matters: schema-before-record, key properties, counters,
        # metrics, size-triggered drains and checkpoints.
        stream_name = message_dict.get("stream")
        record = message_dict.get("record")
        if type(stream_name) is not str or type(record) is not dict:
            # Named without its contents: the record holds personal data.
            what = "a 'stream' name" if type(stream_name) is not str else "a 'record' object"
            raise self._bad_record_line(f"is a RECORD without {what}")
        if self._uses_stream_maps:
            if stream_name not in self.mapper.stream_maps:
                raise self._record_before_schema(stream_name)
            super()._process_record_message(message_dict)
            return
        sink = self._sinks_active.get(stream_name)
        if sink is None:
            raise self._record_before_schema(stream_name)
        if sink.key_properties:
            sink._singer_validate_message(record)
        sink.tally_record_read()
        sink.process_record(record, {"line": getattr(self.message_reader, "current_line", None)})
        sink.record_counter_metric.increment()
        if sink.is_full:
            self.drain_one(sink)
            self.run.after_batch()  # waiting checkpoints are looked at once per batch
        self.run.after_record()

    def _process_batch_message(self, message_dict: dict) -> None:
        # Checked like a RECORD line; the sink then reads the files record by record.
        stream_name = message_dict.get("stream")
        if type(stream_name) is not str or not isinstance(message_dict.get("manifest"), list):
            raise self._bad_record_line("is a BATCH without a 'stream' name or a 'manifest' list")
        if stream_name not in self._sinks_active and stream_name not in self.mapper.stream_maps:
            raise self._record_before_schema(stream_name, "BATCH")
        batch_encoding(stream_name, message_dict.get("encoding"))  # refuses what cannot be read
        super()._process_batch_message(message_dict)

    @cached_property
    def _uses_stream_maps(self) -> bool:
        return bool(self.config.get("stream_maps") or self.config.get("flattening_enabled"))

    # --- Checkpoints, STATE and the end of the run ---------------------------------------

    def _handle_max_record_age(self) -> None:
        # Called by the SDK's own record path (stream maps): the run decides when to
        # checkpoint, instead of the SDK's fixed 5-minute drain.
        self.run.after_record()

    def _process_state_message(self, message_dict: dict) -> None:
        """Keep the latest STATE (the SDK's way) and count each new value for the resend guard.

        Args:
            message_dict: The STATE message.

        """
        before = self._latest_state
        super()._process_state_message(message_dict)
        if self._latest_state != before:
            self.run.state_received()

    def _write_state_message(self, state: dict) -> None:
        """Take the latest STATE at a checkpoint; the run decides when it is written.

        Args:
            state: The latest STATE received from the tap (the SDK's own copy).

        """
        self.run.take_state(state)

    def process_endofpipe(self) -> None:
        """Deliver the rest, write the final STATE and the run summary.

        Also the end of a run stopped by SIGTERM/SIGINT: the reader left the input early,
        and what it read is delivered the same way.
        """
        self.run.finish(read_cut_short=self._stopped_early)

    # The SDK marks listen @final; overriding it is deliberate (the failure handling below).
    def listen(self, file_input: t.IO[str] | None = None) -> None:  # type: ignore[misc]
        """Run the target; a delivery failure ends it with a clear message and exit code 1.

        Args:
            file_input: Where to read Singer messages (stdin by default).

        """
        _tune_garbage_collector()
        stop = self.run.stop
        stop.install()
        try:
            super().listen(file_input)
        except InvalidInputLine as error:
            self._stop_at_bad_line(error)
        except RUN_ERRORS as error:
            self.run.fail(error)
            sys.exit(1)
        except Exception as error:  # a bug: reported with the key masked, then exit 1
            self.run.client.stop_retrying()
            trace = "".join(traceback.format_exception(error))
            self.logger.error(
                "target-miso failed unexpectedly (%s); no STATE was written past the records "
                "that were not delivered. Please report this with the trace:\n%s",
                type(error).__name__,
                self.run.client.scrub(trace),
            )
            sys.exit(1)
        finally:
            stop.uninstall()
        if self.run.failed_unmatched_mappings:
            sys.exit(1)
        if self._stopped_early:
            self.logger.warning(
                "Stopped by signal %d before the end of the input: what was read was "
                "delivered and its STATE written; the next run goes on from there.",
                stop.signum,
            )
            sys.exit(stop.exit_code)

    def _stop_at_bad_line(self, error: InvalidInputLine) -> None:
        # One ERROR line (which line, what is wrong, what to do; never its contents), then
        # the end-of-input path for what was read before it: delivered, its STATE written.
        if isinstance(error, BadInputLine):
            message = str(error)
        else:  # the SDK's own checks (SCHEMA or STATE lines) print the whole message: not that
            number = getattr(self.message_reader, "line_number", 0)
            problem = str(error).partition(":")[0].rstrip(".")
            message = f"Input line {number}: {problem[:1].lower()}{problem[1:]}. {FIX_THE_TAP}."
        self.logger.error(
            "target-miso stopped: %s Delivering what was read before that line; no STATE past "
            "it is written (exit code 1).",
            message,
        )
        try:
            self.run.finish(read_cut_short=True)
        except RUN_ERRORS as delivery_error:
            self.logger.error("target-miso stopped: %s", self.run.client.scrub(str(delivery_error)))
        sys.exit(1)

    # --- Signals --------------------------------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # SIGTERM/SIGINT (run/graceful_stop.py): the handler only records the request; the
        # read loop then ends and the run is finished the ordinary way, then exits 128+signal.
        run = getattr(self, "run", None)
        if run is None:  # still starting up: nothing was read, nothing to deliver
            raise SystemExit(128 + signum)
        run.stop.handle(signum, frame)

    def _interrupt_read(self) -> None:
        reader = getattr(self, "message_reader", None)
        if isinstance(reader, OrjsonSingerReader):
            reader.request_stop()

    @property
    def _stopped_early(self) -> bool:
        reader = getattr(self, "message_reader", None)
        return bool(getattr(reader, "stopped_early", False))


_SHOWN = 100  # characters of a stream name shown in a message


def _no_schema(stream_name: str, kind: str) -> tuple[str, str]:
    shown = stream_name if len(stream_name) <= _SHOWN else stream_name[:_SHOWN] + "..."
    return (
        f"is a {kind} of stream {shown!r}, which no SCHEMA message described before it",
        "A tap sends each stream's SCHEMA before its RECORDs: check the tap (and any "
        "stream_maps alias), then run again; the next run starts from the last STATE written",
    )
