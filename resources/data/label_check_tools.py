"""What the label checks share: the outcome record, row helpers and the great-expectations plumbing.

Kept apart from the checks themselves (``resources.data.label_quality``) so each module reads in one
sitting; great_expectations takes seconds to import, so it is imported inside the functions.
"""

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

__all__ = [
    "MAX_EXAMPLES",
    "CheckOutcome",
    "as_records",
    "gx_validate",
    "majority_labels",
    "metric_key",
    "new_gx_context",
    "require_columns",
    "some_examples",
    "where_of",
]

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 3
_GX_SOURCE = "mfg_label_quality"


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one label check, shaped for a Dagster ``AssetCheckResult``.

    ``summary`` is one human line (counts, first examples, the fix); ``failures`` holds every
    offending row for metadata; ``metrics`` holds the numbers worth plotting.
    """

    name: str
    passed: bool
    summary: str
    failures: list[dict] = field(default_factory=list)
    metrics: dict[str, float | int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- helpers


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail loudly on a table of the wrong shape: a check that ran on the wrong table would pass."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{what} table is missing column(s) {missing} (it has {list(table.columns)}); build it "
            f"from resources.data.labels.import_batch_labels joined to the ingest table on (batch, rel_path)"
        )


def as_records(table: pd.DataFrame, columns: Sequence[str]) -> list[dict]:
    """Rows as plain dicts with ``None`` for missing values, so metadata serialises as JSON."""
    present = [c for c in columns if c in table.columns]
    subset = table[present].astype(object)
    subset = subset.where(subset.notna(), None)
    return subset.to_dict(orient="records")


def some_examples(items: Sequence[str], limit: int = MAX_EXAMPLES) -> str:
    shown = ", ".join(items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def where_of(row: pd.Series | dict) -> str:
    """``batch/rel_path`` when the batch is known: the path a person can open."""
    batch = row.get("batch")
    rel_path = row.get("rel_path")
    if batch is not None and not pd.isna(batch):
        return f"{batch}/{rel_path}"
    return str(rel_path)


def metric_key(name: str) -> str:
    """Reviewer names become metric keys; keep them to characters every UI accepts."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name.strip()) or "unnamed"


def majority_labels(votes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Majority label per ``keys`` from one vote per row; ties go to the first label in sort order
    (deterministic, so a rerun gives the same dataset) and are flagged in ``tied``."""
    counts = votes.groupby([*keys, "label"], sort=False).size().rename("votes").reset_index()
    counts = counts.sort_values([*keys, "votes", "label"], ascending=[True] * len(keys) + [False, True])
    top = counts.groupby(keys, sort=False)["votes"].transform("max")
    n_top = (counts["votes"] == top).groupby([counts[k] for k in keys], sort=False).transform("sum")
    counts = counts.assign(tied=n_top > 1)
    return counts.drop_duplicates(keys, keep="first")[[*keys, "label", "tied"]]


# ---------------------------------------------------------------------------------- great_expectations


def new_gx_context() -> "AbstractDataContext":
    """An ephemeral great-expectations context with analytics and progress bars off.

    Plants run without internet, so the offline switches are set before great_expectations is
    imported; progress bars would only fill the Dagster logs.
    """
    from resources.settings import apply_offline_switches

    apply_offline_switches()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def gx_validate(
    context: "AbstractDataContext", table: pd.DataFrame, expectations: list[Any], asset_name: str
) -> tuple[list[Any], float]:
    """Validate ``table`` against ``expectations`` on ``context``; return the results and seconds.

    The data source, asset and batch definition are created once per context and reused, so
    ``run_all`` keeps one context for all its checks. great_expectations reports a metric that could
    not be computed as a failed expectation; that would read as "bad labels" when the code is wrong,
    so it is raised instead.
    """
    import great_expectations as gx

    try:
        source = context.data_sources.get(_GX_SOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(_GX_SOURCE)
    if asset_name in source.get_asset_names():
        asset = source.get_asset(asset_name)
    else:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch_definition = asset.get_batch_definition("whole_table")
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_dataframe("whole_table")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": table})
    suite = gx.ExpectationSuite(name=f"{asset_name}_suite", expectations=expectations)
    started = time.perf_counter()
    result = batch.validate(suite, result_format="COMPLETE")
    seconds = time.perf_counter() - started
    for item in result.results:
        message = _gx_exception(item.exception_info)
        if message:
            raise RuntimeError(
                f"great_expectations could not evaluate {item.expectation_config.type} on the "
                f"{asset_name} table: {message}; this is a bug in the check, not in the labels"
            )
    logger.info("great_expectations validated %d rows of %s in %.3f s", len(table), asset_name, seconds)
    return list(result.results), seconds


def _gx_exception(info: dict | None) -> str | None:
    """The message of a raised exception in a GX result (flat or keyed by metric), else None."""
    if not info:
        return None
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message"))
    return None
