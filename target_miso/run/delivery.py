"""Concurrent delivery of batches to Miso, and what a checkpoint's STATE waits for.

The sink hands over full batches and goes on reading; up to ``max_concurrent_requests``
batches are on the wire at once, so API latency does not serialize the run. ``in_flight()``
names the requests a checkpoint must wait for (the target writes its STATE once they are
answered, and reads on meanwhile); ``settle()`` is the full barrier: it returns only when
every batch handed over so far was accepted by Miso or its refused records were set aside,
and raises if any batch could not be delivered.
"""

from __future__ import annotations

import collections
import threading
import typing as t
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import orjson

from target_miso.miso.client import MisoResponseError

if t.TYPE_CHECKING:
    from target_miso.miso.client import MisoClient
    from target_miso.run.rejects import RejectsFile

#: How many times the refused records of one batch are removed and the rest resent.
_MAX_RECOVERY_ROUNDS = 3


@dataclass(slots=True)
class Batch:
    """Encoded interactions for one request, with the source record of each."""

    stream: str
    records: list[bytes] = field(default_factory=list)
    #: The source record of each, or the Singer RECORD line it was read from (bytes or
    #: str): kept for the rejects file, should Miso refuse it, and the line takes a third
    #: of the memory of a parsed wide row.
    sources: list[t.Any] = field(default_factory=list)
    size_bytes: int = 0
    #: The endpoint: interactions, or ``/v1/products`` and ``/v1/users`` for catalog streams.
    path: str = "/v1/interactions"
    #: Called (in a delivery thread) with the positions of the records Miso stored and the
    #: task id of the request; catalog streams record content hashes with it.
    on_stored: t.Callable[[list[int], str | None], None] | None = None

    def add(self, encoded: bytes, source: object) -> None:
        """Append one encoded interaction.

        Args:
            encoded: The interaction as compact JSON.
            source: The source record it was mapped from (for the rejects file).

        """
        self.records.append(encoded)
        self.sources.append(source)
        self.size_bytes += len(encoded) + 1

    def __len__(self) -> int:
        """Return the number of interactions."""
        return len(self.records)


def source_record(source: object) -> object:
    """Return the source record a batch kept: parsed again when it was kept as its Singer line.

    Args:
        source: An entry of ``Batch.sources``.

    Returns:
        The source record.

    """
    if isinstance(source, (bytes, str)):
        return orjson.loads(source)["record"]
    return source


class Delivery:
    """Sends batches on a small thread pool and keeps the count of what Miso accepted."""

    def __init__(
        self,
        client: MisoClient,
        rejects: RejectsFile,
        max_concurrent: int,
        on_refused: t.Callable[[str, object], None] | None = None,
    ) -> None:
        """Start the worker pool.

        Args:
            client: The Miso API client (thread-safe).
            rejects: Where records refused by Miso are set aside.
            max_concurrent: Requests on the wire at once.
            on_refused: Called (in a delivery thread) with the stream and source record of
                each interaction Miso refused, once it is in the rejects file.

        """
        self._client = client
        self._rejects = rejects
        self._on_refused = on_refused
        self._pool = ThreadPoolExecutor(max(max_concurrent, 1), thread_name_prefix="miso-post")
        self._slots = threading.BoundedSemaphore(self.batches_held(max_concurrent))
        self._lock = threading.Lock()
        self._pending: set[Future[None]] = set()
        self._failure: BaseException | None = None
        self.accepted: collections.Counter[str] = collections.Counter()
        #: Records of each stream that Miso refused (set aside at stage ``miso``).
        self.refused: collections.Counter[str] = collections.Counter()

    @staticmethod
    def batches_held(max_concurrent: int) -> int:
        """How many batches delivery holds at most (handed over and not yet answered).

        Each keeps its source records for the rejects file: one on the wire per worker, and
        two waiting to absorb a checkpoint's burst.

        Args:
            max_concurrent: Requests on the wire at once.

        Returns:
            The bound.

        """
        return max(max_concurrent, 1) + 2

    def submit(self, batch: Batch) -> None:
        """Hand a batch over; blocks while the pool is saturated.

        Args:
            batch: The batch to send.

        """
        self.raise_if_failed()
        self._slots.acquire()
        future = self._pool.submit(self._deliver, batch)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def in_flight(self) -> frozenset[Future[None]]:
        """Return the requests handed over and not yet answered: what a checkpoint waits for.

        Every request handed over before is either in this set or already delivered: the
        check for failures and the snapshot are taken under the lock that a finishing
        request takes to record its outcome.

        Returns:
            Their futures (done and without exception once delivered).

        Raises:
            BaseException: The first delivery failure, if any.

        """
        with self._lock:
            if self._failure is not None:
                raise self._failure
            return frozenset(self._pending)

    def wait_idle(self) -> None:
        """Wait until no request is on the wire, without raising (used when a run fails)."""
        with self._lock:
            pending = set(self._pending)
        wait(pending)

    def settle(self) -> None:
        """Wait until every batch handed over is delivered or set aside.

        Raises:
            BaseException: The first delivery failure, if any.

        """
        self.wait_idle()  # only this thread hands batches over, so one snapshot is all
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Re-raise, in the caller's thread, the first failure of a worker.

        Raises:
            BaseException: That failure.

        """
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Stop the workers once they are idle."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _finished(self, future: Future[None]) -> None:
        self._slots.release()
        not_started: list[Future[None]] = []
        with self._lock:
            self._pending.discard(future)
            error = None if future.cancelled() else future.exception()
            if error is not None and self._failure is None:
                self._failure = error
                not_started = list(self._pending)
        # Batches not yet started would only add to what must be resent. Cancelled outside
        # the lock: cancelling runs this callback for each of them.
        for other in not_started:
            other.cancel()

    def _deliver(self, batch: Batch) -> None:
        records, sources = batch.records, batch.sources
        positions = list(range(len(records)))  # index in the batch of each record sent
        for _ in range(_MAX_RECOVERY_ROUNDS):
            result = self._client.upload_records(batch.path, records)
            refused = result.refused
            # Counted before the rejects are written: writing one may end the run
            # (max_rejects), and the summary counts what Miso answered for every record.
            with self._lock:
                self.refused[batch.stream] += len(refused)
                if result.others_stored:
                    self.accepted[batch.stream] += len(records) - len(refused)
            for index, reasons in refused.items():
                source = source_record(sources[index])
                self._rejects.add(
                    stream=batch.stream,
                    reasons=reasons,
                    source=source,
                    interaction=orjson.loads(records[index]),
                    stage="miso",
                )
                if self._on_refused is not None:
                    self._on_refused(batch.stream, source)
            if result.others_stored:
                if batch.on_stored is not None:
                    stored = [positions[i] for i in range(len(records)) if i not in refused]
                    batch.on_stored(stored, result.task_id)
                return
            # A 422 stored nothing: set the refused records aside and send the rest again.
            kept = [i for i in range(len(records)) if i not in refused]
            records = [records[i] for i in kept]
            sources = [sources[i] for i in kept]
            positions = [positions[i] for i in kept]
            if not records:
                return
        msg = (
            f"stream '{batch.stream}': Miso still refused records of one batch after "
            f"{_MAX_RECOVERY_ROUNDS} rounds of setting refused records aside"
        )
        raise MisoResponseError(msg)
