"""``mfgv batch`` and ``mfgv variant``: the way out of a blocking check, from the command line.

A batch that fails a blocking check is replaced by a fixed copy or withdrawn (recorded, never
deleted: ``resources.data.batches``); a taxonomy that lacks a class the data has grows by one
versioned step (``resources.data.variants.add_class``). The next ``mfgv onboard`` (or a run from the
UI) then trains on the variant's current batches under its current taxonomy.
"""

from pathlib import Path

from resources.data.batches import batch_table, withdraw_batch
from resources.data.variants import add_class, load_variant, partition_key, variant_history
from resources.errors import MfgVisionError
from resources.lineage import LineageStore
from resources.settings import mfg_home

__all__ = ["add_variant_class", "list_batches", "replace_batch", "show_variant", "withdraw"]


class DataCommandError(MfgVisionError):
    """A batch or variant command that cannot be carried out; says what to do instead."""


def list_batches(line: str, variant: str) -> str:
    """The variant's ingested batches with their status, as a table for the terminal."""
    load_variant(line, variant, mfg_home())
    table = batch_table(LineageStore(), partition_key(line, variant))
    if table.empty:
        return f"{line}/{variant} has no ingested batch yet (land one with `mfgv onboard`)"
    return table.to_string(index=False)


def withdraw(line: str, variant: str, batch: str, reason: str) -> str:
    load_variant(line, variant, mfg_home())
    event = withdraw_batch(LineageStore(), partition_key(line, variant), batch, reason=reason)
    return (
        f"withdrew batch {batch} of {line}/{variant} ({event['reason']}); its files and rows are kept, "
        "no run reads them from now on"
    )


def replace_batch(line: str, variant: str, batch: str, source: Path, reason: str) -> str:
    """Land ``source`` as a new batch, then withdraw ``batch`` naming it as the replacement.

    Landing goes first: if it fails, the old batch is still current and nothing was changed.
    """
    from mfg_assets.onboard import land_batch

    load_variant(line, variant, mfg_home())
    source = source.expanduser().resolve()
    if not source.is_dir():
        raise DataCommandError(f"--from {source} is not a folder; pass the fixed copy of batch {batch}")
    landing_dir = mfg_home() / "landing" / line / variant
    lineage = LineageStore()
    partition = partition_key(line, variant)
    table = batch_table(lineage, partition)
    if batch not in set(table["batch"]):
        names = ", ".join(table["batch"]) or "none"
        raise DataCommandError(f"{line}/{variant} has no ingested batch {batch!r}; its batches: {names}")
    landed = land_batch(source, landing_dir)
    if landed.name == batch or landed.name in set(table["batch"]):
        raise DataCommandError(
            f"{source} has the same files as batch {landed.name} already landed; change the files that were "
            "wrong before replacing, or withdraw the batch instead"
        )
    withdraw_batch(lineage, partition, batch, reason=f"{reason} (replaced by {landed.name})", replaced_by=landed.name)
    return (
        f"landed {source} as batch {landed.name} and withdrew {batch}; the next run of {line}/{variant} "
        f"(`mfgv onboard` or the landing sensor) ingests it"
    )


def add_variant_class(line: str, variant: str, name: str) -> str:
    spec = add_class(line, variant, name, mfg_home())
    LineageStore().record(
        asset="variant",
        partition=spec.partition,
        run_id="",
        output_id=f"variant:{spec.partition}:v{spec.version}",
        input_ids=[f"variant:{spec.partition}:v{spec.version - 1}"],
        parameters=spec.model_dump(mode="json"),
    )
    return (
        f"variant {line}/{variant} is now taxonomy version {spec.version}: {', '.join(spec.classes)}; "
        f"the next run needs images of {name!r}"
    )


def show_variant(line: str, variant: str) -> str:
    spec = load_variant(line, variant, mfg_home())
    lines = [
        f"{line}/{variant}: task {spec.task}, taxonomy version {spec.version}, good class {spec.good_class!r}",
        f"classes: {', '.join(spec.classes)}",
    ]
    for old in variant_history(line, variant, mfg_home()):
        lines.append(f"  v{old.get('version', 1)} saved {old.get('saved_at', '?')}: {', '.join(old['classes'])}")
    return "\n".join(lines)
