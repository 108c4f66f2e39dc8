"""The options an asset runs with when its run does not set them: the variant's saved onboard options.

A run started from the Dagster UI's Materialize button carries no config. Without this, a retrain
clicked in the UI would quietly train with the platform's defaults instead of the recipe the plant
chose when it onboarded the variant (backbone, input size, feature source, release limits), and its
model would differ from the sensor-started ones for no reason anyone could see. Precedence, per
asset: the run's own config for that asset (``mfgv onboard`` always sets one; so does a launchpad
config that names the asset), else the variant's saved options
(``resources.data.variants.save_run_config``), else the defaults.

Kept free of the asset modules' imports (they call :func:`config_for_run`), so the field checks
live here and ``mfg_assets.run_configs`` reuses them for the sensors.
"""

from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
from pydantic import ValidationError

from resources.data.variants import VariantRefused, load_run_config, run_config_path, split_partition_key

__all__ = ["SavedRunConfigError", "config_for_run", "refusal", "saved_op_problem"]

C = TypeVar("C", bound=dg.Config)


class SavedRunConfigError(VariantRefused):
    """A variant's saved options cannot be used by this version; the message names the file and the fix."""


def refusal(path: Path, line: str, variant: str, problems: list[str]) -> SavedRunConfigError:
    """The error for a saved options file with ``problems``: the file, what is wrong, and the two fixes."""
    return SavedRunConfigError(
        f"{path}: the saved options of {line}/{variant} do not fit this version ({'; '.join(problems)}); rerun "
        f"`mfgv onboard` for {line}/{variant} to save them again, or delete the file to run it with the defaults"
    )


def saved_op_problem(op: str, body: Any, cls: type[dg.Config] | None) -> str | None:
    """What is wrong with one asset's entry of a saved run config (None: it fits ``cls``)."""
    fields = body.get("config") if isinstance(body, dict) else None
    if cls is None:
        return f"{op!r} is not an asset whose options onboard sets"
    if not isinstance(fields, dict):
        return f"{op}: no 'config' object"
    unknown = sorted(set(fields) - set(cls.model_fields))
    if unknown:
        return f"{op}: no field(s) {', '.join(unknown)} in this version"
    try:
        cls.model_validate(fields)
    except ValidationError as exc:
        return f"{op}: " + "; ".join(f"{'.'.join(map(str, error['loc']))} {error['msg']}" for error in exc.errors())
    return None


def config_for_run(context: dg.AssetExecutionContext, config: C, home: Path) -> C:
    """``config`` when the run set this asset's options, else the variant's saved ones (logged), else ``config``.

    Raises :class:`SavedRunConfigError` (file and fix named) when the saved entry does not fit this
    version: running with the defaults instead would be the silent change this module exists to stop.
    """
    op = context.op_def.name
    if op in ((context.run_config or {}).get("ops") or {}):
        return config
    line, variant = split_partition_key(context.partition_key)
    body = (load_run_config(line, variant, home).get("ops") or {}).get(op)
    if body is None:
        return config
    path = run_config_path(line, variant, home)
    problem = saved_op_problem(op, body, type(config))
    if problem:
        raise refusal(path, line, variant, [problem])
    context.log.info(f"{op}: the run sets no options for it; using {line}/{variant}'s saved onboard options {body['config']} ({path})")
    return type(config).model_validate(body["config"])
