"""A variant's saved onboard options, checked against this version's configs before a run uses them.

``mfgv onboard`` keeps the options it set (``resources.data.variants.save_run_config``); the runs
sensors start for the variant (a new batch, a retrain the edge loop asks for) use them. A file
written by an older version may name a field that no longer exists or a value now out of bounds:
checked here, with the file and the fix in the message, so a sensor can skip that variant's run and
say why instead of failing its whole tick (and every other variant's runs with it).
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import ValidationError

from mfg_assets.annotations import AnnotationConfig
from mfg_assets.augment import AugmentConfig
from mfg_assets.cross_validation import CrossValidationConfig
from mfg_assets.datasets import SplitConfig
from mfg_assets.search import RecipeConfig
from mfg_assets.validation import ValidationConfig
from resources.data.variants import VariantRefused, load_run_config, run_config_path

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


class SavedRunConfigError(VariantRefused):
    """A variant's saved options cannot be used by this version; the message names the file and the fix."""


def variant_run_config(line: str, variant: str, home: Path | None = None) -> dict[str, Any]:
    """The variant's saved run config, checked field by field ({} when none was saved)."""
    config = load_run_config(line, variant, home)
    path = run_config_path(line, variant, home)
    problems = [f"unknown top-level key {key!r}" for key in config if key != "ops"]
    for op, body in (config.get("ops") or {}).items():
        cls = ONBOARD_CONFIGS.get(op)
        fields = body.get("config") if isinstance(body, dict) else None
        if cls is None or not isinstance(fields, dict):
            problems.append(f"{op!r} is not an asset whose options onboard sets" if cls is None else f"{op}: no 'config' object")
            continue
        unknown = sorted(set(fields) - set(cls.model_fields))
        if unknown:
            problems.append(f"{op}: no field(s) {', '.join(unknown)} in this version")
            continue
        try:
            cls.model_validate(fields)
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, error['loc']))} {error['msg']}" for error in exc.errors())
            problems.append(f"{op}: {errors}")
    if problems:
        raise SavedRunConfigError(
            f"{path}: the saved options of {line}/{variant} do not fit this version ({'; '.join(problems)}); rerun "
            f"`mfgv onboard` for {line}/{variant} to save them again, or delete the file to run it with the defaults"
        )
    return config
