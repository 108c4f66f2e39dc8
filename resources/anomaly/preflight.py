"""The anomaly detector's preflight: build its feature extractor once before any data lands."""

from typing import Any

from resources.preflight import PreflightError

__all__ = ["check_detector_start"]


def check_detector_start(
    *,
    backbone: str | None,
    arch: str | None,
    pretrained_weights: str | None,
    init_from: str | None,
    task_settings: dict[str, Any],
) -> dict[str, Any]:
    """Refuse an anomaly detector that cannot be built (unknown backbone, an architecture without
    weights, a missing or foreign weights file, a registered model that does not exist or is not a
    classifier, bad ``--anomaly-settings``) by building its feature extractor once; returns its provenance."""
    from pydantic import ValidationError

    from resources.anomaly.detector import GRAPH_OWNED_SETTINGS, AnomalyError, AnomalySettings, check_backbone
    from resources.anomaly.feature_source import resolve_feature_source
    from resources.artifact_store import ArtifactStore
    from resources.models.backbones import BackboneError
    from resources.models.model_init import WeightsError
    from resources.models.train_settings import DEFAULT_BACKBONE
    from resources.registry import ModelRegistry

    if pretrained_weights and init_from:
        raise PreflightError("--pretrained-weights and --init-from both given; take the features from one of them")
    ignored = [
        option
        for option, given in (
            ("--arch", init_from and arch),
            ("--backbone", init_from and backbone),
            ("--backbone", pretrained_weights and arch and backbone),
        )
        if given
    ]
    if ignored:
        source = "--init-from (the registered model fixes the architecture)" if init_from else "--arch with --pretrained-weights"
        raise PreflightError(f"{ignored[0]} cannot be used with {source}; drop {ignored[0]}")
    fixed = sorted(set(task_settings) & set(GRAPH_OWNED_SETTINGS))
    if fixed:
        raise PreflightError(
            f"--anomaly-settings sets {', '.join(fixed)}: use --backbone, --arch, --pretrained-weights, --init-from, "
            "--image-size and --seed for those"
        )
    try:
        source = resolve_feature_source(
            backbone=backbone or DEFAULT_BACKBONE,
            arch=arch,
            pretrained_weights=pretrained_weights,
            init_from=init_from,
            registry=ModelRegistry() if init_from else None,
            store=ArtifactStore() if init_from else None,
        )
        settings = AnomalySettings.model_validate({**source, **task_settings})
    except (BackboneError, WeightsError) as exc:
        raise PreflightError(str(exc)) from exc
    except ValidationError as exc:
        raise PreflightError(f"--anomaly-settings or the backbone options are invalid: {exc}") from exc
    try:
        return check_backbone(settings)
    except AnomalyError as exc:
        raise PreflightError(str(exc)) from exc
