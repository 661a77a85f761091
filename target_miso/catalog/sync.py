"""Catalog streams at run time: the sink, change detection, task waits and deletes.

A catalog stream's record goes: mapping -> validation (invalid ones to the rejects file,
unless an earlier run wrote the same row there: ``rejected.py``) -> content hash
(unchanged since Miso last accepted it: not sent) -> batch of
``catalog_batch_size_rows`` records and at most ``max_request_bytes`` -> the target's
``Delivery`` (same retries, 422 recovery and STATE barrier as interactions) ->
``POST /v1/products`` or ``/v1/users``. At each checkpoint, after delivery settled, the
hashes of accepted records are committed (with ``wait_for_tasks``, once their task is done).
On a full-table sync (ACTIVATE_VERSION) ids missing from the source may be deleted
(``deletes.py``); every row read counts as present, whether it was sent, unchanged, set
aside or skipped by the filter.
"""

from __future__ import annotations

import collections
import sqlite3
import threading
import time
import typing as t

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from target_miso.catalog.deletes import CatalogError, delete_missing
from target_miso.catalog.hashes import CatalogHashes, environment_key
from target_miso.catalog.mapping import CatalogMapping, CatalogOptions, stream_kind
from target_miso.catalog.rejected import RejectedRows
from target_miso.catalog.schema import CatalogValidator
from target_miso.mappings import options_for

if t.TYPE_CHECKING:
    import logging

    from target_miso.miso.client import MisoClient

DEFAULT_CATALOG_STORE = ".target-miso/catalog-hashes.sqlite"
#: Ids a dry run lists in the run summary (the log has them all).
_SUMMARY_IDS = 20
_TASK_DONE = frozenset(
    {"succeeded", "success", "successful", "done", "completed", "complete", "finished"},
)
_TASK_FAILED = frozenset({"failed", "failure", "error", "errored", "cancelled", "canceled"})

#: The target's settings for catalog streams (spliced into TargetMiso.config_jsonschema).
CATALOG_SETTINGS = [
    th.Property(
        "catalog_batch_size_rows",
        th.IntegerType(nullable=False),
        default=100,
        title="Catalog batch size (rows)",
        description="Product or user records per request (Miso recommends about 100; its "
        "Node SDK sends 200). `max_request_bytes` also applies.",
    ),
    th.Property(
        "catalog_store",
        th.StringType(nullable=True),
        default=DEFAULT_CATALOG_STORE,
        title="Catalog hash store",
        description="SQLite file with a content hash per product and user Miso accepted, so "
        "later runs send only changed records, and the rows set aside, so an unchanged one is "
        "not written to the rejects file again (relative to the working directory; keep it on "
        "a persistent volume). null: every record is sent on every run. See docs/catalog.md.",
    ),
    th.Property(
        "wait_for_tasks",
        th.BooleanType(nullable=False),
        default=False,
        title="Wait for catalog tasks",
        description="At each checkpoint, poll the task of every product/user upload and "
        "delete (`/_status/{task_id}`) until it is done; a failed task stops the run "
        "without STATE. An answer without a task id is logged as a warning.",
    ),
    th.Property(
        "task_wait_seconds",
        th.NumberType(nullable=False),
        default=300,
        title="Task wait limit",
        description="How long `wait_for_tasks` waits for the tasks of one checkpoint; tasks "
        "still running then are logged and their records are sent again next run.",
    ),
]


def task_state(status: dict[str, t.Any]) -> str:
    """Reduce an (undocumented) task status answer to done, failed or running.

    Args:
        status: The ``data`` of ``GET /v1/{kind}/_status/{task_id}``.

    Returns:
        ``done``, ``failed`` or ``running``.

    """
    word = str(status.get("status") or status.get("state") or "").strip().lower()
    if word in _TASK_DONE:
        return "done"
    if word in _TASK_FAILED:
        return "failed"
    return "running"


class CatalogStream:
    """One catalog stream's run: mapping, ids seen, hashes awaiting commit, counters.

    It outlives a sink replaced after a schema change. Delivery threads report accepted
    records through ``stored``; everything else runs on the main thread.
    """

    def __init__(self, catalogs: Catalogs, stream_name: str, options: CatalogOptions) -> None:
        """Prepare the stream.

        Args:
            catalogs: The run's catalog coordinator.
            stream_name: The Singer stream.
            options: Its checked options.

        """
        self.catalogs = catalogs
        self.name = stream_name
        self.options = options
        self.kind = options.kind
        self.path = f"/v1/{options.kind}"
        self.mapping = CatalogMapping(options, stream_name)
        self.validator = CatalogValidator(options.kind)
        self.counts: collections.Counter[str] = collections.Counter()
        #: Every id read in this run (sent, unchanged, set aside or filtered): deletes never
        #: touch them.
        self.seen_ids: set[str] = set()
        #: Rows of the current read whose id could not be computed: any id in Miso could be
        #: theirs, so the read deletes nothing.
        self.unnamed_rows = 0
        self.rejected_rows = RejectedRows(catalogs.hashes, stream_name)
        self._warned_no_task: set[str] = set()
        #: A start-of-table ACTIVATE_VERSION arrived: delete at the end of the read.
        self.full_table_pending = False
        self.would_delete: list[str] = []
        self._handed: dict[str, str] = {}  # id -> hash handed to delivery in this run
        self._lock = threading.Lock()
        self._accepted: dict[str, str] = {}
        self._tasks: list[tuple[str, dict[str, str]]] = []
        self._forget: set[str] = set()

    def read_row(self, record: object, mapped: dict[str, t.Any] | None = None) -> str | None:
        """Count a row's id as read, so that no delete touches it; compute it if need be.

        Args:
            record: The row as the tap sent it.
            mapped: Its mapped record, when the mapping got that far.

        Returns:
            The row's id, or None when it has none or it cannot be computed.

        """
        if mapped is not None:
            record_id = mapped.get(self.options.id_field)
        else:
            try:
                record_id = self.mapping.record_id(record)  # type: ignore[arg-type]
            except Exception:  # whatever fails, the row has no known id
                self.unnamed_rows += 1
                return None
        if not isinstance(record_id, str) or not record_id:
            return None
        self.seen_ids.add(record_id)
        return record_id

    def rejected_before(
        self, reasons: list[str], source: object, mapped: dict[str, t.Any] | None
    ) -> bool:
        """Take note of a row being set aside: count its id as read, and look up its past.

        Args:
            reasons: Why it is set aside.
            source: The row as the tap sent it.
            mapped: Its mapped record, if any.

        Returns:
            True when an earlier run wrote this row with these reasons to the rejects file:
            it is then only counted (``still rejected``), not written again.

        """
        record_id = self.read_row(source, mapped)
        if self.rejected_rows.is_repeat(record_id, source, reasons):
            self.counts["still_rejected"] += 1
            return True
        return False

    def is_unchanged(self, record_id: str, digest: str) -> bool:
        """Tell whether Miso already has this exact record (or it is on its way).

        Args:
            record_id: The record's id.
            digest: Its content hash.

        Returns:
            True when it need not be sent.

        """
        if self._handed.get(record_id) == digest:
            return True
        if record_id not in self._handed:
            if self.catalogs.hashes.get(self.kind, record_id) == digest:
                return True
        self._handed[record_id] = digest
        return False

    def stored(
        self,
        keys: list[tuple[str, str]],
        positions: list[int],
        task_id: str | None,
    ) -> None:
        """Miso stored these records of a batch (called from a delivery thread).

        Args:
            keys: (id, hash) of every record of the batch.
            positions: Which of them were stored.
            task_id: The upload's task id.

        """
        accepted = dict(keys[p] for p in positions)
        if self.catalogs.wait_for_tasks and not task_id:
            self.no_task_to_wait_for(f"POST {self.path}", len(accepted))
        with self._lock:
            self.counts["sent"] += len(accepted)
            if self.catalogs.wait_for_tasks and task_id:
                self._tasks.append((task_id, accepted))
            else:
                self._accepted.update(accepted)

    def no_task_to_wait_for(self, endpoint: str, records: int) -> None:
        """Say that ``wait_for_tasks`` cannot wait: Miso's answer carried no task id.

        Args:
            endpoint: The request, e.g. ``POST /v1/products``.
            records: How many records (or ids) the request carried.

        """
        with self._lock:
            self.counts["no_task"] += records
            first = endpoint not in self._warned_no_task
            self._warned_no_task.add(endpoint)
        if first:
            self.catalogs.logger.warning(
                "Stream '%s': %s answered without data.task_id, so wait_for_tasks cannot "
                "check that Miso processed its %d record(s); they count as done on the HTTP "
                "answer alone (later answers like it are counted in the run summary)",
                self.name,
                endpoint,
                records,
            )

    def commit(self) -> None:
        """Every batch handed out settled: wait for tasks if asked, then save the hashes.

        Raises:
            CatalogError: If a task failed.

        """
        with self._lock:
            tasks, self._tasks = self._tasks, []
        if tasks:
            finished = self.catalogs.wait_for(self, [task_id for task_id, _ in tasks])
            for task_id, accepted in tasks:
                if finished.get(task_id) == "done":
                    self._accepted.update(accepted)
        with self._lock:
            accepted, self._accepted = self._accepted, {}
            forget, self._forget = self._forget, set()
        if not self.catalogs.dry_run:
            self.catalogs.hashes.save(self.kind, accepted, forget)
        self.rejected_rows.commit(save=not self.catalogs.dry_run)

    def run_deletes(self) -> None:
        """Run the deletes once the full-table read is over: what Miso has and the read did not."""
        self.full_table_pending = False
        self.rejected_rows.full_read_done()
        unnamed, self.unnamed_rows = self.unnamed_rows, 0
        if not self.options.delete_missing:
            self.catalogs.logger.info(
                "Stream '%s': full-table sync ended; delete_missing is off, nothing deleted",
                self.name,
            )
            self.seen_ids = set()
            return
        if unnamed:
            self.catalogs.logger.warning(
                "Stream '%s': %d row(s) of the full-table sync were set aside before their "
                "%s could be computed (see the rejects file); any record in Miso could be "
                "one of them, so nothing is deleted this run",
                self.name,
                unnamed,
                self.options.id_field,
            )
            self.counts["deletes_held"] += unnamed
            self.seen_ids = set()
            return
        run = self.catalogs.run
        outcome = delete_missing(
            run.client,
            self.name,
            self.options,
            self.seen_ids,
            dry_run=self.options.delete_dry_run or bool(run.config["dry_run"]),
        )
        if outcome.dry_run:
            self.would_delete += outcome.missing
        else:
            self.counts["deleted"] += outcome.deleted
            with self._lock:
                self._forget |= set(outcome.missing)
            if outcome.without_task_id and self.catalogs.wait_for_tasks:
                self.no_task_to_wait_for(f"POST {self.path}/_delete", outcome.without_task_id)
            if outcome.task_ids and self.catalogs.wait_for_tasks:
                self.catalogs.wait_for(self, outcome.task_ids)
        with self._lock:
            # Ids Miso lacks although their hash says it has them (deleted by someone else):
            # forget the hash so the next run sends them again.
            self._forget |= outcome.absent_from_miso - set(self._handed)
        self.seen_ids = set()
        self.commit()

    def summary(self) -> str:
        """One line for the run summary."""
        parts = [
            f"{self.counts['read']} read",
            f"{self.counts['sent']} sent and accepted",
            f"{self.counts['unchanged']} unchanged (not sent)",
        ]
        if self.counts["filtered"]:
            parts.append(f"{self.counts['filtered']} filtered out")
        if self.counts["still_rejected"]:
            parts.append(
                f"{self.counts['still_rejected']} still rejected (unchanged since an earlier "
                "run wrote them to the rejects file; not written again)"
            )
        if self.counts["deletes_held"]:
            parts.append(
                f"no deletes: {self.counts['deletes_held']} row(s) without a computable "
                f"{self.options.id_field}"
            )
        if self.counts["no_task"]:
            parts.append(
                f"{self.counts['no_task']} record(s) or id(s) answered without a task id "
                "(not waited for)"
            )
        if self.counts["deleted"]:
            parts.append(f"{self.counts['deleted']} deleted")
        if self.would_delete:
            shown = ", ".join(self.would_delete[:_SUMMARY_IDS])
            hidden = len(self.would_delete) - _SUMMARY_IDS
            more = f" and {hidden} more" if hidden > 0 else ""
            parts.append(f"dry run, would delete {len(self.would_delete)}: {shown}{more}")
        return f"  catalog stream {self.name} ({self.kind}): " + ", ".join(parts)


class CatalogRun(t.Protocol):
    """What the catalog code needs of the run (``run/run.py``), which owns it."""

    config: t.Mapping[str, t.Any]
    logger: logging.Logger
    client: MisoClient

    def checkpoint(self) -> None:
        """Deliver and commit everything read so far."""


class Catalogs:
    """The run's catalog streams, their hash store, task waits and end-of-input deletes."""

    def __init__(self, run: CatalogRun) -> None:
        """Read the catalog settings.

        Args:
            run: The run (settings, logger, API client, checkpoints).

        """
        config = run.config
        self.run = run
        self.logger = run.logger
        self.dry_run = bool(config["dry_run"])
        self.wait_for_tasks = bool(config.get("wait_for_tasks", False))
        self.task_wait_seconds = float(config.get("task_wait_seconds", 300))
        self.batch_size_rows = int(config.get("catalog_batch_size_rows", 100))
        problems = []
        if self.batch_size_rows < 1:
            problems.append("catalog_batch_size_rows: must be at least 1")
        if self.task_wait_seconds < 0:
            problems.append("task_wait_seconds: must not be negative")
        if problems:
            raise ConfigValidationError("Invalid target-miso settings", errors=problems)
        self.streams: dict[str, CatalogStream] = {}
        self.terminating = False
        self._store_path = config.get("catalog_store", DEFAULT_CATALOG_STORE)
        self._environment = environment_key(config["api_url"], config["api_key"])
        self._hashes: CatalogHashes | None = None
        if self._store_path is not None and self._configured(config.get("mappings")):
            self._open_store()

    @staticmethod
    def _configured(mappings: object) -> bool:
        # Any catalog stream in the settings (check_mappings has checked each kind).
        return isinstance(mappings, dict) and any(
            isinstance(options, dict) and options.get("kind", "interactions") != "interactions"
            for options in mappings.values()
        )

    def _open_store(self) -> None:
        # Opened at start-up, as the Snowplow dedupe_store is: a corrupt or unwritable file
        # stops the run before any record is read, naming the setting.
        try:
            self._hashes = CatalogHashes(self._store_path, self._environment)
            self._hashes.check()
        except (OSError, sqlite3.Error) as error:
            if self._hashes is not None:
                self._hashes.close()
                self._hashes = None
            problem = f"catalog_store: cannot open {str(self._store_path)!r}: {error}"
            raise ConfigValidationError("Invalid target-miso settings", errors=[problem]) from None

    @property
    def hashes(self) -> CatalogHashes:
        """The hash store, opened when the first catalog stream needs it."""
        if self._hashes is None:
            self._hashes = CatalogHashes(self._store_path, self._environment)
        return self._hashes

    def is_catalog(self, stream_name: str) -> bool:
        """Tell whether the ``mappings`` entry of a stream makes it a catalog stream.

        Args:
            stream_name: The Singer stream.

        Returns:
            True for ``kind: products`` or ``kind: users``.

        """
        path, options = options_for(stream_name, self.run.config.get("mappings") or {})
        return stream_kind(options, path) != "interactions"

    def stream(self, stream_name: str) -> CatalogStream:
        """Return the run state of a catalog stream, created on first use.

        Args:
            stream_name: The Singer stream.

        Returns:
            Its CatalogStream.

        """
        catalog = self.streams.get(stream_name)
        if catalog is None:
            path, options = options_for(stream_name, self.run.config.get("mappings") or {})
            catalog = CatalogStream(self, stream_name, CatalogOptions(options, path))
            self.streams[stream_name] = catalog
            self.logger.info("Stream '%s' is synced to Miso's %s", stream_name, catalog.kind)
        return catalog

    def activate_version(self, stream_name: str) -> None:
        """ACTIVATE_VERSION: the stream is (or was just) read in full.

        Taps send it after the records (singer-python taps) or before them (singer-sdk
        taps, and singer-python taps on a first sync). After records, the read is over and
        deletes run now; before them, they run once the input ends.

        Args:
            stream_name: The Singer stream.

        """
        catalog = self.stream(stream_name)
        if catalog.seen_ids:
            self.run.checkpoint()  # deliver and commit everything read so far first
            catalog.run_deletes()
        else:
            catalog.full_table_pending = True

    def rejected_before(
        self,
        stream: str,
        reasons: list[str],
        source: object,
        mapped: object,
    ) -> bool:
        """Take note of a row being set aside (``CatalogStream.rejected_before``).

        Args:
            stream: The Singer stream.
            reasons: Why it is set aside.
            source: The row.
            mapped: The mapped record, if any.

        Returns:
            True when it need not be written to the rejects file again.

        """
        catalog = self.streams.get(stream)
        if catalog is None:
            return False
        record = mapped if isinstance(mapped, dict) else None
        return catalog.rejected_before(reasons, source, record)

    def finish(self) -> None:
        """Run, at the end of input, the deletes of full-table reads announced at their start.

        Rows still rejected (unchanged since an earlier run) are reported here, once per
        stream: they are not written to the rejects file again, and are still not delivered.
        """
        for catalog in self.streams.values():
            if catalog.counts["still_rejected"]:
                self.logger.warning(
                    "Stream '%s': %d row(s) are still set aside, unchanged since an earlier "
                    "run wrote them and their reasons to the rejects file %s (not written "
                    "again; they are not delivered until the rows are fixed)",
                    catalog.name,
                    catalog.counts["still_rejected"],
                    self.run.config["rejects_path"],
                )
        pending = [c for c in self.streams.values() if c.full_table_pending]
        if not pending:
            return
        if self.terminating:
            self.logger.warning(
                "Stopped by a signal: the full-table read of %s may be incomplete, so nothing "
                "is deleted",
                ", ".join(c.name for c in pending),
            )
            return
        self.run.checkpoint()
        for catalog in pending:
            catalog.run_deletes()

    def commit(self) -> None:
        """Save the hashes of every accepted record (called after delivery settled)."""
        for catalog in self.streams.values():
            catalog.commit()

    def wait_for(self, catalog: CatalogStream, task_ids: list[str]) -> dict[str, str]:
        """Poll tasks until they are done, failed, or ``task_wait_seconds`` passed.

        Args:
            catalog: The stream the tasks belong to.
            task_ids: The tasks.

        Returns:
            Task id -> ``done`` or ``running`` (still running at the deadline).

        Raises:
            CatalogError: If a task failed.

        """
        client = self.run.client
        deadline = time.monotonic() + self.task_wait_seconds
        states = dict.fromkeys(task_ids, "running")
        delay = 0.2
        while True:
            for task_id in [k for k, v in states.items() if v == "running"]:
                status = client.task_status(catalog.kind, task_id)
                states[task_id] = task_state(status)
                if states[task_id] == "failed":
                    msg = (
                        f"stream '{catalog.name}': Miso task {task_id} on {catalog.kind} "
                        f"failed ({str(status)[:300]}); stopping without STATE so the next run "
                        "sends the records again"
                    )
                    raise CatalogError(client.scrub(msg))
            running = [k for k, v in states.items() if v == "running"]
            if not running:
                return states
            if time.monotonic() >= deadline:
                self.logger.warning(
                    "Stream '%s': %d Miso task(s) still running after %g s (e.g. %s); their "
                    "records will be sent again next run",
                    catalog.name,
                    len(running),
                    self.task_wait_seconds,
                    running[0],
                )
                return states
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 5.0)

    def summary_lines(self) -> list[str]:
        """Lines for the run summary, one per catalog stream."""
        return [catalog.summary() for catalog in self.streams.values()]

    def close(self) -> None:
        """Close the hash store."""
        if self._hashes is not None:
            self._hashes.close()
