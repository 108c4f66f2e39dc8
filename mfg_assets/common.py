"""Helpers every asset body uses: the partition's variant, and recording lineage."""

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from resources.lineage import LineageStore
from resources.variants import VariantSpec, load_variant, split_partition_key

__all__ = ["hash_rows", "record_lineage", "variant_for"]


def variant_for(context: dg.AssetExecutionContext, lineage: LineageStore) -> VariantSpec:
    """The registered variant of the partition being materialized."""
    line, variant = split_partition_key(context.partition_key)
    return load_variant(line, variant, lineage.home_path())


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
