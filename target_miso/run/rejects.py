"""The rejects file: every record set aside, with its stream, contents and reasons.

A record that Miso would refuse (or did refuse) never fails its batch: it is written here,
one JSON object per line, and counted. Past ``max_rejects`` the run fails, because that
many bad records usually means a wrong mapping rather than a few odd rows.
"""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import errno
import json
import logging
import math
import os
import threading
import typing as t
from pathlib import Path

LOGGER = logging.getLogger("target-miso")
#: Per stream, stage and field, the first few rejects are logged (never with values).
_LOGGED_PER_KIND = 5


class RejectsWriteError(OSError):
    """The rejects file cannot be written (the run stops: a reject must never be lost)."""


class TooManyRejectsError(RuntimeError):
    """More records were set aside than ``max_rejects`` allows."""


def _json_default(value: object) -> object:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return repr(value)


def _finite(value: object) -> object:
    # NaN and Infinity as the strings Python writes for them: JSON has no such numbers.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def entry_line(entry: dict[str, object]) -> str:
    r"""One JSON line for the rejects file, whatever the record holds.

    Readable UTF-8 when possible; NaN and Infinity become strings, text with lone
    surrogates is written with ASCII escapes (``\ud800``), and a record the encoder cannot
    write at all (nested too deeply, a number of thousands of digits) is replaced by a note:
    setting a record aside never fails.

    Args:
        entry: The rejects entry.

    Returns:
        The line, with its line break.

    """
    try:
        try:
            line = json.dumps(entry, default=_json_default, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or Infinity (or an integer of more than 4,300 digits)
            entry = {key: _finite(value) for key, value in entry.items()}
            line = json.dumps(entry, default=_json_default, ensure_ascii=False)
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: \\u escapes are valid JSON, not UTF-8
            line = json.dumps(entry, default=_json_default, ensure_ascii=True)
    except (ValueError, RecursionError) as error:
        line = _without_contents(entry, error)
    return line + "\n"


def _without_contents(entry: dict[str, object], error: BaseException) -> str:
    note = f"<not written: {type(error).__name__}>"
    kept = {
        **entry,
        "record": note,
        "interaction": None if entry.get("interaction") is None else note,
    }
    return json.dumps(kept, default=_json_default, ensure_ascii=True)


def reason_key(reason: str) -> str:
    """Reduce a reason to what it is about, without any value (the summary is logged).

    Args:
        reason: A reason such as ``"timestamp: '2024-13-01' is not ..."``.

    Returns:
        The part before the first colon, e.g. ``"timestamp"``.

    """
    return reason.partition(":")[0].strip() or "unknown"


def check_rejects_path(path: str | os.PathLike[str]) -> str | None:
    """Tell at start-up why records could not be set aside at ``path``, without writing.

    An existing file is opened for appending (and closed); for a new one, the nearest
    existing parent must be a directory the process may write to (``access(2)``), so no
    empty file or directory is left behind by the check.

    Args:
        path: The ``rejects_path`` setting.

    Returns:
        The problem, naming the setting, the path and the OS's reason; None when it is usable.

    """
    target = Path(path)
    problem: str | None = None
    try:
        if target.is_dir():
            problem = os.strerror(errno.EISDIR)
        elif target.exists():
            os.close(os.open(target, os.O_WRONLY | os.O_APPEND))
        else:
            parent = target.absolute().parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                problem = f"{os.strerror(errno.ENOTDIR)}: {parent} is a file"
            elif not os.access(parent, os.W_OK | os.X_OK):
                problem = f"{os.strerror(errno.EACCES)} in {parent}"
    except OSError as error:
        problem = error.strerror or str(error)
    if problem is None:
        return None
    return f"rejects_path: cannot write the rejects file {str(path)!r} ({problem})"


class RejectsFile:
    """Append-only JSON Lines file of set-aside records; safe to use from several threads."""

    def __init__(self, path: str | os.PathLike[str], max_rejects: int | None) -> None:
        """Prepare the file; it is only created (mode 0600) when the first record is set aside.

        Args:
            path: Where to write.
            max_rejects: How many records may be set aside before the run fails
                (None: no limit).

        """
        self.path = Path(path)
        self.max_rejects = max_rejects
        self.count = 0
        self.by_reason: collections.Counter[str] = collections.Counter()
        self._per_stream: collections.Counter[tuple[str | None, str]] = collections.Counter()
        self._lock = threading.Lock()
        self._file: t.IO[str] | None = None

    def add(
        self,
        *,
        stream: str | None,
        reasons: list[str],
        source: object,
        interaction: object = None,
        stage: str,
    ) -> None:
        """Set one record aside.

        Args:
            stream: The Singer stream it came from (None when it cannot be read).
            reasons: Why, one sentence per problem, each naming the field.
            source: The source record as read from the tap.
            interaction: The interaction it was mapped to, if it got that far.
            stage: ``mapping``, ``validation`` or ``miso`` (refused by the API).

        Raises:
            TooManyRejectsError: When this record passes the ``max_rejects`` limit.

        """
        entry = {
            "rejected_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
            "stream": stream,
            "stage": stage,
            "reasons": reasons,
            "record": source,
            "interaction": interaction,
        }
        line = entry_line(entry)
        with self._lock:
            if self._file is None:
                self._file = self._open()
            try:
                self._file.write(line)
            except OSError as error:
                msg = f"rejects_path: cannot write to {self.path}: {error.strerror or error}"
                raise RejectsWriteError(msg) from None
            self.count += 1
            for reason in reasons[:1]:
                kind = f"{stage}: {reason_key(reason)}"
                self.by_reason[kind] += 1
                self._per_stream[stream, kind] += 1
                if self._per_stream[stream, kind] <= _LOGGED_PER_KIND:
                    LOGGER.warning(
                        "Set aside a record of stream '%s' (%s: field '%s'; reject #%d, "
                        "details in %s)%s",
                        stream or "(unknown)",
                        stage,
                        reason_key(reason),
                        self.count,
                        self.path,
                        "; further ones like it are only counted"
                        if self._per_stream[stream, kind] == _LOGGED_PER_KIND
                        else "",
                    )
            if self.max_rejects is not None and self.count > self.max_rejects:
                self._file.flush()
                msg = (
                    f"{self.count} records were set aside, more than max_rejects="
                    f"{self.max_rejects}; see {self.path} for the records and reasons "
                    "(a wrong mapping is the usual cause)"
                )
                raise TooManyRejectsError(msg)

    def _open(self) -> t.IO[str]:
        # The records hold personal data: a new file is readable by its owner only (0600).
        # Line buffered, so each reject reaches the OS as it is written and a record logged
        # as set aside is in the file whatever ends the process later (sync() adds the
        # fsync before each STATE).
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        except OSError as error:
            msg = f"rejects_path: cannot write to {self.path}: {error.strerror or error}"
            raise RejectsWriteError(msg) from None
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def sync(self) -> None:
        """Make everything written so far durable (called before each STATE)."""
        with self._lock:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        self.sync()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
