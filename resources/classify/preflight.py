"""The classifier's preflight: refuse a start that cannot work before any data lands."""

from typing import Any

from resources.preflight import PreflightError

__all__ = ["check_start_options"]


def check_start_options(
    *,
    backbone: str | None,
    arch: str | None,
    pretrained_weights: str | None,
    init_from: str | None,
    num_classes: int,
    task_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Refuse an unknown or missing backbone, an unusable weights file and a registered model that
    does not exist or does not fit, by building the starting model once; returns the recipe fields."""
    from resources.models.backbones import BackboneError, get_spec, weights_path
    from resources.models.train_settings import SCRATCH, TrainSettings
    from resources.models.model_init import WeightsError, check_start, registered_start

    if task_settings:
        raise PreflightError("--anomaly-settings / --task-settings: for --task anomaly or detect only; drop it for a classifier")
    if pretrained_weights and init_from:
        raise PreflightError("--pretrained-weights and --init-from both given; start from one of them")
    if init_from and (arch or backbone):
        option = "--arch" if arch else "--backbone"
        raise PreflightError(
            f"{option} cannot be used with --init-from (the registered model fixes the architecture and the weights); "
            f"drop {option}"
        )
    if arch and backbone is None:
        backbone = SCRATCH  # --arch alone: that timm architecture, from scratch or from --pretrained-weights
    fields: dict[str, Any] = {"backbone": backbone, "arch": arch, "pretrained_weights": pretrained_weights}
    try:
        if backbone not in (None, SCRATCH) and not (pretrained_weights or init_from):
            weights_path(get_spec(backbone))
        if init_from:
            from resources.artifact_store import ArtifactStore
            from resources.registry import ModelRegistry

            start = registered_start(init_from, ModelRegistry(), ArtifactStore())
            fields.update(init_checkpoint=start["init_checkpoint"], arch=start["arch"])
        settings = TrainSettings.model_validate({k: v for k, v in fields.items() if v is not None})
        check_start(settings, num_classes)
    except (BackboneError, WeightsError) as exc:
        raise PreflightError(str(exc)) from exc
    except ValueError as exc:  # pydantic's ValidationError: a setting out of bounds
        raise PreflightError(f"training options are invalid: {exc}") from exc
    return {k: v for k, v in fields.items() if k in ("backbone", "arch", "pretrained_weights")}
