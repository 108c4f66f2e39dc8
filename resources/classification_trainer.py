"""Image classification training with timm, sized for a line PC's CPU.

The pure pieces (settings, records, the deployable module) are separate from the training loop so
that export and validation can load a checkpoint without knowing how it was trained:

* :class:`TrainSettings` is the frozen, bounded configuration; its defaults are the recipe measured
  on the NEU steel-surface dataset (see ``bench/neu_recipe_search.py``).
* :func:`train_classifier` trains from scratch (or from a *local* weights file; nothing is ever
  downloaded) and returns the checkpoint as bytes, so the caller stores it in the artifact store.
* :func:`load_inference_model` returns the module that is exported to ONNX/OpenVINO: it takes raw
  0..255 RGB pixels and returns probabilities, so normalisation travels inside the graph and the
  device cannot get it wrong.

torch and timm are imported inside the functions (about 6 s together), so importing this module,
and the Dagster definitions that use it, stays cheap.
"""

import copy
import io
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from resources.settings import apply_offline_switches

if TYPE_CHECKING:
    import torch

__all__ = [
    "EpochRecord",
    "TrainResult",
    "TrainSettings",
    "load_inference_model",
    "predict_proba",
    "train_classifier",
]

logger = logging.getLogger(__name__)

CHECKPOINT_KEYS: tuple[str, ...] = ("state_dict", "arch", "classes", "image_size", "mean", "std", "settings")


class TrainSettings(BaseModel):
    """How to train a classifier. Defaults are the recipe measured on NEU steel-surface defects.

    Measured 2026-11-27 with ``bench/neu_recipe_search.py`` on the project's 2-core x86_64 CPU:
    NEU-DET's 1,800 images (6 classes, resized 200→128 px), stratified 60/20/20 split (seed 0),
    trained from scratch. resnet10t at 128 px, 30 epochs of batch 32, AdamW one-cycle peak 3e-3,
    weight decay 0.05, label smoothing 0.1, online flips/shifts: test accuracy 100 % (360/360) with
    seed 0 and 99.7 % (359/360) with seed 1, in 288 s (9.5 s/epoch) on an otherwise idle machine.
    Why these: in the script's per-epoch estimates at 128 px, resnet10t was about 1.3x faster than
    resnet18 and 1.5x faster than efficientnet_b0, and it already met the 99.5 % target with half
    of the 10-minute budget to spare (smaller sizes and archs were timed but not fully trained).
    Other datasets may need more epochs or a larger image size; every field is bounded so a typo
    fails at configuration time rather than an hour into training.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: str = Field(
        default="resnet10t",
        min_length=1,
        description="timm model name, created with pretrained=False (e.g. resnet10t, resnet18, mobilenetv3_small_100).",
    )
    image_size: int = Field(
        default=128, ge=16, le=1024, description="Side in pixels of the square images the model is trained on."
    )
    epochs: int = Field(default=30, ge=1, le=1000, description="Passes over the training set.")
    batch_size: int = Field(default=32, ge=2, le=1024, description="Images per optimisation step.")
    learning_rate: float = Field(
        default=3e-3,
        gt=0.0,
        le=1.0,
        description="Peak learning rate of AdamW under a one-cycle (warm-up, cosine) schedule.",
    )
    weight_decay: float = Field(default=0.05, ge=0.0, le=1.0, description="AdamW decoupled weight decay.")
    seed: int = Field(
        default=0,
        ge=0,
        le=2**32 - 1,
        description="Seeds weight init, shuffling and augmentation (torch, numpy, random).",
    )
    pretrained_weights: str | None = Field(
        default=None,
        description=(
            "Path to a LOCAL weights file (a state dict or a timm/torch checkpoint) to start from; "
            "None trains from scratch. Nothing is ever downloaded."
        ),
    )
    num_threads: int = Field(default=2, ge=1, le=256, description="torch intra-op CPU threads used while training.")
    label_smoothing: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Label smoothing of the training cross-entropy."
    )
    online_augmentation: bool = Field(
        default=True,
        description="Random horizontal/vertical flips and small shifts applied on the fly to every training batch.",
    )


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's figures; the training asset logs one line per record."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """The trained checkpoint (bytes of ``torch.save``) and how training went.

    ``checkpoint`` holds ``state_dict`` (the best validation epoch's weights), ``arch``,
    ``classes``, ``image_size``, ``mean`` and ``std`` (0..255 pixel scale) and ``settings``.
    """

    checkpoint: bytes
    history: list[EpochRecord]
    best_epoch: int
    train_seconds: float


def _import_torch_timm() -> tuple[Any, Any]:
    """torch and timm, imported after the offline switches (timm would otherwise try the hub)."""
    apply_offline_switches()
    import timm
    import torch

    return torch, timm


def _check_images(name: str, images: np.ndarray, labels: np.ndarray, image_size: int, num_classes: int) -> None:
    """Reject arrays that would otherwise fail deep inside torch with an unhelpful message."""
    if images.ndim != 4 or images.shape[1:] != (image_size, image_size, 3):
        raise ValueError(
            f"{name}: images must be N×{image_size}×{image_size}×3 (settings.image_size={image_size}), "
            f"got shape {images.shape}; resize to the training size first"
        )
    if images.dtype != np.uint8:
        raise ValueError(f"{name}: images must be uint8 (0..255), got {images.dtype}; convert before training")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"{name}: labels must have shape ({len(images)},) to match the images, got {labels.shape}; "
            "pass one class index per image"
        )
    if len(images) == 0:
        raise ValueError(f"{name}: no images; a split must hold at least one image per class")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name}: labels must be integer class indices, got dtype {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"{name}: labels must lie in 0..{num_classes - 1} (one per class name), got {low}..{high}; "
            "check the class list"
        )


def _class_weights(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Inverse-frequency weights normalised so that a balanced set gets weight 1 for every class."""
    counts = np.bincount(labels, minlength=len(classes))
    missing = [classes[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise ValueError(
            f"training set has no images of class(es) {', '.join(missing)}; every class needs training images "
            "(check the split, or drop the class from the class list)"
        )
    return (len(labels) / (len(classes) * counts)).astype(np.float32)


def _load_pretrained(model: "torch.nn.Module", path_text: str) -> None:
    """Load a local weights file non-strictly, skipping tensors whose shapes differ (the head)."""
    torch, _ = _import_torch_timm()
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained_weights {str(path)!r} does not exist; it must be a local file (a state dict or a timm "
            "checkpoint), nothing is downloaded: copy the weights onto this machine or set pretrained_weights=None"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for unreadable files
        raise ValueError(
            f"pretrained_weights {str(path)!r} could not be read as torch weights ({exc}); "
            "save it with torch.save(model.state_dict(), path)"
        ) from exc
    if isinstance(loaded, dict):
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise ValueError(
            f"pretrained_weights {str(path)!r} holds a {type(loaded).__name__}, expected a state dict; "
            "save it with torch.save(model.state_dict(), path)"
        )
    # Checkpoints saved from DataParallel or from our own inference wrapper carry a prefix.
    state = {}
    for key, value in loaded.items():
        for prefix in ("module.", "net."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    mismatched = sorted(k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape))
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in usable)
    if not usable:
        raise ValueError(
            f"pretrained_weights {str(path)!r}: none of its {len(state)} tensors match the model's names and shapes; "
            "is it for a different arch?"
        )
    model.load_state_dict(usable, strict=False)
    logger.info(
        "loaded %d of %d tensors from %s; skipped for shape mismatch (new head): %s; not in model: %d; "
        "left at initialisation: %s",
        len(usable),
        len(own),
        path,
        mismatched or "none",
        len(unexpected),
        missing or "none",
    )


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split an index order into batches; a trailing batch of one joins the previous one (BatchNorm
    cannot normalise a single image in training mode)."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate([batches[-2], batches[-1]])
        batches.pop()
    return batches


def _online_augment(batch: "torch.Tensor", generator: "torch.Generator") -> "torch.Tensor":
    """Cheap per-image random flips and shifts (up to 1/16 of the side, reflected borders).

    Done on the uint8→float batch with tensor ops, so it costs a few milliseconds per batch where
    albumentations would cost more than the forward pass on a 2-core CPU.
    """
    import torch

    n, _, height, width = batch.shape
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip_h[:, None, None, None], batch.flip(3), batch)
    batch = torch.where(flip_v[:, None, None, None], batch.flip(2), batch)
    pad = max(1, min(height, width) // 16)
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


def _to_float_nchw(images: np.ndarray) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _evaluate(
    model: "torch.nn.Module",
    images: np.ndarray,
    labels: np.ndarray,
    mean: "torch.Tensor",
    std: "torch.Tensor",
    batch_size: int,
) -> tuple[float, float]:
    """Plain (unweighted, unsmoothed) cross-entropy and accuracy, so epochs compare on the true task."""
    import torch

    model.eval()
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = ((_to_float_nchw(images[start : start + batch_size]) - mean) / std).contiguous(
                memory_format=torch.channels_last
            )
            y = torch.from_numpy(labels[start : start + batch_size].astype(np.int64))
            logits = model(x)
            total_loss += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return total_loss / len(images), correct / len(images)


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    settings: TrainSettings,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a timm classifier on in-memory images and keep the best validation epoch.

    Why these choices:

    * **Class imbalance** is handled with a class-weighted cross-entropy (inverse class frequency in
      the training set, normalised to 1 for a balanced set), because defect classes are rare on a
      line and an unweighted model learns to answer "good". Combine with
      ``resources.augmentation.augment_images(balance_classes=True)`` for very skewed sets.
    * **Best epoch, not last**: the returned weights are those of the epoch with the highest
      validation accuracy (ties: lower validation loss), so a late overfitting epoch never ships.
    * **Reproducible**: torch, numpy and python ``random`` are seeded from ``settings.seed`` inside a
      forked torch RNG (the caller's global torch RNG is left as it was), shuffling and online
      augmentation draw from their own seeded generators, and training runs with
      ``torch.set_num_threads(settings.num_threads)`` (restored afterwards). On a CPU the same seed,
      data and thread count give identical weights.
    * Normalisation statistics (per channel, 0..255 scale) come from the training images when
      training from scratch, and from the arch's pretrained config when starting from weights.
    * Optimiser: AdamW with a one-cycle schedule (20 % warm-up, cosine decay), which converged
      fastest from scratch in the NEU recipe search.

    Args:
        train_images, val_images: uint8 arrays N×S×S×3 with S = ``settings.image_size``.
        train_labels, val_labels: integer class indices into ``classes``.
        classes: class names, index = label.
        settings: see :class:`TrainSettings`.
        on_epoch: called with each :class:`EpochRecord` as soon as the epoch ends (progress logging).

    Raises:
        ValueError: arrays of the wrong shape/dtype, labels outside the class list, a class without
            training images, an unknown arch, or an unreadable weights file.
        FileNotFoundError: ``settings.pretrained_weights`` is not an existing local file.
    """
    torch, timm = _import_torch_timm()
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"classes must name at least 2 classes, got {classes}; a classifier needs two or more")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique, got {classes}")
    train_labels = np.asarray(train_labels)
    val_labels = np.asarray(val_labels)
    _check_images("train", train_images, train_labels, settings.image_size, len(classes))
    _check_images("val", val_images, val_labels, settings.image_size, len(classes))
    if settings.pretrained_weights is not None and not Path(settings.pretrained_weights).expanduser().is_file():
        raise FileNotFoundError(
            f"pretrained_weights {settings.pretrained_weights!r} does not exist; it must be a local file (a state "
            "dict or a timm checkpoint), nothing is downloaded: copy the weights onto this machine or set "
            "pretrained_weights=None"
        )
    if not timm.is_model(settings.arch):
        raise ValueError(
            f"arch {settings.arch!r} is not a timm model; pick one of timm.list_models(), e.g. resnet10t, resnet18, "
            "mobilenetv3_small_100, efficientnet_b0"
        )
    weights = _class_weights(train_labels.astype(np.int64), classes)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            np.random.seed(settings.seed % 2**32)
            random.seed(settings.seed)
            return _train(
                torch,
                timm,
                train_images,
                train_labels.astype(np.int64),
                val_images,
                val_labels.astype(np.int64),
                classes,
                settings,
                weights,
                on_epoch,
            )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    torch: Any,
    timm: Any,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: list[str],
    settings: TrainSettings,
    class_weights: np.ndarray,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> TrainResult:
    """The training loop proper; seeding and thread settings are the caller's job."""
    started = time.perf_counter()
    model = timm.create_model(settings.arch, pretrained=False, num_classes=len(classes))
    if settings.pretrained_weights is not None:
        _load_pretrained(model, settings.pretrained_weights)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean_values = [255.0 * m for m in cfg.get("mean", (0.485, 0.456, 0.406))]
        std_values = [255.0 * s for s in cfg.get("std", (0.229, 0.224, 0.225))]
    else:
        # Channel statistics of the training pixels; sampled to bound the cost on big sets.
        sample = train_images[:: max(1, len(train_images) // 2000)].reshape(-1, 3).astype(np.float64)
        mean_values = sample.mean(axis=0).tolist()
        std_values = np.maximum(sample.std(axis=0), 1.0).tolist()
    mean = torch.tensor(mean_values, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std_values, dtype=torch.float32).view(1, 3, 1, 1)
    # channels_last was 10-30 % faster for the NEU candidates on this CPU.
    model = model.to(memory_format=torch.channels_last)

    criterion = torch.nn.CrossEntropyLoss(
        weight=torch.from_numpy(class_weights), label_smoothing=settings.label_smoothing
    )
    # No weight decay on norms and biases: standard practice, and it matters for tiny models.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.learning_rate,
    )
    shuffle_rng = np.random.default_rng(settings.seed)
    augment_generator = torch.Generator().manual_seed(settings.seed)
    steps_per_epoch = len(_batches(np.arange(len(train_images)), settings.batch_size))
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.learning_rate,
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=0.2,
        anneal_strategy="cos",
        div_factor=25.0,
        final_div_factor=1e3,
    )
    logger.info(
        "training %s from %s on %d images (%d classes, %d px) for %d epochs, %d steps/epoch, %d threads",
        settings.arch,
        settings.pretrained_weights or "scratch",
        len(train_images),
        len(classes),
        settings.image_size,
        settings.epochs,
        steps_per_epoch,
        torch.get_num_threads(),
    )

    history: list[EpochRecord] = []
    best_key: tuple[float, float] | None = None
    best_state: dict[str, Any] = {}
    best_epoch = 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, seen = 0.0, 0
        for batch_index in _batches(shuffle_rng.permutation(len(train_images)), settings.batch_size):
            x = _to_float_nchw(train_images[batch_index])
            if settings.online_augmentation:
                x = _online_augment(x, augment_generator)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(train_labels[batch_index])
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(batch_index)
            seen += len(batch_index)
        val_loss, val_accuracy = _evaluate(model, val_images, val_labels, mean, std, max(64, settings.batch_size))
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss_sum / seen,
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            seconds=time.perf_counter() - epoch_start,
        )
        history.append(record)
        key = (val_accuracy, -val_loss)
        if best_key is None or key > best_key:
            best_key, best_epoch = key, epoch
            best_state = copy.deepcopy(model.state_dict())
        logger.debug("epoch %d: %s", epoch, record)
        if on_epoch is not None:
            on_epoch(record)

    train_seconds = time.perf_counter() - started
    # Stored contiguous (NCHW) so the checkpoint loads the same into any memory format.
    state_dict = {k: v.contiguous() for k, v in best_state.items()}
    buffer = io.BytesIO()
    torch.save(
        {
            "state_dict": state_dict,
            "arch": settings.arch,
            "classes": classes,
            "image_size": settings.image_size,
            "mean": mean_values,
            "std": std_values,
            "settings": settings.model_dump(mode="json"),
        },
        buffer,
    )
    logger.info(
        "trained %s in %.1f s; best epoch %d of %d (val accuracy %.4f)",
        settings.arch,
        train_seconds,
        best_epoch,
        settings.epochs,
        history[best_epoch - 1].val_accuracy,
    )
    return TrainResult(
        checkpoint=buffer.getvalue(), history=history, best_epoch=best_epoch, train_seconds=train_seconds
    )


def _inference_module_class() -> type:
    """Define the deployable wrapper lazily, because subclassing ``torch.nn.Module`` needs torch."""
    import torch

    class NormalisedClassifier(torch.nn.Module):
        """Raw 0..255 RGB float32 N×3×H×W in, softmax probabilities N×C out.

        Normalisation is two tensor ops on registered buffers, so it is traced into ONNX/OpenVINO
        graphs and the device feeds camera pixels as they are.
        """

        def __init__(self, net: torch.nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net((pixels - self.mean) / self.std), dim=1)

    return NormalisedClassifier


def load_inference_model(checkpoint: bytes | Path) -> "torch.nn.Module":
    """Rebuild the deployable module from a checkpoint (bytes from :class:`TrainResult` or a file).

    The module is in eval mode and takes float32 N×3×H×W pixels in 0..255 RGB (H = W =
    ``module.image_size``), normalises them inside, and returns softmax probabilities N×C in the
    order of ``module.classes``. This exact module is what export writes to ONNX/OpenVINO.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: bytes or a file that are not a checkpoint written by :func:`train_classifier`.
    """
    torch, timm = _import_torch_timm()
    if isinstance(checkpoint, (bytes, bytearray)):
        source: Any = io.BytesIO(checkpoint)
        name = f"<{len(checkpoint)} bytes>"
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist; pass the file train_classifier wrote")
        source, name = path, str(path)
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and runtime errors all mean "not a checkpoint"
        raise ValueError(
            f"checkpoint {name} could not be read by torch.load ({exc}); pass a TrainResult.checkpoint or its file"
        ) from exc
    if not isinstance(payload, dict) or any(key not in payload for key in CHECKPOINT_KEYS):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"checkpoint {name} must hold keys {list(CHECKPOINT_KEYS)}, found {found}; "
            "it was not written by train_classifier"
        )
    net = timm.create_model(payload["arch"], pretrained=False, num_classes=len(payload["classes"]))
    net.load_state_dict(payload["state_dict"])
    module = _inference_module_class()(net, payload["mean"], payload["std"])
    module.classes = list(payload["classes"])
    module.image_size = int(payload["image_size"])
    return module.eval()


def predict_proba(model: "torch.nn.Module", images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (float32 N×C) for uint8 N×H×W×3 RGB images, in batches.

    ``model`` is the module from :func:`load_inference_model`; the images must already be at its
    training size (``model.image_size``).
    """
    import torch

    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be a uint8 N×H×W×3 array, got {images.dtype} {images.shape}; convert before predicting"
        )
    expected = getattr(model, "image_size", None)
    if expected is not None and images.shape[1:3] != (expected, expected):
        raise ValueError(
            f"images are {images.shape[1]}×{images.shape[2]} but the model was trained at {expected}×{expected}; "
            "resize them first"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outputs.append(model(_to_float_nchw(images[start : start + batch_size])).numpy())
    if not outputs:
        return np.zeros((0, len(getattr(model, "classes", []))), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
