r"""A Singer message reader built on orjson, exact where orjson is not, and robust to bad lines.

The SDK's default reader parses every line with the standard library and turns each
fractional number into a ``Decimal``; on 114-column Snowplow rows that was the largest
single cost of the target (see docs/performance.md). orjson parses the same JSON several
times faster and gives floats, which is what Miso takes. It reads bytes from stdin so that
no text decoding pass comes first.

orjson is the fast path. The standard library parses a line instead when orjson refuses
it (``NaN``, ``Infinity``, ``1e400``, a lone surrogate escape such as ``"\ud800"``) or when
the line may hold an integer orjson would turn into a float (beyond 64 bits: user ids
merged, bookmarks rounded). Values Miso cannot take are then set aside by the sinks, field by field.

Lines that cannot be read (README.md, "Bad input lines"):

* A RECORD line that cannot be decoded (not UTF-8, nested deeper than the parsers go, a
  number of thousands of digits) is handed to ``set_aside`` with its line number and kept
  as text in the rejects file; the run goes on.
* Any other unreadable line (not JSON, not an object, no ``type``) raises ``BadInputLine``:
  the run stops there with one clear message that never shows the line's contents.
"""

from __future__ import annotations

import collections
import json
import re
import sys
import typing as t

import orjson
from singer_sdk.exceptions import RecordsWithoutSchemaException
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

#: What to do about a line that stops the run (appended to every ``BadInputLine``).
FIX_THE_TAP = (
    "The tap or the pipe between tap and target wrote a line that is not a Singer message; "
    "fix that line (or the tap) and run again: the next run starts from the last STATE written"
)

# The big-integer check: orjson reads integers up to 64 bits exactly and larger ones as
# floats. Any integer beyond 64 bits has at least 19 digits in a row (the least one,
# -9223372036854775809, has 19), so a line without 19 digits in a row goes to orjson.
# Digits become "0" and every other byte " ", then one substring search: 3.9 us per
# 3.3 KB Snowplow line (timeit, 2-core VM), against 39 us for re.compile(rb"[0-9]{19}")
# .search (sre tries a match at every digit) and 10.4 us for orjson.loads itself.
_DIGITS_ONLY = bytes(b"0"[0] if chr(byte) in "0123456789" else b" "[0] for byte in range(256))
_DIGIT_RUN = b"0" * 19
_IS_RECORD = re.compile(rb'"type"\s*:\s*"RECORD"')
_STREAM = re.compile(rb'"stream"\s*:\s*"((?:[^"\\]|\\.){1,512})"')


class BadInputLine(InvalidInputLine):
    """A line that is not a Singer message the target can act on: the run stops there."""

    def __init__(self, line_number: int, problem: str, advice: str = FIX_THE_TAP) -> None:
        """Say which line, what is wrong with it and what to do; never its contents.

        Args:
            line_number: The line's number in the input (from 1).
            problem: What is wrong, e.g. ``is not valid JSON``.
            advice: What to do about it.

        """
        super().__init__(f"Input line {line_number} {problem}. {advice}.")
        self.line_number = line_number
        self.problem = problem


class RecordBeforeSchema(BadInputLine, RecordsWithoutSchemaException):
    """A RECORD of a stream that no SCHEMA described (also the SDK's exception for that)."""


class UnreadableRecord(Exception):  # not an error of the run: a record set aside
    """A RECORD line that cannot be decoded; it is set aside and the run goes on."""

    def __init__(self, reason: str) -> None:
        """Keep the reason (``topic: line N ...``, without the line's contents).

        Args:
            reason: Why the line cannot be read.

        """
        super().__init__(reason)
        self.reason = reason


def might_hold_big_int(line: str | bytes) -> bool:
    """Tell whether a line has 19 digits in a row (an integer orjson may read as a float).

    Args:
        line: One Singer line.

    Returns:
        True when the exact parser must read the line.

    """
    if type(line) is not bytes:
        line = line.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]
    return _DIGIT_RUN in line.translate(_DIGITS_ONLY)


def line_text(line: str | bytes) -> str:
    r"""Return the line as text for the rejects file (bytes not UTF-8 shown as ``\xff``).

    Args:
        line: The raw line.

    Returns:
        Text that keeps every byte, without the line break.

    """
    if isinstance(line, bytes):
        line = line.decode("utf-8", "backslashreplace")
    return line.rstrip("\r\n")


def stream_of(line: str | bytes) -> str | None:
    """Find the stream a raw line names, if a simple search finds it.

    Args:
        line: The raw line.

    Returns:
        The value of its first ``"stream"`` key, or None.

    """
    raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
    found = _STREAM.search(raw)
    if found is None:
        return None
    try:
        stream = json.loads(b'"' + found.group(1) + b'"')
    except ValueError:
        return None
    return stream if isinstance(stream, str) else None


class _StopReading(Exception):
    """Raised by ``request_stop`` inside a blocked read, caught by the read loop."""


# Parameterised by bytes, what stdin gives (the SDK's type variable allows str or bytes, not
# both); the methods that read a line take str too, for a text file.
class OrjsonSingerReader(GenericSingerReader[bytes]):
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
        #: Where RECORD lines that cannot be decoded go: ``(line_number, line, reason)``.
        #: The target sets it to its rejects file; without it such a line stops the run.
        self.set_aside: t.Callable[[int, str | bytes, str], None] | None = None

    @property
    def line_number(self) -> int:
        """The number of the line read last (from 1)."""
        return self._line_number

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
        callbacks and counts; it also notes the current line for the sinks, skips blank
        lines and sets aside the RECORD lines that cannot be decoded.

        Args:
            file_input: Where to read (stdin's bytes by default).
            callbacks: Message type to handler.

        Returns:
            Lines read by message type.

        Raises:
            BadInputLine: If a line is not a Singer message (the run stops there).

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
                try:
                    message = self.deserialize_json(line)
                except UnreadableRecord as error:
                    if self.set_aside is None:
                        problem = error.reason.partition(": ")[2]
                        raise BadInputLine(self._line_number, problem) from None
                    self.set_aside(self._line_number, line, error.reason)
                    counts["RECORD"] += 1
                    continue
                if message is None:  # a blank line
                    continue
                message_type = message.get("type")
                if type(message_type) is not str:
                    raise BadInputLine(self._line_number, "has no 'type' (or it is not text)")
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

    def _process_unknown_message(self, message_dict: dict) -> None:
        shown = str(message_dict["type"])[:40]
        raise BadInputLine(self._line_number, f"has an unknown message type {shown!r}")

    def deserialize_json(self, line: str | bytes) -> dict:
        """Parse one line: orjson, or the standard library where orjson is not exact.

        Args:
            line: One Singer message.

        Returns:
            The message as a dict (None for a blank line).

        Raises:
            BadInputLine: If the line is not a JSON object.
            UnreadableRecord: If a RECORD line cannot be decoded.

        """
        self._line_number += 1
        if type(line) is bytes:
            big = _DIGIT_RUN in line.translate(_DIGITS_ONLY)
        else:
            big = might_hold_big_int(line)
        if not big:
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                message = self._parse_exactly(line)
        else:
            message = self._parse_exactly(line)
        if type(message) is not dict and message is not None:
            raise BadInputLine(self._line_number, "is a JSON value but not an object")
        return message  # type: ignore[return-value]

    def _parse_exactly(self, line: str | bytes) -> dict | None:
        # The standard library: exact integers, floats for fractions, NaN and Infinity.
        number = self._line_number
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as error:
                reason = (
                    f"encoding: line {number} is not valid UTF-8 (byte 0x{line[error.start]:02x} "
                    f"at offset {error.start})"
                )
                # Set aside only what would be a record once decoded; anything else stops.
                text = line.decode("utf-8", "replace")
                self._parse_text(text, line, number)
                raise self._unreadable(line, reason, number) from None
        else:
            text = line
        return self._parse_text(text, line, number)

    def _parse_text(self, text: str, line: str | bytes, number: int) -> dict | None:
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            if not text.strip():
                return None
            problem = f"is not valid JSON ({error.msg} at column {error.colno})"
            raise BadInputLine(number, problem) from None
        except RecursionError:
            reason = f"nesting: line {number} nests objects or arrays too deeply to be read"
            raise self._unreadable(line, reason, number) from None
        except ValueError as error:  # an integer of more than 4,300 digits
            reason = f"number: line {number} holds a number that cannot be read ({error})"
            raise self._unreadable(line, reason, number) from None

    @staticmethod
    def _unreadable(line: str | bytes, reason: str, number: int) -> Exception:
        raw = line if isinstance(line, bytes) else line.encode("utf-8", "surrogatepass")
        if _IS_RECORD.search(raw):
            return UnreadableRecord(reason)
        what = reason.partition(f"line {number} ")[2]
        return BadInputLine(number, f"{what}, and is not a RECORD that could be set aside")
