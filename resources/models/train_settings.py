"""What a classification training run is told, and what it reports back: settings and records.

Kept apart from the training loop so the Dagster config, the hyperparameter search and the report
can use them without importing torch.

Defaults depend on where the weights start (:meth:`TrainSettings.init_source`), because fine-tuning
an ImageNet backbone and training from random weights want different recipes; a field left ``None``
is filled in when the settings are built, so what is recorded in lineage is always the concrete
value that ran. The fine-tuning defaults were measured on the magnetic-tile and NEU benchmarks and
the sample line (``BENCHMARKS.md``); the from-scratch ones are the NEU recipe of the first release.
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_BACKBONE",
    "SCRATCH",
    "EpochRecord",
    "InitSource",
    "TrainResult",
    "TrainSettings",
]

DEFAULT_BACKBONE = "mobilenetv2_100"
SCRATCH = "none"
DEFAULT_SCRATCH_ARCH = "resnet10t"

InitSource = Literal["backbone", "weights_file", "registered_model", "scratch"]

# Recipe defaults by init source: (epochs, learning rate, weight decay, frozen stages, weights' average).
# The moving average of the weights was measured for fine-tuning only (BENCHMARKS.md); from random
# weights at a high learning rate the averaged weights and BatchNorm statistics can lag far behind.
_FINE_TUNE = {"epochs": 12, "learning_rate": 1e-3, "weight_decay": 0.01, "frozen_stages": 2, "ema_decay": 0.98}
_FROM_SCRATCH = {"epochs": 30, "learning_rate": 3e-3, "weight_decay": 0.05, "frozen_stages": 0, "ema_decay": 0.0}


class TrainSettings(BaseModel):
    """How to train a classifier; every field bounded so a typo fails before any image is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: str = Field(
        DEFAULT_BACKBONE,
        min_length=1,
        description=(
            "bundled ImageNet backbone to fine-tune (resources.models.backbones.CATALOGUE), or 'none' to train "
            "`arch` from scratch or from `pretrained_weights`"
        ),
    )
    arch: str | None = Field(
        None,
        description="timm architecture; set from the backbone, the registered model or resnet10t when None",
    )
    pretrained_weights: str | None = Field(
        None, description="LOCAL weights file (state dict or checkpoint) for `arch`; nothing is downloaded"
    )
    init_checkpoint: str | None = Field(
        None, description="checkpoint file of a registered model to start from (mfgv onboard --init-from)"
    )
    image_size: int = Field(224, ge=16, le=1024, description="side in pixels of the square model input")
    resize: Literal["letterbox", "squash"] = Field(
        "letterbox", description="how images were fitted to the input (recorded in the checkpoint for the device)"
    )
    epochs: int | None = Field(None, ge=1, le=1000, description="passes over the (re-sampled) training set")
    batch_size: int = Field(32, ge=2, le=1024, description="images per optimisation step")
    learning_rate: float | None = Field(None, gt=0.0, le=1.0, description="peak AdamW learning rate (one-cycle)")
    weight_decay: float | None = Field(None, ge=0.0, le=1.0, description="AdamW decoupled weight decay")
    frozen_stages: int | None = Field(
        None,
        ge=0,
        le=16,
        description=(
            "stem plus this many first stages kept fixed (weights and BatchNorm statistics) when starting "
            "from pretrained weights: halves the CPU cost per step and keeps the ImageNet edges and textures"
        ),
    )
    balance: Literal["sqrt", "inverse", "none"] = Field(
        "sqrt",
        description=(
            "class-balanced sampling: draw each image with probability ∝ count^-1/2 of its class (sqrt), "
            "∝ 1/count (inverse, every class equally often) or uniformly (none)"
        ),
    )
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0, description="label smoothing of the training loss")
    online_augmentation: bool = Field(True, description="random flips, shifts, brightness and contrast per batch")
    augment_strength: float = Field(
        0.5, ge=0.0, le=1.0, description="scale of the online shifts, brightness and contrast changes (0: flips only)"
    )
    test_time_flips: bool = Field(
        True,
        description=(
            "the deployed model averages its probabilities over the image and its three flips (4x the "
            "inference cost); the validation report, the exports and the device all run it. The per-epoch "
            "validation that picks the epoch runs the plain model, 4x cheaper"
        ),
    )
    ema_decay: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description=(
            "per-step decay of the exponential moving average of the weights (default 0.98 fine-tuning, 0 from "
            "scratch), which is what each epoch "
            "validates and the run keeps (0: off). Capped so that it reaches back at most about three epochs "
            "and a quarter of the run (resources.classify.trainer.ema_decay_for), not to the starting weights"
        ),
    )
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds weight init, sampling and augmentation")
    num_threads: int = Field(2, ge=1, le=256, description="torch intra-op CPU threads")

    @model_validator(mode="before")
    @classmethod
    def _fill_recipe_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        source = _init_source(data)
        recipe = _FROM_SCRATCH if source == "scratch" else _FINE_TUNE
        for key, value in recipe.items():
            if data.get(key) is None:
                data[key] = value
        return data

    @model_validator(mode="after")
    def _one_start(self) -> "TrainSettings":
        if self.pretrained_weights and self.init_checkpoint:
            raise ValueError(
                "pretrained_weights and init_checkpoint both set; start from a local weights file (--pretrained-weights) "
                "or from a registered model (--init-from), not both"
            )
        return self

    def init_source(self) -> InitSource:
        return _init_source(self.model_dump())

    def timm_arch(self) -> str:
        """The architecture to build (the registered model's own arch is set by the caller into ``arch``)."""
        if self.arch:
            return self.arch
        if self.backbone != SCRATCH:
            from resources.models.backbones import get_spec

            return get_spec(self.backbone).timm_arch
        return DEFAULT_SCRATCH_ARCH


def _init_source(data: dict[str, Any]) -> InitSource:
    if data.get("init_checkpoint"):
        return "registered_model"
    if data.get("pretrained_weights"):
        return "weights_file"
    if data.get("backbone", DEFAULT_BACKBONE) != SCRATCH:
        return "backbone"
    return "scratch"


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures; the training asset logs one line per record and the search prunes on them.

    ``val_false_reject_rate`` is the validation false-reject rate at the highest threshold that passes
    no defective validation image (``None`` without a good class), the figure the line cares about.
    """

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    val_balanced_accuracy: float
    val_false_reject_rate: float | None
    learning_rate: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """The trained checkpoint (bytes of ``torch.save``) and how training went.

    ``init`` says where the weights started (source, and the backbone's package and sha256 or the
    file's sha256), for lineage.
    """

    checkpoint: bytes
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float
    init: dict[str, Any]
    learned: bool = True  # False only when the caller allowed a model at chance (see train_classifier)
