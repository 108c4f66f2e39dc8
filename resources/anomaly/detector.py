"""Fitting and scoring a PatchCore detector: good images in, a self-contained checkpoint out.

Fitting has no gradient step: the backbone's features (``feature_source``) of the good training images are
collected patch by patch and reduced to a memory bank by the greedy coreset. Two numbers bound the
cost (stated in :class:`AnomalySettings`): the bank keeps ``coreset_ratio`` of the patches and never
more than ``max_bank`` of them, so the device's search cost is capped; fitting time and memory grow
linearly with the number of images (one pass to embed, one pass over the candidates per bank entry).

The checkpoint holds the truncated backbone's weights, the bank and the settings, so scoring,
export and the device need neither the wheel the backbone came from nor the training images.
"""

import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from resources.classify.model import to_float_nchw
from resources.errors import MfgVisionError

if TYPE_CHECKING:
    import torch

    from resources.anomaly.network import PatchCoreNet

__all__ = [
    "AnomalyError",
    "AnomalySettings",
    "FitResult",
    "check_backbone",
    "fit_detector",
    "load_detector",
    "score_images",
]

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "patchcore"
SUSPICIOUS_Z = 5.0
"""A training image whose leave-own-out score is this many robust standard deviations (MAD × 1.4826)
above the median is flagged: good parts vary, but not that much."""
SUSPICIOUS_LISTED = 5


GRAPH_OWNED_SETTINGS = ("backbone", "arch", "pretrained_weights", "init_checkpoint", "image_size", "resize", "seed")
"""Settings the graph sets from the options every task has (--backbone, --arch, --pretrained-weights,
--init-from, --image-size, the augmented set's resize, --seed), so the data and the detector agree;
not overridable per detector."""

WeightsSource = Literal["backbone", "weights_file", "registered_model"]


class AnomalyError(MfgVisionError, ValueError):
    """The detector cannot be fitted or loaded with what it was given; the message says what to change."""


class AnomalySettings(BaseModel):
    """Everything that decides a fitted detector; recorded whole in lineage and the checkpoint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = Field(
        "mobilenetv2_100",
        description="bundled ImageNet backbone (resources.models.backbones), or 'none' with a weights file or a registered model",
    )
    arch: str | None = Field(
        None, description="timm architecture of pretrained_weights (default: the backbone's), set from init_checkpoint"
    )
    pretrained_weights: str | None = Field(
        None, description="LOCAL weights file (e.g. a WideResNet-50 state dict) for arch; nothing is downloaded"
    )
    init_checkpoint: str | None = Field(
        None, description="checkpoint of a registered classifier whose body gives the features (mfgv onboard --init-from)"
    )
    feature_levels: tuple[int, ...] = Field(
        (3, 4),
        description=(
            "backbone stages whose features describe a patch (3, 4: strides 16 and 32). PatchCore takes "
            "WideResNet-50's stride-8 and -16 stages, 512 and 1024 channels deep; the bundled light backbones "
            "have 32-40 channels at stride 8, so the stages of comparable depth are one further down. Measured "
            "(BENCHMARKS.md): against stages 2, 3 they rank images as well or better on every magnetic-tile seed "
            "(median AUROC 0.937 against 0.933) and better on 2 of 3 generated lines, fit 3x and score 2x faster, "
            "but localise worse (PRO 0.68 against 0.77): choose (2, 3) where the map matters more than speed"
        ),
    )
    image_size: int = Field(224, ge=32, le=1024, description="square model input, pixels")
    resize: str = Field("letterbox", description="how an image is fitted to the input (edge_sync.contract.imaging)")
    neighbourhood: Literal[1, 3, 5, 7, 9] = Field(3, description="side of the patch aggregation window (odd)")
    coreset_ratio: float = Field(0.1, gt=0.0, le=1.0, description="share of the training patches the bank keeps")
    max_bank: int = Field(10_000, ge=1, le=200_000, description="cap on memory-bank entries (device search cost)")
    projection_dim: int = Field(64, ge=8, le=4096, description="random-projection dimensions for coreset distances")
    map_sigma: float = Field(4.0, gt=0.0, le=32.0, description="Gaussian smoothing of the anomaly map, input pixels")
    top_share: float = Field(
        0.05, gt=0.0, le=1.0, description="image score = mean of this share of the map's highest pixels"
    )
    seed: int = Field(0, ge=0, description="seeds the coreset's first pick and its projection")
    batch_size: int = Field(16, ge=1, le=512)
    num_threads: int = Field(2, ge=1, le=256, description="torch CPU threads")

    @model_validator(mode="after")
    def _features_are_learned(self) -> "AnomalySettings":
        if self.pretrained_weights and self.init_checkpoint:
            raise ValueError(
                "pretrained_weights and init_checkpoint both set; take the features from a local weights file "
                "(--pretrained-weights) or from a registered model (--init-from), not both"
            )
        if self.backbone == "none" and self.weights_source() == "backbone":
            raise ValueError(
                "backbone 'none' with neither a weights file nor a registered model: a detector needs learned "
                "features (a random backbone scores chance, image AUROC 0.52 on magnetic tile); pass --pretrained-weights, "
                "--init-from or a bundled --backbone"
            )
        if self.arch and self.weights_source() == "backbone":
            raise ValueError(
                f"arch {self.arch!r} without a weights file: a detector needs learned features; pass "
                "--pretrained-weights with --arch, or a bundled --backbone alone"
            )
        if self.pretrained_weights and self.backbone == "none" and not self.arch:
            raise ValueError("pretrained_weights without arch: pass --arch, the timm architecture the file is for")
        return self

    def weights_source(self) -> WeightsSource:
        """Where the backbone's weights come from: the bundled wheel, a local file, or a registered classifier."""
        if self.init_checkpoint:
            return "registered_model"
        if self.pretrained_weights:
            return "weights_file"
        return "backbone"

    def timm_arch(self) -> str:
        """The timm architecture the backbone is built as."""
        if self.arch:
            return self.arch
        from resources.models.backbones import get_spec

        return get_spec(self.backbone).timm_arch

    def backbone_label(self) -> str:
        """A short name of the feature extractor for model names (``patchcore/<label>``)."""
        source = self.weights_source()
        return self.backbone if source == "backbone" else f"{self.timm_arch()}-{'file' if source == 'weights_file' else 'registered'}"


@dataclass(frozen=True)
class FitResult:
    """A fitted detector and the facts lineage records about the fit."""

    checkpoint: bytes
    settings: AnomalySettings
    backbone: dict[str, Any]
    n_images: int
    n_patches: int
    bank_size: int
    fit_seconds: float
    suspicious_training_images: list[dict[str, Any]]
    """The training images that look least like the others (index, leave-own-out score, robust z),
    most suspicious first; ``flagged`` when z > :data:`SUSPICIOUS_Z` (probably a defect among the good)."""
    contamination_check: str
    """How the training images were checked for defects among them, or why they could not be."""


def _check_images(images: np.ndarray, image_size: int, what: str) -> None:
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise AnomalyError(f"{what} must be a uint8 N×H×W×3 array, got {images.dtype} {images.shape}")
    if images.shape[1:3] != (image_size, image_size):
        raise AnomalyError(
            f"{what} are {images.shape[1]}×{images.shape[2]} but the detector works at {image_size}×{image_size}; "
            "load them with that size"
        )


def _build_net(settings: AnomalySettings, pretrained: bool) -> tuple["PatchCoreNet", dict[str, Any]]:
    """The detector's network; with ``pretrained`` its backbone weights and provenance from the source.

    Without it (loading a checkpoint) only the architecture is built: the checkpoint carries the
    weights and the normalisation, so the weights file or the registered model need not exist any more.
    """
    import timm

    from resources.anomaly.network import BackboneBody, PatchCoreNet
    from resources.models.backbones import BackboneError
    from resources.models.model_init import WeightsError

    try:
        if pretrained:
            from resources.anomaly.feature_source import pretrained_backbone

            model, mean, std, backbone = pretrained_backbone(settings)
        else:
            model = timm.create_model(settings.timm_arch(), pretrained=False, num_classes=0)
            mean, std, backbone = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], {}
        body = BackboneBody(model, settings.feature_levels)
    except (BackboneError, WeightsError, ValueError, RuntimeError) as exc:  # RuntimeError: timm's unknown model
        raise AnomalyError(f"anomaly detector backbone: {exc}") from exc
    net = PatchCoreNet(body, mean, std, settings.neighbourhood, settings.map_sigma, top_share=settings.top_share)
    return net.eval(), backbone


def check_backbone(settings: AnomalySettings) -> dict[str, Any]:
    """Build the detector's network once and run one blank image through it, to refuse a bad backbone
    (unknown name, missing or foreign weights file, unusable feature levels, stages that are not
    feature maps) before any image is read; returns its provenance."""
    import torch

    net, provenance = _build_net(settings, pretrained=True)
    size = settings.image_size
    try:
        with torch.inference_mode():
            outputs = net.body(torch.zeros(1, 3, size, size))
    except RuntimeError as exc:
        raise AnomalyError(f"anomaly detector backbone {settings.timm_arch()}: a {size} px image does not pass ({exc})") from exc
    shapes = [tuple(output.shape) for output in outputs]
    if any(len(shape) != 4 or shape[1] != channels for shape, channels in zip(shapes, net.body.channels, strict=True)):
        raise AnomalyError(
            f"anomaly detector backbone {settings.timm_arch()}: its stages give {shapes}, not channels-first feature "
            f"maps of {net.body.channels} channels (a vision transformer?); pick a CNN such as wide_resnet50_2"
        )
    return provenance


def fit_detector(images: np.ndarray, settings: AnomalySettings) -> FitResult:
    """Fit on good images (uint8 N×S×S×3 at ``settings.image_size``); N may be as small as one."""
    import torch

    from resources.anomaly.coreset import bank_size, greedy_coreset

    _check_images(images, settings.image_size, "good training images")
    if len(images) == 0:
        raise AnomalyError("no good training images: the detector learns what good looks like from them; add some")
    started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    try:
        net, backbone = _build_net(settings, pretrained=True)
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), settings.batch_size):
                embedding = net.embed(to_float_nchw(images[start : start + settings.batch_size]))
                chunks.append(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]).clone())
            candidates = torch.cat(chunks)
            del chunks
            size = bank_size(candidates.shape[0], settings.coreset_ratio, settings.max_bank)
            chosen = greedy_coreset(candidates, size, settings.seed, settings.projection_dim)
            net.set_memory_bank(candidates[chosen].clone())
        n_patches = int(candidates.shape[0])
        del candidates
        owners = chosen // (n_patches // len(images))
        if len(torch.unique(owners)) >= 2:
            suspicious = _suspicious_training_images(_leave_own_out_scores(net, images, owners))
            contamination_check = f"leave-own-out scores of {len(images)} training images; flagged when robust z > {SUSPICIOUS_Z:g}"
        else:
            suspicious = []
            contamination_check = "not run: the memory bank holds patches of fewer than two training images"
            logger.info("training-set check %s", contamination_check)
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - started
    logger.info("fitted PatchCore on %d images: bank %d of %d patches in %.1f s", len(images), size, n_patches, seconds)
    buffer = io.BytesIO()
    torch.save(
        {"kind": CHECKPOINT_KIND, "settings": settings.model_dump(mode="json"), "backbone": backbone, "state_dict": net.state_dict()},
        buffer,
    )
    return FitResult(
        checkpoint=buffer.getvalue(),
        settings=settings,
        backbone=backbone,
        n_images=len(images),
        n_patches=n_patches,
        bank_size=size,
        fit_seconds=seconds,
        suspicious_training_images=suspicious,
        contamination_check=contamination_check,
    )


def _leave_own_out_scores(net: "PatchCoreNet", images: np.ndarray, owners: "torch.Tensor") -> np.ndarray:
    """Each training image's score against the bank entries taken from the *other* images.

    The coreset picks outlying patches first, so a defect hidden among the good images is in the bank,
    put there by its own image alone: scored against everything else, that image stands out. The
    bias: where the coreset kept one entry for a patch that all images share, the image that owns it
    loses its nearest match too and scores a little higher; hence a robust z well above the spread
    (:data:`SUSPICIOUS_Z`) before an image is flagged, and a list for a person to look at, not a removal.
    """
    import torch

    scores = []
    with torch.inference_mode():
        for start in range(0, len(images), 4):
            embedding = net.embed(to_float_nchw(images[start : start + 4]))
            n, d, h, w = embedding.shape
            patches = embedding.permute(0, 2, 3, 1).reshape(n, h * w, d)
            for offset in range(n):
                # another image always owns some entries (the caller checked), so a distance stays finite
                nearest = net.nearest_distances(patches[offset], excluded=owners == start + offset).reshape(1, 1, h, w)
                scores.append(float(net.image_score(net.smooth(nearest, tuple(images.shape[1:3])))[0]))
    return np.asarray(scores, dtype=np.float64)


def _suspicious_training_images(scores: np.ndarray) -> list[dict[str, Any]]:
    median = float(np.median(scores))
    spread = 1.4826 * float(np.median(np.abs(scores - median)))
    order = np.argsort(-scores, kind="stable")[:SUSPICIOUS_LISTED]
    listed = []
    for index in order:
        z = (scores[index] - median) / spread if spread > 0 else 0.0
        listed.append({"index": int(index), "score": float(scores[index]), "robust_z": float(z), "flagged": bool(z > SUSPICIOUS_Z)})
    flagged = [entry for entry in listed if entry["flagged"]]
    if flagged:  # the asset names them by their files (resources.anomaly.steps); here only their positions are known
        logger.info(
            "%d training image(s) look unlike the other good parts (robust z > %.0f): positions %s",
            len(flagged), SUSPICIOUS_Z, [entry["index"] for entry in flagged],
        )
    return listed


def load_detector(checkpoint: bytes | Path) -> "PatchCoreNet":
    """The fitted :class:`PatchCoreNet` of a checkpoint, in eval mode, with ``settings`` and ``backbone`` attached."""
    import torch

    name = f"<{len(checkpoint)} bytes>" if isinstance(checkpoint, (bytes, bytearray)) else str(checkpoint)
    try:
        source = io.BytesIO(checkpoint) if isinstance(checkpoint, (bytes, bytearray)) else Path(checkpoint)
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # pickle, zip and runtime errors all mean "not a checkpoint"
        raise AnomalyError(f"anomaly checkpoint {name} cannot be read by torch.load ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise AnomalyError(f"{name} is not a PatchCore checkpoint written by fit_detector")
    settings = AnomalySettings.model_validate(payload["settings"])
    net, _ = _build_net(settings, pretrained=False)
    state = _current_keys(payload["state_dict"])
    net.set_memory_bank(state["memory_bank"])
    net.load_state_dict(state, strict=True)
    net.settings = settings
    net.backbone = payload["backbone"]
    return net.eval()


def _current_keys(state: dict[str, Any]) -> dict[str, Any]:
    """Checkpoints written before the body used timm's ``FeatureListNet`` (``body.blocks.4.``) in its
    layout (``body.features.blocks_4.``), so a registered detector stays loadable."""
    import re

    renamed = {}
    for key, value in state.items():
        if key.startswith("body.") and not key.startswith("body.features."):
            key = "body.features." + re.sub(r"^blocks\.(\d+)\.", r"blocks_\1.", key[len("body."):])
        renamed[key] = value
    return renamed


def score_images(
    net: "PatchCoreNet", images: np.ndarray, batch_size: int = 8, keep_maps: bool = True
) -> tuple[np.ndarray | None, np.ndarray]:
    """Anomaly maps (float32 N×S×S, or None without ``keep_maps``) and image scores (float32 N)."""
    import torch

    settings: AnomalySettings = net.settings
    _check_images(images, settings.image_size, "images to score")
    maps, scores = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            anomaly_map, score = net(to_float_nchw(images[start : start + batch_size]))
            scores.append(score.numpy())
            if keep_maps:
                maps.append(anomaly_map[:, 0].numpy())
    size = settings.image_size
    all_scores = np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
    if not keep_maps:
        return None, all_scores
    return (np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, size, size), np.float32)), all_scores
