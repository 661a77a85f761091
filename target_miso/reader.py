"""A Singer message reader built on orjson.

The SDK's default reader parses every line with the standard library and turns each
fractional number into a ``Decimal``; on 114-column Snowplow rows that was the largest
single cost of the target (see docs/performance.md). orjson parses the same JSON several
times faster and gives floats, which is what Miso takes. It reads bytes from stdin so that
no text decoding pass comes first.
"""

from __future__ import annotations

import collections
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine


class _StopReading(Exception):  # noqa: N818 - a signal, not an error
    """Raised by ``request_stop`` inside a blocked read, caught by the read loop."""


class OrjsonSingerReader(GenericSingerReader[t.Union[str, bytes]]):
    """Reads Singer messages, one JSON object per line, from stdin's bytes or any text file."""

    def __init__(self) -> None:
        """Start counting lines, to name the line at fault."""
        super().__init__()
        self._line_number = 0
        #: The line being processed: sinks keep it, not the parsed record, as the source of
        #: each interaction in a batch (a third of the memory on wide rows).
        self.current_line: str | bytes | None = None
        #: A stop was asked for (SIGTERM/SIGINT): no further line is processed.
        self.stop_requested = False
        #: The input was left before its end because of that request.
        self.stopped_early = False
        self._waiting_for_input = False

    @property
    def default_input(self) -> t.IO[bytes]:
        """Standard input, as bytes."""
        return sys.stdin.buffer

    def process_lines(
        self,
        file_input: t.IO[t.Any] | None,
        callbacks: dict[str, t.Callable[[dict], None]],
    ) -> collections.Counter[str]:
        """Read every line and hand each message to the callback of its type.

        The SDK's loop, less its per-line set arithmetic and bookkeeping, with the same
        callbacks and counts; it also notes the current line for the sinks.

        Args:
            file_input: Where to read (stdin's bytes by default).
            callbacks: Message type to handler.

        Returns:
            Lines read by message type.

        Raises:
            InvalidInputLine: If a message has no ``type``.
        """
        counts: collections.Counter[str] = collections.Counter()
        unknown = self._process_unknown_message
        lines = iter(file_input or self.default_input)
        try:
            while not self.stop_requested:
                # Only while blocked here may a stop request interrupt (``request_stop``).
                self._waiting_for_input = True
                line = next(lines, None)
                self._waiting_for_input = False
                if line is None:
                    self.stopped_early = False
                    return counts
                self.current_line = line
                message = self.deserialize_json(line)
                message_type = message.get("type")
                if message_type is None:
                    msg = f"Input line {self._line_number} has no 'type'"
                    raise InvalidInputLine(msg)
                callbacks.get(message_type, unknown)(message)
                counts[message_type] += 1
        except _StopReading:
            pass  # the line being read, if any, was not processed: no STATE covers it
        finally:
            self._waiting_for_input = False
        self.stopped_early = True
        return counts

    def request_stop(self) -> None:
        """Stop after the message being processed; called from a signal handler.

        Raises:
            _StopReading: When the reader is blocked waiting for input (a tap that is
                still querying): the read is abandoned, no message was half processed.
        """
        self.stop_requested = True
        if self._waiting_for_input:
            raise _StopReading

    def deserialize_json(self, line: str | bytes) -> dict:
        """Parse one line.

        Args:
            line: One Singer message.

        Returns:
            The message as a dict.

        Raises:
            InvalidInputLine: If the line is not a JSON object; the message names the line
                number and shows only its start (lines carry personal data).
        """
        self._line_number += 1
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            preview = line[:60] if isinstance(line, str) else line[:60].decode("utf-8", "replace")
            msg = f"Input line {self._line_number} is not valid JSON ({error}): {preview!r}..."
            raise InvalidInputLine(msg) from None
        if not isinstance(message, dict):
            msg = f"Input line {self._line_number} is not a JSON object"
            raise InvalidInputLine(msg)
        return message
