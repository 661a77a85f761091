"""SIGTERM and SIGINT: stop reading, deliver what was read, and never take forever.

The signal handler only records that a stop was asked for (and, when the main thread is
blocked reading input, interrupts that read): it takes no lock and writes nothing, so it
cannot deadlock with the code it interrupted, whatever that code held. The main thread
then leaves its read loop and ends the run the ordinary way: everything read is delivered
and the STATE that covers it is written.

Delivering may take long (an outage, a request in its backoff). A watchdog thread, woken
by the signal through ``signal.set_wakeup_fd``, bounds it: once ``grace_seconds`` have
passed, or when a second signal arrives, it ends the process at once with no further
STATE, so the next run resends what was not confirmed. It takes the output lock first, so
a STATE line is never cut in half.

A signal that arrives within ``SAME_REQUEST_SECONDS`` of the first is the same request, not a
second one: an orchestrator that stops a whole process group (Airflow, a shell's Ctrl-C, a
`kill -- -PGID`) reaches the target directly, and Meltano then forwards the same stop to its
plugins a few milliseconds later. Only a person or a supervisor insisting is a second signal.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
import typing as t

if t.TYPE_CHECKING:
    from types import FrameType

LOGGER = logging.getLogger("target-miso")
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: How long the watchdog waits for a STATE line being written before it exits anyway.
_OUTPUT_LOCK_WAIT_SECONDS = 5.0
#: Signals this close to the first one repeat it (measured: Meltano 4.4 forwards a process
#: group's SIGTERM to the target under 1 ms later).
SAME_REQUEST_SECONDS = 1.0


class GracefulStop:
    """Turns SIGTERM/SIGINT into a stop request and bounds how long stopping takes."""

    def __init__(
        self,
        grace_seconds: float,
        output_lock: threading.Lock,
        interrupt_read: t.Callable[[], None],
    ) -> None:
        """Prepare; nothing is installed until ``install``.

        Args:
            grace_seconds: How long delivering what was read may take after the first signal.
            output_lock: Held while a STATE line is written; taken before a forced exit.
            interrupt_read: Called from the signal handler: tells the reader to stop, and
                raises (from inside the read) when it is blocked waiting for input.

        """
        self.grace_seconds = grace_seconds
        self.signum: int | None = None
        self._output_lock = output_lock
        self._interrupt_read = interrupt_read
        self._wakeup_write: int | None = None
        self._previous_wakeup_fd = -1
        self._watchdog: threading.Thread | None = None

    @property
    def requested(self) -> bool:
        """A stop was asked for."""
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The conventional 128 + signal number."""
        return 128 + (self.signum or 0)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Handle the signal: record the request; no lock, no I/O.

        Args:
            signum: The signal received.
            frame: The interrupted frame (unused).

        """
        if self.signum is None:
            self.signum = signum
            self._interrupt_read()

    def install(self) -> None:
        """Start the watchdog (main thread only; elsewhere signals do not reach Python)."""
        if threading.current_thread() is not threading.main_thread():
            return
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wakeup_write = write_end
        self._watchdog = threading.Thread(
            target=self._watch,
            args=(read_end,),
            name="graceful-stop",
            daemon=True,
        )
        self._watchdog.start()

    def uninstall(self) -> None:
        """Stop the watchdog: the run ended on its own."""
        if self._wakeup_write is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        os.close(self._wakeup_write)  # the watchdog reads end-of-file and returns
        self._wakeup_write = None
        if self._watchdog is not None:
            self._watchdog.join(timeout=1)

    def _watch(self, read_end: int) -> None:
        first_at: float | None = None
        deadline: float | None = None
        try:
            while True:
                timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
                ready, _, _ = select.select([read_end], [], [], timeout)
                if not ready:
                    self._exit_now(
                        f"delivering what was read took longer than stop_grace_seconds="
                        f"{self.grace_seconds:g}",
                    )
                received = os.read(read_end, 64)
                if not received:
                    return
                for signum in received:
                    if signum not in _STOP_SIGNALS:
                        continue
                    now = time.monotonic()
                    if first_at is None:
                        LOGGER.warning(
                            "Received signal %d: stopped reading; delivering what was read "
                            "(at most %g s; a second signal stops at once)",
                            signum,
                            self.grace_seconds,
                        )
                        first_at, deadline = now, now + self.grace_seconds
                    elif now - first_at < SAME_REQUEST_SECONDS:
                        LOGGER.info(
                            "Signal %d again within %g s: the same stop request (forwarded "
                            "by the orchestrator), not a second one",
                            signum,
                            SAME_REQUEST_SECONDS,
                        )
                    else:
                        self._exit_now(f"a second signal ({signum}) arrived")
        finally:
            os.close(read_end)

    def _exit_now(self, why: str) -> t.NoReturn:
        # No STATE may follow, and none may be cut in half: hold the output lock to the end.
        self._output_lock.acquire(timeout=_OUTPUT_LOCK_WAIT_SECONDS)
        LOGGER.error(
            "target-miso stopped at once: %s. No STATE was written past the records that "
            "were not confirmed; the next run starts from the last STATE written and resends "
            "them.",
            why,
        )
        for handler in logging.getLogger().handlers + LOGGER.handlers:
            handler.flush()
        os._exit(self.exit_code)
