"""TargetMiso: settings, checkpoints, STATE, and the run summary.

Data flows one way: Singer RECORD -> the stream's mapping -> validation -> batch ->
``Delivery`` (concurrent POSTs) -> STATE. At each checkpoint every batch is handed to
delivery, and the checkpoint's STATE is written only once the requests on the wire at that
moment were answered, so every earlier record was accepted by Miso or set aside in the
rejects file (``run/checkpoints.py``); reading goes on meanwhile. When delivery fails, the run
stops with a non-zero exit and no STATE past the records that were not delivered.
"""

from __future__ import annotations

import dataclasses
import decimal
import gc
import json
import re
import sys
import threading
import time
import traceback
import typing as t
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import click
from singer_sdk import Target
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import PluginCapabilities
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_miso.catalog.deletes import CatalogError
from target_miso.catalog.sync import CATALOG_SETTINGS, Catalogs, CatalogSink
from target_miso.run.checkpoints import Checkpoint, CheckpointQueue
from target_miso.miso.client import MisoAPIError, MisoClient
from target_miso.run.delivery import Delivery
from target_miso.run.graceful_stop import GracefulStop
from target_miso.mappings import MappingConfigError, build_mapping, check_mappings
from target_miso.reader import (
    FIX_THE_TAP,
    BadInputLine,
    OrjsonSingerReader,
    RecordBeforeSchema,
    line_text,
    stream_of,
)
from target_miso.run.rejects import (
    RejectsFile,
    RejectsWriteError,
    TooManyRejectsError,
    check_rejects_path,
)
from target_miso.miso.schema import InteractionValidator
from target_miso.sinks import InteractionsSink

if t.TYPE_CHECKING:
    from types import FrameType

    from target_miso.mappings import Mapping

#: Path segments that show api_url is an endpoint rather than the API root.
_API_PATHS = frozenset({"v1", "interactions", "products", "users"})
#: What an API key may hold: visible ASCII (an HTTP header value), no spaces.
_KEY_TEXT = re.compile(r"[\x21-\x7e]+")

#: Failures that end the run with a clear message instead of a traceback.
RUN_ERRORS = (
    MisoAPIError,
    TooManyRejectsError,
    RejectsWriteError,
    MappingConfigError,
    CatalogError,
)


@dataclasses.dataclass
class Tally:
    """Counters for progress lines and the run summary (main thread only)."""

    records_in: int = 0
    interactions: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)


def _tune_garbage_collector() -> None:
    # Records are acyclic dicts, freed by reference counting the moment their batch is sent;
    # the cycle collector only re-scanned the live heap (every module, every batch held).
    # Freezing the start-up heap and scanning less often cut the CPU per record by a fifth
    # (docs/performance.md). Called from listen(), which the target process runs and the
    # SDK's in-process test runners do not.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _state_default(value: object) -> object:
    # The SDK reads numbers with a fraction as Decimal, and its own STATE writer then
    # crashes on them (meltano/sdk#3787). The tap wrote them as floats, so a float
    # gives back the same text.
    if isinstance(value, decimal.Decimal):
        integral = value == value.to_integral_value() and value.as_tuple().exponent >= 0
        return int(value) if integral else float(value)
    msg = f"{type(value).__name__} in STATE is not JSON serializable"
    raise TypeError(msg)


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

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_url",
            th.StringType(nullable=False),
            default="https://api.askmiso.com",
            title="API URL",
            description="Root of Miso's API, without `/v1`. Point it at `target-miso-sandbox` "
            "to try a pipeline without a Miso account.",
        ),
        th.Property(
            "api_key",
            th.StringType(nullable=False),
            required=True,
            secret=True,
            title="API key",
            description="The **secret** API key of the Miso environment. Sent only in the "
            "`X-API-KEY` header; never logged. Spaces or a newline around it are removed.",
        ),
        th.Property(
            "dry_run",
            th.BooleanType(nullable=False),
            default=False,
            title="Dry run",
            description="Ask Miso to validate every request without storing anything "
            "(`dry_run=1`). STATE is still written.",
        ),
        th.Property(
            "batch_size_rows",
            th.IntegerType(nullable=False),
            default=1000,
            title="Batch size (rows)",
            description="Interactions per request (Miso's own tools send 1,000).",
        ),
        th.Property(
            "max_request_bytes",
            th.IntegerType(nullable=False),
            default=1_048_576,
            title="Max request bytes",
            description="Upper bound of one request body; batches are cut at "
            "`batch_size_rows` records or this many bytes, whichever comes first.",
        ),
        th.Property(
            "max_concurrent_requests",
            th.IntegerType(nullable=False),
            default=8,
            title="Max concurrent requests",
            description="Requests on the wire at once, so that API latency does not "
            "serialize the run (`max_requests_per_second` still bounds the rate).",
        ),
        th.Property(
            "max_requests_per_second",
            th.NumberType(nullable=False),
            default=10,
            title="Max requests per second",
            description="Rate limit across all requests, retries included (Miso's SDK uses "
            "10). 0 disables it.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(nullable=False),
            default=60,
            title="Request timeout",
            description="Seconds to wait for a connection and for an answer.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(nullable=False),
            default=8,
            title="Max retries",
            description="Retries of one request after a 429, a 5xx, a timeout or a dropped "
            "connection, with exponential backoff and jitter; `Retry-After` is honored. "
            "When they run out the run fails without writing STATE.",
        ),
        th.Property(
            "retry_initial_delay",
            th.NumberType(nullable=False),
            default=0.5,
            title="Retry initial delay",
            description="Seconds before the first retry; doubles on each retry.",
        ),
        th.Property(
            "retry_max_delay",
            th.NumberType(nullable=False),
            default=60,
            title="Retry max delay",
            description="Upper bound in seconds of one backoff delay (a longer `Retry-After` "
            "from Miso wins).",
        ),
        th.Property(
            "rejects_path",
            th.StringType(nullable=False),
            default="miso-rejects.jsonl",
            title="Rejects file",
            description="JSON Lines file where records that cannot be delivered are set "
            "aside with their stream, source record, mapped interaction and every reason. "
            "Created on the first reject, readable by its owner only (mode 0600); appended to "
            "across runs. Checked at start-up: a path that cannot be written stops the run.",
        ),
        th.Property(
            "max_rejects",
            th.IntegerType(nullable=True),
            default=10_000,
            title="Max rejects",
            description="The run fails once more than this many records were set aside in "
            "one run (null: no limit).",
        ),
        th.Property(
            "max_future_timestamp_seconds",
            th.NumberType(nullable=True),
            default=86_400,
            title="Max future timestamp (seconds)",
            description="An interaction whose `timestamp` is more than this many seconds "
            "ahead of the clock (a wrong time zone or unit upstream) is set aside at "
            "validation instead of being sent (null: no limit).",
        ),
        th.Property(
            "state_checkpoint_seconds",
            th.NumberType(nullable=False),
            default=60,
            title="Checkpoint interval (seconds)",
            description="Deliver everything read so far and write the latest STATE at least "
            "this often, so a crash replays a bounded window.",
        ),
        th.Property(
            "state_checkpoint_records",
            th.IntegerType(nullable=False),
            default=10_000,
            title="Checkpoint interval (records)",
            description="Also checkpoint after this many records. Mappings hold some "
            "interactions until the next checkpoint (Snowplow page views waiting for their "
            "pings), so this bounds memory and the replay window; larger values cut fewer "
            "ping sequences at checkpoint boundaries.",
        ),
        th.Property(
            "stop_grace_seconds",
            th.NumberType(nullable=False),
            default=25,
            title="Stop grace period",
            description="After SIGTERM or SIGINT the target stops reading and delivers what "
            "it read, then writes the STATE that covers it and exits 128+signal. If that takes "
            "longer than this many seconds (an outage), or a second signal arrives, it exits "
            "at once without further STATE. The default fits Kubernetes' 30 s grace period.",
        ),
        th.Property(
            "progress_log_seconds",
            th.NumberType(nullable=False),
            default=30,
            title="Progress log interval",
            description="Seconds between progress lines on long runs (0: none).",
        ),
        th.Property(
            "mappings",
            th.ObjectType(additional_properties=True),
            default={},
            title="Mappings",
            description="How each stream becomes interactions: stream name (or glob) -> "
            "`{preset: auto|passthrough|snowplow|ga4|segment|custom, ...options}`. "
            "Streams without an entry use `auto`. See docs/mappings.md. An entry with "
            "`kind: products` or `kind: users` syncs the stream to Miso's catalog instead "
            "(docs/catalog.md).",
        ),
        *CATALOG_SETTINGS,
    ).to_dict()

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
            problem = _config_file_problem(path)
            if problem:
                cls.logger.error("--config %s: %s", path, problem)
                ctx.exit(1)
        return super().cb_config(ctx, param, value)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        # Meltano 4.4 crashes on `kind: decimal` settings given by environment variables
        # (it cannot JSON-encode the Decimal it makes), so meltano.yml declares the
        # fractional settings as strings: read numeric text as a number here.
        for name, schema in self.config_jsonschema["properties"].items():
            value = self._config.get(name)
            if isinstance(value, str) and "number" in str(schema.get("type")):
                try:
                    self._config[name] = float(value)
                except ValueError:
                    pass  # the validator names the setting
        # The key is a secret: a key of the wrong type is reported without its value (the
        # SDK's jsonschema message would print it), and spaces or a newline around it
        # (pasted from a file) are removed here rather than failing at the first request.
        key = self._config.get("api_key")
        hidden = "api_key" in self._config and not isinstance(key, str)
        if hidden:
            self._config["api_key"] = ""  # the value stays out of every message
        elif isinstance(key, str) and key != key.strip():
            self._config["api_key"] = key.strip()
            self.logger.warning(
                "api_key: removed %d whitespace characters around the key",
                len(key) - len(key.strip()),
            )
        errors = super()._validate_config(raise_errors=raise_errors and not hidden)
        if hidden:
            errors = ["api_key: must be a string (value not shown)", *errors]
            if raise_errors:
                raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Check the settings and prepare delivery; fails before any record is read.

        Args:
            *args: Passed to the SDK's Target.
            **kwargs: Passed to the SDK's Target.
        """
        super().__init__(*args, **kwargs)
        config = self.config
        self._check_settings(config)
        try:
            check_mappings(config.get("mappings") or {})
        except MappingConfigError as error:
            raise ConfigValidationError(str(error), errors=[str(error)]) from None
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
        self.delivery = Delivery(self.client, self.rejects, int(config["max_concurrent_requests"]))
        self.tally = Tally()
        self.catalogs = Catalogs(self)
        self._mappings: dict[str, Mapping] = {}
        self._checkpoint_records = int(config["state_checkpoint_records"])
        self._checkpoint_seconds = float(config["state_checkpoint_seconds"])
        self._progress_seconds = float(config["progress_log_seconds"])
        self._records_since_checkpoint = 0
        self._checkpoints = CheckpointQueue(self._release_checkpoint)
        # Back-pressure: records read past the last STATE written never exceed a checkpoint
        # interval plus the batches delivery holds, so a kill -9 resends at most that many
        # records even while one request is stuck in its retries.
        self.replay_bound = self._checkpoint_records + int(config["batch_size_rows"]) * (
            Delivery.batches_held(int(config["max_concurrent_requests"]))
        )
        #: ``tally.records_in`` when the last STATE was released.
        self._records_at_last_state = 0
        #: Held while a STATE line is written, so that a forced stop never cuts one in half.
        self._output_lock = threading.Lock()
        self._stop = GracefulStop(
            float(config["stop_grace_seconds"]), self._output_lock, self._interrupt_read,
        )
        #: The STATE the SDK hands over while a checkpoint drains the sinks.
        self._state_at_checkpoint: dict | None = None
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_seconds
        self._next_progress_at = time.monotonic() + (self._progress_seconds or float("inf"))
        if isinstance(self.message_reader, OrjsonSingerReader):
            self.message_reader.set_aside = self.set_aside_line

    @staticmethod
    def _check_settings(config: t.Mapping[str, t.Any]) -> None:
        problems = []
        url = urlsplit(str(config.get("api_url", "")))
        if url.scheme not in {"http", "https"} or not url.netloc:
            problems.append("api_url: must be an http(s) URL such as https://api.askmiso.com")
        if url.query or "api_key" in str(config.get("api_url", "")):
            problems.append(
                "api_url: must not carry a query string; the API key goes in api_key only",
            )
        if url.path.strip("/") and _API_PATHS & set(url.path.lower().split("/")):
            problems.append(
                f"api_url: give the root, without {url.path.rstrip('/')} "
                f"(e.g. {url.scheme}://{url.netloc})",
            )
        key = config.get("api_key")
        if not str(key or "").strip():
            problems.append("api_key: is empty")
        elif isinstance(key, str) and not _KEY_TEXT.fullmatch(key):
            problems.append(
                "api_key: contains spaces, control or non-ASCII characters (value not shown); "
                "copy the key exactly as Miso's dashboard shows it",
            )
        rejects_problem = check_rejects_path(config["rejects_path"])
        if rejects_problem:
            problems.append(rejects_problem)
        future = config.get("max_future_timestamp_seconds")
        if future is not None and future < 0:
            problems.append("max_future_timestamp_seconds: must not be negative (null: no limit)")
        minimums = {
            "max_request_bytes": 1024,
            "max_concurrent_requests": 1,
            "request_timeout": 0.001,
            "state_checkpoint_records": 1,
            "state_checkpoint_seconds": 0.001,
            "stop_grace_seconds": 0,
        }
        problems += [
            f"{name}: must be at least {low}"
            for name, low in minimums.items()
            if config[name] < low
        ]
        problems += [
            f"{name}: must not be negative"
            for name in ("max_retries", "max_requests_per_second", "retry_initial_delay")
            if config[name] < 0
        ]
        if config.get("batch_size_rows") is not None and config["batch_size_rows"] < 1:
            problems.append("batch_size_rows: must be at least 1")
        if problems:
            raise ConfigValidationError("Invalid target-miso settings", errors=problems)

    # --- Collaborators used by the sinks ------------------------------------------------

    def get_sink_class(self, stream_name: str) -> type[InteractionsSink]:
        """Catalog streams (``kind: products|users``) get the catalog sink.

        Args:
            stream_name: The stream.

        Returns:
            The sink class.
        """
        if self.catalogs.is_catalog(stream_name):
            return CatalogSink
        return super().get_sink_class(stream_name)

    def _process_activate_version_message(self, message_dict: dict) -> None:
        # The SDK's handler warns about _sdc_ metadata columns, which catalog streams do
        # not use; they only need to know that the stream is read in full.
        stream = message_dict.get("stream")
        if (
            isinstance(stream, str)
            and self.catalogs.is_catalog(stream)
            and self.config.get("process_activate_version_messages", True)
        ):
            self.get_sink(stream).activate_version(message_dict.get("version"))
            return
        super()._process_activate_version_message(message_dict)

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
        mapping = self._mappings.get(stream_name)
        if mapping is None:
            mapping = build_mapping(stream_name, self.config.get("mappings") or {}, schema)
            self.logger.info(
                "Stream '%s' is mapped with the '%s' preset", stream_name, mapping.preset,
            )
            self._mappings[stream_name] = mapping
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
        self.rejects.add(
            stream=stream, reasons=reasons, source=source, interaction=interaction, stage=stage,
        )

    def set_aside_line(self, line_number: int, line: str | bytes, reason: str) -> None:
        """Write a RECORD line that cannot be decoded to the rejects file, as text.

        Args:
            line_number: Its number in the input.
            line: The raw line (bytes that are not UTF-8 are kept as backslash escapes).
            reason: Why it cannot be read, naming the line number.
        """
        self.tally.records_in += 1
        self.rejects.add(
            stream=stream_of(line),  # type: ignore[arg-type] - None when it cannot be found
            reasons=[reason],
            source=line_text(line),
            interaction=None,
            stage="input",
        )
        self.logger.debug("Set aside input line %d", line_number)

    def _bad_record_line(self, problem: str) -> BadInputLine:
        return BadInputLine(getattr(self.message_reader, "line_number", 0), problem)

    def _record_before_schema(self, stream_name: str) -> RecordBeforeSchema:
        number = getattr(self.message_reader, "line_number", 0)
        return RecordBeforeSchema(number, *_no_schema(stream_name))

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
            sink._singer_validate_message(record)  # noqa: SLF001 - key properties present
        sink.tally_record_read()
        sink.process_record(record, {"line": getattr(self.message_reader, "current_line", None)})
        sink.record_counter_metric.increment()
        if sink.is_full:
            self.drain_one(sink)
            # Waiting checkpoints are looked at here (once per batch) and at each checkpoint.
            if self._checkpoints:
                self._checkpoints.release_ready()
        self._handle_max_record_age()

    @cached_property
    def _uses_stream_maps(self) -> bool:
        return bool(self.config.get("stream_maps") or self.config.get("flattening_enabled"))

    # --- Checkpoints and STATE ----------------------------------------------------------

    def _handle_max_record_age(self) -> None:
        # Called by the SDK after every RECORD: replaces its fixed 5-minute drain with
        # checkpoints every N records or T seconds, and logs progress.
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
            self._log_progress()
            self._next_progress_at = now + self._progress_seconds

    def checkpoint(self, *, is_endofpipe: bool = False) -> None:
        """Hand everything read so far to delivery; its STATE follows once it is delivered.

        At the end of input (and whenever catalog streams run: their task waits and hash
        saves are per checkpoint) this waits for every request and writes the STATE now.
        Otherwise the checkpoint is queued with the requests on the wire, and reading goes on.

        Args:
            is_endofpipe: True at the end of input (sinks are also cleaned up).
        """
        for stream_name, mapping in self._mappings.items():
            held = mapping.flush()
            if held:
                self._sinks_active[stream_name].add_held(held)  # type: ignore[attr-defined]
        self._state_at_checkpoint = None
        self.drain_all(is_endofpipe=is_endofpipe)  # hands over STATE through the method below
        if is_endofpipe or self.catalogs.streams:
            self._settle()
            self._checkpoints.discard()  # the STATE just written covers them
            self._records_at_last_state = self.tally.records_in
            if self._state_at_checkpoint is not None:
                self._write_state(self._state_at_checkpoint)
        else:
            self._checkpoints.add(
                Checkpoint(
                    state=self._state_at_checkpoint,
                    requests=self.delivery.in_flight(),
                    tokens=tuple((m, m.seal()) for m in self._mappings.values()),
                    records_read=self.tally.records_in,
                ),
            )
        self._records_since_checkpoint = 0
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_seconds

    def _settle(self) -> None:
        # The full wait: every request answered, then everything read so far is committed.
        self.delivery.settle()
        self.rejects.sync()
        self.catalogs.commit()
        for mapping in self._mappings.values():
            mapping.commit()

    def _release_checkpoint(self, checkpoint: Checkpoint) -> None:
        # Its requests were delivered: make its rejects durable, commit, write its STATE.
        self.rejects.sync()
        for mapping, token in checkpoint.tokens:
            mapping.commit(token)
        self._records_at_last_state = checkpoint.records_read
        if checkpoint.state is not None:
            self._write_state(checkpoint.state)

    def _wait_for_oldest_checkpoint(self) -> None:
        # Reading has run too far ahead of the last STATE (a request stuck in retries):
        # wait for the oldest checkpoint's requests before reading on.
        if not self._checkpoints:
            return
        self._checkpoints.wait_for_oldest()
        self.delivery.raise_if_failed()

    def _write_state_message(self, state: dict) -> None:
        """Take the latest STATE at a checkpoint; ``checkpoint`` decides when it is written.

        Args:
            state: The latest STATE received from the tap (the SDK's own copy).
        """
        self._state_at_checkpoint = state

    def _write_state(self, state: dict) -> None:
        line = json.dumps(state, default=_state_default) + "\n"
        with self._output_lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def process_endofpipe(self) -> None:
        """Deliver the rest, write the final STATE and the run summary.

        Also the end of a run stopped by SIGTERM/SIGINT: the reader left the input early,
        and what it read is delivered the same way.
        """
        try:
            if self._stopped_early:
                self.catalogs.terminating = True  # a read cut short must not delete anything
            self.catalogs.finish()  # deletes after full-table reads, before the final STATE
            self.checkpoint(is_endofpipe=True)
        finally:
            self._log_summary()
            self._close()

    def listen(self, file_input: t.IO[str] | None = None) -> None:
        """Run the target; a delivery failure ends it with a clear message and exit code 1.

        Args:
            file_input: Where to read Singer messages (stdin by default).
        """
        _tune_garbage_collector()
        self._stop.install()
        try:
            super().listen(file_input)
        except InvalidInputLine as error:
            self._stop_at_bad_line(error)
        except RUN_ERRORS as error:
            self.logger.error("target-miso stopped: %s", self.client.scrub(str(error)))  # noqa: TRY400
            self.client.stop_retrying()  # the run fails anyway: do not linger in backoffs
            self._release_delivered_checkpoints()
            self.logger.error(
                "No STATE was written past the records that were not delivered; the next "
                "run starts from the last STATE written and resends them.",
            )
            sys.exit(1)
        except Exception as error:  # a bug: reported with the key masked, then exit 1
            self.client.stop_retrying()
            trace = "".join(traceback.format_exception(error))
            self.logger.error(  # noqa: TRY400 - the traceback is logged scrubbed, below
                "target-miso failed unexpectedly (%s); no STATE was written past the records "
                "that were not delivered. Please report this with the trace:\n%s",
                type(error).__name__,
                self.client.scrub(trace),
            )
            sys.exit(1)
        finally:
            self._stop.uninstall()
        if self._stopped_early:
            self.logger.warning(
                "Stopped by signal %d before the end of the input: what was read was "
                "delivered and its STATE written; the next run goes on from there.",
                self._stop.signum,
            )
            sys.exit(self._stop.exit_code)

    def _stop_at_bad_line(self, error: InvalidInputLine) -> None:
        # One ERROR line (which line, what is wrong, what to do; never its contents), then
        # the end-of-input path for what was read before it: delivered, its STATE written.
        if isinstance(error, BadInputLine):
            message = str(error)
        else:  # the SDK's own checks (SCHEMA or STATE lines) print the whole message: not that
            number = getattr(self.message_reader, "line_number", 0)
            problem = str(error).partition(":")[0].rstrip(".")
            message = f"Input line {number}: {problem[:1].lower()}{problem[1:]}. {FIX_THE_TAP}."
        self.logger.error(  # noqa: TRY400 - no traceback: the message says it all
            "target-miso stopped: %s Delivering what was read before that line; no STATE past "
            "it is written (exit code 1).",
            message,
        )
        self.catalogs.terminating = True  # a read cut short must not delete anything
        try:
            self.process_endofpipe()
        except RUN_ERRORS as delivery_error:
            self.logger.error("target-miso stopped: %s", self.client.scrub(str(delivery_error)))
        sys.exit(1)

    def _release_delivered_checkpoints(self) -> None:
        # The run failed: checkpoints whose own requests were all delivered still get their
        # STATE, so the next run replays as little as possible. Nothing after the first
        # checkpoint with a failed request is released.
        if self._checkpoints:
            self.delivery.wait_idle()
            self._checkpoints.release_ready()

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        # SIGTERM/SIGINT (run/graceful_stop.py): the handler only records the request; the read
        # loop then ends and the run is finished the ordinary way, then exits 128+signal.
        stop = getattr(self, "_stop", None)
        if stop is None:  # still starting up: nothing was read, nothing to deliver
            raise SystemExit(128 + signum)
        stop.handle(signum, frame)

    def _interrupt_read(self) -> None:
        reader = getattr(self, "message_reader", None)
        if isinstance(reader, OrjsonSingerReader):
            reader.request_stop()

    @property
    def _stopped_early(self) -> bool:
        reader = getattr(self, "message_reader", None)
        return bool(getattr(reader, "stopped_early", False))

    def _close(self) -> None:
        self.delivery.close()
        self.client.close()
        self.rejects.close()
        for mapping in self._mappings.values():
            mapping.close()
        self.catalogs.close()

    # --- Reporting -----------------------------------------------------------------------

    def _log_progress(self) -> None:
        elapsed = time.monotonic() - self.tally.started
        self.logger.info(
            "Progress: %d records read, %d interactions delivered, %d set aside, %.0f records/s",
            self.tally.records_in,
            sum(self.delivery.accepted.values()),
            self.rejects.count,
            self.tally.records_in / elapsed if elapsed else 0.0,
        )

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self.tally.started
        stats = self.client.stats
        skipped: dict[str, int] = {}
        for mapping in self._mappings.values():
            for reason, count in mapping.skipped.items():
                skipped[reason] = skipped.get(reason, 0) + count
        lines = [
            f"records in: {self.tally.records_in}",
            "interactions sent and accepted: "
            f"{sum(n for s, n in self.delivery.accepted.items() if s not in self.catalogs.streams)}"
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
        if skipped:
            lines.insert(3, "skipped by design:" + _count_lines(skipped))
        for stream, count in sorted(self.delivery.accepted.items()):
            if stream not in self.catalogs.streams:
                lines.insert(2, f"  stream {stream}: {count} accepted")
        lines[2:2] = self.catalogs.summary_lines()
        self.logger.info("Run summary:\n  %s", "\n  ".join(lines))


def _config_file_problem(path: str) -> str | None:
    """Say what is wrong with a ``--config`` file, in a few words (None: a JSON object)."""
    if path == "ENV":
        return None
    problem = None
    try:
        text = Path(path).read_text(encoding="utf-8")
        settings = json.loads(text)
    except FileNotFoundError:
        problem = "no such file"
    except json.JSONDecodeError as error:
        problem = (
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            + ("" if text.lstrip()[:1] in "{[" else " (YAML is not read here)")
            if text.strip()
            else "the file is empty"
        ) + "; write the settings as a JSON object"
    except (OSError, UnicodeDecodeError) as error:
        problem = f"cannot be read ({getattr(error, 'strerror', None) or error})"
    else:
        if not isinstance(settings, dict):
            problem = f"holds a JSON {type(settings).__name__}, not an object of settings"
    return problem


_SHOWN = 100  # characters of a stream name shown in a message


def _no_schema(stream_name: str) -> tuple[str, str]:
    shown = stream_name if len(stream_name) <= _SHOWN else stream_name[:_SHOWN] + "..."
    return (
        f"is a RECORD of stream {shown!r}, which no SCHEMA message described before it",
        "A tap sends each stream's SCHEMA before its RECORDs: check the tap (and any "
        "stream_maps alias), then run again; the next run starts from the last STATE written",
    )


def _count_lines(counter: t.Mapping[str, int]) -> str:
    # One reason per line, largest first: the summary is read by people at 3 a.m.
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return "".join(f"\n    {count:>9,}  {reason}" for reason, count in ranked)


def _counts(counter: t.Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "none"
