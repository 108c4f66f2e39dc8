"""Helpers every asset body uses: the partition's variant, and recording lineage."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from resources.data.variants import VariantSpec, load_variant, split_partition_key
from resources.lineage import LineageStore
from resources.storage.code_version import code_version

__all__ = ["blocking_check_result", "json_metadata", "inspection_asset", "hash_rows", "record_lineage", "run_seed", "variant_for"]


def variant_for(context: dg.AssetExecutionContext, lineage: LineageStore) -> VariantSpec:
    """The registered variant of the partition being materialized."""
    line, variant = split_partition_key(context.partition_key)
    return load_variant(line, variant, lineage.home_path())


def run_seed(own: int | None, dataset_split_spec: Mapping[str, Any]) -> int:
    """The seed a step uses: its own when set, else the dataset version's split seed.

    One owner for a run's seed: ``dataset_version``'s ``SplitConfig.seed`` (``mfgv onboard --seed``) seeds
    the augmentation, the training and search, and the folds unless one of them is given its own, and
    every asset records the concrete value it used."""
    return int(own) if own is not None else int(dataset_split_spec["seed"])


def hash_rows(rows: Iterable[Sequence[Any]]) -> str:
    """sha256 over rows, order-independent: the content id of a table."""
    digest = hashlib.sha256()
    for row in sorted(json.dumps(list(r), default=str) for r in rows):
        digest.update(row.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def record_lineage(
    context: dg.AssetExecutionContext,
    lineage: LineageStore,
    *,
    output_id: str,
    input_ids: Sequence[str],
    parameters: Mapping[str, Any],
    input_hashes: Mapping[str, str] | None = None,
) -> None:
    lineage.record(
        asset=context.asset_key.to_user_string(),
        partition=context.partition_key if context.has_partition_key else None,
        run_id=context.run_id,
        output_id=output_id,
        input_ids=input_ids,
        parameters=parameters,
        input_hashes=input_hashes,
    )
    context.log.info(f"lineage: {output_id} <- {', '.join(input_ids) or '(landing zone)'}")
    # The same facts on the materialization, where the UI shows them (the lineage table has them all).
    context.add_output_metadata(
        {
            "lineage output": output_id,
            "lineage inputs": dg.MetadataValue.md("\n".join(f"- `{i}`" for i in input_ids) or "(landing zone)"),
            "code version": code_version(),
        },
        output_name=context.assets_def.get_output_name_for_asset_key(context.asset_key),  # not its checks' outputs
    )


def inspection_asset(name: str, *, kinds: set[str], checks: Mapping[str, str] | None = None):
    """``dg.asset`` for a stage of the one inspection graph, whatever the task: one partition per
    line/variant, the platform's code version, and blocking checks (``check name -> description``)
    evaluated in the asset's own step, so a failing check stops everything downstream in that run.
    What differs by task is asked of the variant's engine (``resources.tasks.engine_for``) inside the
    asset, never by a second graph."""
    from mfg_assets.partitions import line_variant_partitions

    return dg.asset(
        name=name,
        partitions_def=line_variant_partitions,
        group_name="inspection",
        code_version=code_version(),
        kinds=kinds,
        check_specs=[
            dg.AssetCheckSpec(check, asset=name, blocking=True, description=description)
            for check, description in (checks or {}).items()
        ],
    )


def blocking_check_result(
    asset: str, check: str, *, passed: bool, description: str, metadata: Mapping[str, Any] | None = None
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata=dict(metadata or {}),
    )


def per_product(partition: str, figures: Mapping[str, float | None]) -> dict[str, float]:
    """Numeric metadata keyed by the product, ``"accuracy [line1.bracket-a]"``, so that the UI's plots
    draw one line per product; a figure not computed is NaN (Dagster plots only numbers)."""
    return {f"{key} [{partition}]": float("nan") if value is None else float(value) for key, value in figures.items()}


def json_metadata(values: Mapping[str, Any]) -> dict[str, Any]:
    """An engine's plain metadata as Dagster metadata: dicts and lists as JSON, the rest as is."""
    return {key: dg.MetadataValue.json(value) if isinstance(value, dict | list | tuple) else value for key, value in values.items()}
