"""Deleting from Miso the catalog records a full-table sync no longer has, safely.

After a full-table read of a stream with ``delete_missing: true``, the ids Miso holds
(``GET /v1/{kind}/_ids``) that the read did not contain are deleted through
``POST /v1/{kind}/_delete``, at most 1,000 ids per request. Two guards: a run never deletes
more than ``max_delete_fraction`` of the catalog (it stops with an error and deletes
nothing: a truncated source table must not empty the catalog), and ``delete_dry_run``
only lists the ids.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

if t.TYPE_CHECKING:
    from target_miso.catalog.mapping import CatalogOptions
    from target_miso.miso.client import MisoClient

LOGGER = logging.getLogger("target-miso")
#: Ids per bulk delete request, as Miso's own tools send them.
DELETE_CHUNK = 1000
#: Ids written out in one log line (the rest are in the following lines).
_IDS_PER_LOG_LINE = 200


class CatalogError(RuntimeError):
    """A catalog sync cannot go on safely; the run stops with exit code 1."""


class DeleteRefusedError(CatalogError):
    """A full-table sync would delete more of the catalog than ``max_delete_fraction``."""


@dataclasses.dataclass
class DeleteOutcome:
    """What one stream's deletion step found and did."""

    in_miso: int
    missing: list[str]
    deleted: int = 0
    dry_run: bool = False
    task_ids: list[str] = dataclasses.field(default_factory=list)
    #: Ids deleted by requests whose answer carried no task id (nothing to wait for).
    without_task_id: int = 0
    #: Ids this run saw that Miso does not hold (their hashes are forgotten: next run resends).
    absent_from_miso: set[str] = dataclasses.field(default_factory=set)


def delete_missing(
    client: MisoClient,
    stream: str,
    options: CatalogOptions,
    seen_ids: set[str],
    *,
    dry_run: bool,
) -> DeleteOutcome:
    """Delete the ids Miso holds that the full-table read of ``stream`` did not contain.

    Args:
        client: The Miso client.
        stream: The Singer stream (named in logs and errors).
        options: The stream's catalog options (kind, limit, dry run).
        seen_ids: Every id the read contained, valid or not.
        dry_run: List the ids only (``delete_dry_run``, or the target's ``dry_run``).

    Returns:
        What was found and deleted.

    Raises:
        DeleteRefusedError: If more than ``max_delete_fraction`` of the catalog would go.

    """
    kind = options.kind
    in_miso = client.catalog_ids(kind)
    miso_ids = set(in_miso)
    missing = sorted(miso_ids - seen_ids)
    outcome = DeleteOutcome(
        in_miso=len(miso_ids),
        missing=missing,
        dry_run=dry_run,
        absent_from_miso=seen_ids - miso_ids,
    )
    if not missing:
        LOGGER.info(
            "Stream '%s': full-table sync; all %d %s in Miso are in the source, none to delete",
            stream,
            len(miso_ids),
            kind,
        )
        return outcome
    fraction = len(missing) / len(miso_ids)
    if fraction > options.max_delete_fraction:
        msg = (
            f"stream '{stream}': the full-table sync would delete {len(missing)} of "
            f"{len(miso_ids)} {kind} in Miso ({fraction:.1%}), more than "
            f"{options.path}.max_delete_fraction={options.max_delete_fraction:g} allows; "
            "nothing was deleted. Check that the source table is complete; if the deletion is "
            f"intended, raise max_delete_fraction for one run (delete_dry_run: true lists the ids)"
        )
        raise DeleteRefusedError(msg)
    if dry_run:
        LOGGER.warning(
            "Stream '%s': dry run: would delete %d of %d %s missing from the source (nothing "
            "deleted); ids follow",
            stream,
            len(missing),
            len(miso_ids),
            kind,
        )
        for start in range(0, len(missing), _IDS_PER_LOG_LINE):
            chunk = missing[start : start + _IDS_PER_LOG_LINE]
            LOGGER.warning("Stream '%s': would delete %s: %s", stream, kind, ", ".join(chunk))
        return outcome
    for start in range(0, len(missing), DELETE_CHUNK):
        chunk = missing[start : start + DELETE_CHUNK]
        task_id = client.delete_catalog(kind, chunk)
        outcome.deleted += len(chunk)
        if task_id:
            outcome.task_ids.append(task_id)
        else:
            outcome.without_task_id += len(chunk)
    LOGGER.info(
        "Stream '%s': deleted %d of %d %s that the full-table sync no longer has",
        stream,
        outcome.deleted,
        len(miso_ids),
        kind,
    )
    return outcome
