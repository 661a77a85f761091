"""Checkpoints waiting for their requests, so that reading goes on while they are answered.

At a checkpoint every record read so far is in a batch handed to delivery (or set aside).
Waiting there for all requests to be answered would stop reading for a round trip at each
checkpoint, which on a 50 ms API cost a fifth of the run. Instead the checkpoint is queued
with the requests on the wire at that moment, and its STATE is released once all of them
were answered. Checkpoints are released in order, and never one whose requests failed or
were cancelled: the delivery failure then ends the run and no later STATE is written.
"""

from __future__ import annotations

import collections
import dataclasses
import typing as t
from concurrent.futures import wait

if t.TYPE_CHECKING:
    from concurrent.futures import Future

    from target_miso.mappings import Mapping


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: its STATE (if the tap sent one) and what it waits for."""

    #: The latest STATE received before the checkpoint, or None.
    state: dict | None
    #: The requests on the wire when it was taken.
    requests: frozenset[Future[None]]
    #: What each mapping's ``seal()`` returned, for its ``commit``.
    tokens: tuple[tuple[Mapping, object], ...]
    #: Records read when it was taken (its STATE covers them).
    records_read: int = 0
    #: Which STATE received its STATE is (1 for the first): it covers what was read before.
    state_number: int = 0

    def delivered(self) -> bool:
        """Every request it waits for was delivered (refused records set aside included)."""
        return all(
            request.done() and not request.cancelled() and request.exception() is None
            for request in self.requests
        )


class CheckpointQueue:
    """Checkpoints in the order they were taken, released once delivered."""

    def __init__(self, release: t.Callable[[Checkpoint], None]) -> None:
        """Create an empty queue.

        Args:
            release: Called, in order, for each checkpoint whose requests were delivered:
                it makes the rejects durable, commits the mappings and writes the STATE.

        """
        self._release = release
        self._queue: collections.deque[Checkpoint] = collections.deque()

    def __len__(self) -> int:
        """Checkpoints still waiting."""
        return len(self._queue)

    def add(self, checkpoint: Checkpoint) -> None:
        """Queue a checkpoint, then release whatever is ready.

        Args:
            checkpoint: The checkpoint just taken.

        """
        self._queue.append(checkpoint)
        self.release_ready()

    def release_ready(self) -> None:
        """Release, oldest first, every checkpoint whose requests were all delivered.

        Stops at the first one still waiting, or one whose requests failed: nothing after
        it is ever released.
        """
        while self._queue and self._queue[0].delivered():
            self._release(self._queue.popleft())

    def wait_for_oldest(self) -> None:
        """Wait until the oldest checkpoint's requests are answered, then release what is ready.

        Raises:
            BaseException: The failure of one of its requests; it is never released then.

        """
        oldest = self._queue[0]
        wait(oldest.requests)
        for request in oldest.requests:
            if not request.cancelled() and request.exception() is not None:
                raise t.cast("BaseException", request.exception())
        self.release_ready()

    def discard(self) -> None:
        """Forget every waiting checkpoint (a later one, written after a full wait, covers them)."""
        self._queue.clear()
