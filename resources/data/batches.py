"""A variant's landing batches over time: which are current, which were withdrawn or replaced, and why.

A batch that fails a blocking check (a ``labels.csv`` row for a missing image, an unknown class, a
device's bad feedback) would otherwise block every later run of its variant, since every check reads
all of the variant's batches. Withdrawing it is the way out, and it is never a silent delete: the
batch's files stay in the landing zone and the artifact store, its rows stay in ``images`` and
``labels``, and an append-only ``batch_events`` row says who withdrew it, when, why and (for a
replacement) which batch took its place. Every asset reads only the *current* batches
(:func:`withdrawn_batches` excluded), so the next run's image set, labels and dataset version are
those of the data as it now stands, with new content ids.
"""

import getpass
from datetime import UTC, datetime

import pandas as pd

from resources.errors import MfgVisionError
from resources.lineage import LineageStore

__all__ = ["BatchRefused", "batch_table", "current_batches", "withdraw_batch", "withdrawn_batches"]

EVENTS = "batch_events"


class BatchRefused(MfgVisionError, ValueError):
    """The batch named does not exist, or is withdrawn already."""


def withdrawn_batches(lineage: LineageStore, partition: str) -> set[str]:
    """Names of the partition's withdrawn (or replaced) batches."""
    events = lineage.read_table(EVENTS, "partition = ?", [partition])
    return set(events.loc[events["action"] == "withdraw", "batch"]) if not events.empty else set()


def current_batches(lineage: LineageStore, partition: str) -> pd.DataFrame:
    """The ``image_batches`` rows of the partition that are not withdrawn."""
    batches = lineage.read_table("image_batches", "partition = ?", [partition])
    if batches.empty:
        return batches
    return batches[~batches["batch"].isin(withdrawn_batches(lineage, partition))].reset_index(drop=True)


def batch_table(lineage: LineageStore, partition: str) -> pd.DataFrame:
    """Every ingested batch of the partition with its status, image and quarantine counts, and the
    withdrawal's reason: what ``mfgv batch list`` prints."""
    batches = lineage.read_table("image_batches", "partition = ?", [partition])
    columns = ["batch", "status", "images", "quarantined", "ingested_at", "reason"]
    if batches.empty:
        return pd.DataFrame(columns=columns)
    images = lineage.read_table("images", "partition = ?", [partition])
    quarantine = lineage.read_table("quarantine", "partition = ?", [partition])
    events = lineage.read_table(EVENTS, "partition = ?", [partition])
    n_images = images.groupby("batch").size() if not images.empty else pd.Series(dtype=int)
    n_quarantined = quarantine.groupby("batch").size() if not quarantine.empty and "batch" in quarantine else pd.Series(dtype=int)
    withdrawn = events[events["action"] == "withdraw"].drop_duplicates("batch").set_index("batch") if not events.empty else None
    rows = []
    for row in batches.drop_duplicates("batch").itertuples():
        event = withdrawn.loc[row.batch] if withdrawn is not None and row.batch in withdrawn.index else None
        rows.append(
            {
                "batch": row.batch,
                "status": "current" if event is None else ("replaced" if event["replaced_by"] else "withdrawn"),
                "images": int(n_images.get(row.batch, 0)),
                "quarantined": int(n_quarantined.get(row.batch, 0)),
                "ingested_at": str(getattr(row, "ingested_at", "")),
                "reason": "" if event is None else f"{event['reason']} ({event['by']}, {event['at']})",
            }
        )
    return pd.DataFrame(rows, columns=columns)


def withdraw_batch(
    lineage: LineageStore, partition: str, batch: str, *, reason: str, replaced_by: str = "", by: str | None = None
) -> dict[str, str]:
    """Withdraw ``batch`` of ``partition`` (recorded in ``batch_events`` and the lineage); returns the event.

    A batch not yet ingested (still only in the landing zone) cannot be withdrawn here: move it out
    of the landing zone, or ingest it first.
    """
    if not reason.strip():
        raise BatchRefused(f"withdrawing batch {batch} needs a reason (--reason), for the audit trail")
    known = lineage.read_table("image_batches", "partition = ?", [partition])
    names = sorted(set(known["batch"])) if not known.empty else []
    if batch not in names:
        raise BatchRefused(
            f"{partition} has no ingested batch {batch!r}; its batches are: {', '.join(names) or 'none'} "
            "(see `mfgv batch list`)"
        )
    if batch in withdrawn_batches(lineage, partition):
        raise BatchRefused(f"batch {batch} of {partition} is withdrawn already (see `mfgv batch list`)")
    event = {
        "partition": partition,
        "batch": batch,
        "action": "withdraw",
        "reason": reason.strip(),
        "replaced_by": replaced_by,
        "by": by or getpass.getuser(),
        "at": datetime.now(UTC).isoformat(),
    }
    lineage.append_table(EVENTS, [event], prefix=partition)
    lineage.record(
        asset="batch_withdrawal",
        partition=partition,
        run_id="",
        output_id=f"withdrawal:{partition}/{batch}",
        input_ids=[f"batch:{partition}/{batch}"],
        parameters=event,
    )
    return event
