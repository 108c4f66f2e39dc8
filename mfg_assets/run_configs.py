"""A variant's saved onboard options, checked against this version's configs before a run uses them.

``mfgv onboard`` keeps the options it set (``resources.data.variants.save_run_config``); the runs
sensors start for the variant (a new batch, a retrain the edge loop asks for) use them. A file
written by an older version may name a field that no longer exists or a value now out of bounds:
checked here, with the file and the fix in the message, so a sensor can skip that variant's run and
say why instead of failing its whole tick (and every other variant's runs with it). A run started
without config (the Dagster UI's Materialize button) gets the same options asset by asset
(``mfg_assets.saved_options``).
"""

from pathlib import Path
from typing import Any

import dagster as dg

from mfg_assets.annotations import AnnotationConfig
from mfg_assets.augment import AugmentConfig
from mfg_assets.cross_validation import CrossValidationConfig
from mfg_assets.datasets import SplitConfig
from mfg_assets.saved_options import SavedRunConfigError, refusal, saved_op_problem
from mfg_assets.search import RecipeConfig
from mfg_assets.validation import ValidationConfig
from resources.data.variants import load_run_config, run_config_path

__all__ = ["ONBOARD_CONFIGS", "SavedRunConfigError", "variant_run_config"]

ONBOARD_CONFIGS: dict[str, type[dg.Config]] = {
    "dataset_version": SplitConfig,
    "augmented_set": AugmentConfig,
    "hyperparameter_search": RecipeConfig,
    "cross_validation": CrossValidationConfig,
    "validation_report": ValidationConfig,
    "annotations": AnnotationConfig,
}
"""The assets whose config ``mfgv onboard`` sets, and their config classes."""


def variant_run_config(line: str, variant: str, home: Path | None = None) -> dict[str, Any]:
    """The variant's saved run config, checked field by field ({} when none was saved)."""
    config = load_run_config(line, variant, home)
    path = run_config_path(line, variant, home)
    problems = [f"unknown top-level key {key!r}" for key in config if key != "ops"]
    for op, body in (config.get("ops") or {}).items():
        problem = saved_op_problem(op, body, ONBOARD_CONFIGS.get(op))
        if problem:
            problems.append(problem)
    if problems:
        raise refusal(path, line, variant, problems)
    return config
