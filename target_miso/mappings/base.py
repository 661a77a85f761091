"""The one seam every preset plugs into: a source record in, zero or more interactions out."""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Mapping as MappingType

#: An interaction held back by a mapping and the source record it came from.
Held = tuple[dict[str, t.Any], dict[str, t.Any]]


@dataclasses.dataclass(frozen=True)
class Columns:
    """The source columns a mapping reads with its options (what a tap needs to select).

    Attributes:
        names: Columns by name, in a stable order.
        patterns: Globs (``fnmatch``, as Meltano's ``select`` takes them) for families of
            columns, e.g. one per schema: ``contexts_com_acme_user_[0-9]*``.

    """

    names: tuple[str, ...]
    patterns: tuple[str, ...] = ()

    def __iter__(self) -> t.Iterator[str]:
        """Iterate over the names, then the patterns."""
        return iter((*self.names, *self.patterns))

    def matches(self, column: str) -> bool:
        """Whether the mapping reads this column."""
        return column in self.names or any(
            fnmatch.fnmatchcase(column, pattern) for pattern in self.patterns
        )


class MappingError(ValueError):
    """A source record cannot be turned into an interaction; it goes to the rejects file."""

    def __init__(self, field: str, reason: str) -> None:
        """Name the field at fault.

        Args:
            field: The source column or Miso field the problem is about.
            reason: What is wrong with it, without the record's contents.

        """
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        #: One sentence per failing field (several when ``MappingErrors`` gathers them).
        self.reasons = [f"{field}: {reason}"]


class MappingErrors(MappingError):
    """Several fields of one record failed: the reject names every one, not just the first."""

    def __init__(self, errors: t.Sequence[MappingError]) -> None:
        """Gather the errors.

        Args:
            errors: At least two errors of the same record.

        """
        super().__init__(errors[0].field, errors[0].reason)
        self.reasons = [reason for error in errors for reason in error.reasons]
        self.args = ("; ".join(self.reasons),)


def raise_errors(errors: t.Sequence[MappingError]) -> None:
    """Raise the errors of one record together (nothing when there are none).

    Args:
        errors: The errors gathered while mapping the record.

    Raises:
        MappingError: The one error, or a ``MappingErrors`` naming each.

    """
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise MappingErrors(errors)


class MappingConfigError(ValueError):
    """A mapping's configuration is wrong; raised at start-up, before any record is read."""

    def __init__(self, path: str, reason: str) -> None:
        """Name the setting at fault.

        Args:
            path: Where in the config, e.g. ``mappings.atomic-events.page_rules[0].pattern``.
            reason: What is wrong and how to fix it.

        """
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Mapping:
    """Turn the records of one stream into Miso interaction records.

    Subclasses implement ``map``. A mapping that must see later records before it can
    finish an interaction (page pings adding to a page view's duration, order lines
    grouped into one checkout) holds it and gives it back from ``flush``, which the
    target calls before every checkpoint, so no STATE ever passes a held record.

    Interactions come out unvalidated: the sink normalizes nothing further, validates
    each one against the interaction schema and sets invalid ones aside.
    """

    #: Name used in ``preset:`` settings and in logs.
    preset: t.ClassVar[str] = ""
    #: The options the preset reads (besides ``preset`` and ``kind``); others are refused.
    option_names: t.ClassVar[tuple[str, ...]] = ()
    #: Seconds the stream's bookmark is moved back in every STATE the target writes, so
    #: that the tap re-reads rows loaded late (``run/lookback.py``); 0: the tap's own.
    state_lookback_seconds: float = 0

    def __init__(
        self,
        options: MappingType[str, t.Any],
        *,
        stream_name: str,
        config_path: str,
    ) -> None:
        """Read and check the options; raise MappingConfigError on any mistake.

        Args:
            options: This stream's mapping settings (without ``preset``).
            stream_name: The Singer stream the mapping serves.
            config_path: Where the options live in the config, for error messages.

        """
        self.options = options
        self.stream_name = stream_name
        self.config_path = config_path
        #: Source records that gave no interaction on purpose, by reason (run summary).
        self.skipped: collections.Counter[str] = collections.Counter()

    def bind_schema(self, schema: dict[str, t.Any]) -> None:
        """Look at the stream's SCHEMA once, e.g. to warn about columns that are ignored.

        Args:
            schema: The stream's JSON Schema from the SCHEMA message.

        """

    def columns(self) -> Columns | None:
        """Return the source columns this mapping reads with its options (column pruning).

        Returns:
            The columns, or None when the preset does not know them: select every column.

        """
        return None

    def map(self, record: dict[str, t.Any]) -> list[dict[str, t.Any]]:
        """Map one source record.

        Args:
            record: The record as read from the tap (nothing parsed yet).

        Returns:
            The interactions this record gives now, possibly none.

        Raises:
            MappingError: If the record cannot be mapped (it is set aside with the reason).

        """
        raise NotImplementedError

    def kept_source(self, record: dict[str, t.Any]) -> object:
        """Return what a batch keeps of a source record, for the rejects file should Miso refuse it.

        Args:
            record: The source record.

        Returns:
            None: the record's Singer line (or the record itself). Presets with wide rows
            return the columns that identify the row.

        """
        return None

    def flush(self) -> list[Held]:
        """Give back every interaction held so far.

        Returns:
            Pairs of (interaction, source record).

        """
        return []

    def seal(self) -> object:
        """Take a checkpoint: everything handed out so far belongs to it.

        Returns:
            A token for ``commit``. Reading goes on while the checkpoint's requests are
            on the wire, so the mapping must tell apart what came before and after it.

        """
        return None

    def commit(self, token: object = None) -> None:
        """Everything handed out up to a checkpoint is accepted by Miso or set aside on record.

        Mappings that remember things across runs (e.g. event ids seen) persist them here.

        Args:
            token: What ``seal`` returned for that checkpoint; None: everything so far.

        """

    def bind_environment(self, environment: str) -> None:
        """Learn which Miso environment the run delivers to, before the first record.

        Args:
            environment: From ``catalog.hashes.environment_key`` (never the key itself).

        """

    def refused(self, source: object) -> None:
        """Hear that an interaction of this stream was set aside at validation or by Miso.

        Args:
            source: The source record the interaction carries (or what the batch kept of it).

        """

    def close(self) -> None:
        """Release resources at the end of the run."""
