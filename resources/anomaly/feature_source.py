"""Where a detector's features come from: a bundled backbone, a local weights file, or a plant's classifier.

PatchCore has no training step: its quality is the quality of the backbone's features (a random
backbone scores chance on magnetic tile). Three sources are offered, as the classifier offers them:

- a bundled ImageNet backbone (``--backbone``, the default; nothing is downloaded);
- a user's local weights file for a timm architecture (``--arch wide_resnet50_2 --pretrained-weights
  FILE``), e.g. the WideResNet-50 the PatchCore paper uses, where the plant has it on disk;
- the body of a classifier the plant registered for another variant (``--init-from VERSION``): features
  tuned to its own surfaces and defects.

Both non-bundled sources are loaded and checked by the classifier's start code
(:mod:`resources.models.model_init`), so a missing file, a file of another architecture or an
unreadable checkpoint fails with the same message in both tasks.
"""

from typing import TYPE_CHECKING, Any

import numpy as np

from resources.models.backbones import get_spec
from resources.models.model_init import registered_start
from resources.models.train_settings import SCRATCH

if TYPE_CHECKING:
    import torch

    from resources.anomaly.detector import AnomalySettings

__all__ = ["feature_source_hashes", "pretrained_backbone", "resolve_feature_source"]


def resolve_feature_source(
    *,
    backbone: str,
    arch: str | None,
    pretrained_weights: str | None,
    init_from: str | None,
    registry: Any,
    store: Any,
) -> dict[str, Any]:
    """The detector settings' source fields (backbone, arch, pretrained_weights, init_checkpoint) for the options.

    ``--init-from`` resolves to the registered classifier's checkpoint and arch; ``--pretrained-weights``
    takes ``--arch`` or else the bundled backbone's architecture. Raises ``WeightsError`` (unknown
    version, not a classifier) or ``BackboneError`` (unknown backbone name).
    """
    if init_from:
        start = registered_start(init_from, registry, store)
        return {"backbone": SCRATCH, "arch": start["arch"], "init_checkpoint": start["init_checkpoint"]}
    if pretrained_weights:
        arch = arch or (get_spec(backbone).timm_arch if backbone != SCRATCH else None)
        return {"backbone": SCRATCH, "arch": arch, "pretrained_weights": pretrained_weights}
    # an architecture alone is refused by the settings: it has no learned features
    return {"backbone": backbone, **({"arch": arch} if arch else {})}


def pretrained_backbone(settings: "AnomalySettings") -> tuple["torch.nn.Module", list[float], list[float], dict[str, Any]]:
    """Model (no head), normalisation (0..255 pixel scale) and provenance of the settings' source."""
    from resources.models.backbones import load_backbone
    from resources.models.model_init import build_initial_model
    from resources.models.train_settings import TrainSettings

    source = settings.weights_source()
    if source == "backbone":
        spec = get_spec(settings.backbone)
        model, provenance = load_backbone(settings.backbone, num_classes=0)
        mean, std = [255.0 * m for m in spec.mean], [255.0 * v for v in spec.std]
        return model, mean, std, {"source": source, **provenance.model_dump()}
    start = TrainSettings(
        backbone=SCRATCH,
        arch=settings.timm_arch(),
        pretrained_weights=settings.pretrained_weights,
        init_checkpoint=settings.init_checkpoint,
    )
    initial = build_initial_model(start, num_classes=0, train_images=np.zeros((1, 8, 8, 3), np.uint8))
    return initial.model, list(initial.mean), list(initial.std), initial.provenance


def feature_source_hashes(provenance: dict[str, Any]) -> dict[str, str]:
    """The content hash of what the features came from, keyed for lineage: the bundled weights file,
    the user's weights file, or the registered classifier's checkpoint."""
    source = provenance.get("source")
    if source == "backbone" and provenance.get("sha256"):
        return {f"weights:{provenance.get('name')}": provenance["sha256"]}
    if source == "weights_file":
        return {f"weights:{provenance['file']}": provenance["sha256"]}
    if source == "registered_model":
        return {"checkpoint:init_from": provenance["checkpoint_sha256"]}
    return {}
