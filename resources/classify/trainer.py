"""Image classification training with timm, sized for a line PC's CPU.

* :class:`TrainSettings` (``resources.models.train_settings``) is the frozen, bounded recipe.
* :func:`train_classifier` fine-tunes a bundled ImageNet backbone by default (or trains from a local
  weights file, a registered model, or from scratch; nothing is ever downloaded) and returns the
  checkpoint as bytes, so the caller stores it in the artifact store.
* :func:`load_inference_model` / :func:`predict_proba` (``resources.classify.model``) rebuild
  the module that export writes to ONNX/OpenVINO.

Why the recipe is what it is (figures in ``BENCHMARKS.md``):

* **Pretrained, partly frozen.** Features learned on ImageNet are what make a few hundred images
  of thin cracks learnable; the stem and first stages stay fixed (weights and BatchNorm statistics)
  so a step costs about half and small data cannot wreck the low-level filters.
* **Class-balanced sampling instead of loss weights.** Each epoch draws as many images as the
  training set holds (at least 256), each with probability ∝ count^-1/2 of its class by default, so a defect type
  with 20 images is seen often without a 30x loss weight that destabilised the first recipe.
* **Best epoch by validation loss.** The kept weights are those of the epoch with the lowest
  validation cross-entropy (ties: higher accuracy). The false-reject rate at zero escapes is what
  the line pays for, and it is logged every epoch and is the search's objective, but on one
  validation split it hinges on the single hardest defect image (on magnetic tile it jumped
  between 25 % and 96 % from one epoch to the next), and the threshold is then calibrated on that
  same split: choosing the epoch by it picked untrained epochs on small sets. The loss moves
  smoothly and uses every image.
* **Refuse a model that learned nothing.** If balanced validation accuracy never got clear of
  chance and the validation loss stayed near ln K, :class:`TrainingDidNotLearn` says so and what
  to try, instead of passing a useless model downstream.
* **Reproducible**: torch, numpy and ``random`` are seeded inside a forked torch RNG; sampling and
  augmentation use their own seeded generators; on a CPU the same seed, data and thread count give
  identical weights.

torch and timm are imported inside the functions (about 6 s together), so importing this module,
and the Dagster definitions that use it, stays cheap.
"""

import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.failpoints import failpoint
from resources.classify.model import load_inference_model, predict_proba, to_float_nchw
from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings
from resources.models.model_init import build_initial_model, checkpoint_bytes, freeze_stages
from resources.settings import apply_offline_switches
from resources.errors import MfgVisionError

if TYPE_CHECKING:
    import torch

__all__ = [
    "EpochRecord",
    "TrainResult",
    "TrainSettings",
    "TrainingDidNotLearn",
    "balanced_sampling_weights",
    "did_not_learn",
    "ema_decay_for",
    "frr_at_zero_escapes",
    "load_inference_model",
    "predict_proba",
    "selection_key",
    "train_classifier",
]

logger = logging.getLogger(__name__)

MIN_SAMPLES_PER_EPOCH = 256


class TrainingDidNotLearn(MfgVisionError, ValueError):
    """Training ended with a model no better than chance; the message says what to try."""


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


def balanced_sampling_weights(labels: np.ndarray, classes: Sequence[str], balance: str) -> np.ndarray:
    """Probability of drawing each training image, summing to 1, for the ``balance`` rule."""
    counts = np.bincount(labels, minlength=len(classes))
    missing = [classes[i] for i in np.flatnonzero(counts == 0)]
    if missing:
        raise ValueError(
            f"training set has no images of class(es) {', '.join(missing)}; every class needs training images "
            "(check the split, or drop the class from the class list)"
        )
    exponent = {"none": 0.0, "sqrt": 0.5, "inverse": 1.0}[balance]
    weights = counts.astype(np.float64) ** -exponent
    per_image = weights[labels]
    return per_image / per_image.sum()


def frr_at_zero_escapes(probabilities: np.ndarray, labels: np.ndarray, good_index: int) -> float | None:
    """Share of good images rejected by the highest threshold that passes no defective image.

    ``None`` when the set lacks good or defective images (the rate is then undefined)."""
    scores = 1.0 - probabilities[:, good_index]
    defect = labels != good_index
    if defect.all() or not defect.any():
        return None
    return float((scores[~defect] >= scores[defect].min()).mean())


def did_not_learn(balanced_accuracy: float, val_loss: float, num_classes: int) -> bool:
    """Balanced accuracy within a tenth of the way from chance to perfect, and loss still near ln K."""
    chance = 1.0 / num_classes
    return balanced_accuracy < chance + 0.1 * (1.0 - chance) and val_loss > 0.9 * math.log(num_classes)


def _import_torch_timm() -> tuple[Any, Any]:
    """torch and timm, imported after the offline switches (timm would otherwise try the hub)."""
    apply_offline_switches()
    import timm
    import torch

    return torch, timm


def _online_augment(batch: "torch.Tensor", generator: "torch.Generator", strength: float) -> "torch.Tensor":
    """Per-image random flips, and with ``strength`` > 0 shifts (up to strength/8 of the side, reflected
    borders) and brightness/contrast changes (up to ±30 % × strength), with tensor ops: a few
    milliseconds a batch where albumentations would cost more than the forward pass on 2 cores."""
    import torch

    n, _, height, width = batch.shape
    flip_h = torch.rand(n, generator=generator) < 0.5
    flip_v = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip_h[:, None, None, None], batch.flip(3), batch)
    batch = torch.where(flip_v[:, None, None, None], batch.flip(2), batch)
    if strength <= 0:
        return batch
    shift = (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6 * strength * 255.0
    contrast = 1.0 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.6 * strength
    mean = batch.mean(dim=(1, 2, 3), keepdim=True)
    batch = ((batch - mean) * contrast + mean + shift).clamp(0.0, 255.0)
    pad = max(1, int(min(height, width) * strength / 8))
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


def _predict(model: "torch.nn.Module", images: np.ndarray, mean: "torch.Tensor", std: "torch.Tensor") -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), 64):
            x = to_float_nchw(images[start : start + 64]).to(mean.device)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(model(x).float(), dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def _validation_figures(probs: np.ndarray, labels: np.ndarray, num_classes: int, good_index: int | None) -> dict[str, Any]:
    predicted = probs.argmax(axis=1)
    loss = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())
    recalls = [float((predicted[labels == k] == k).mean()) for k in range(num_classes) if (labels == k).any()]
    return {
        "val_loss": loss,
        "val_accuracy": float((predicted == labels).mean()),
        "val_balanced_accuracy": float(np.mean(recalls)),
        "val_false_reject_rate": None if good_index is None else frr_at_zero_escapes(probs, labels, good_index),
    }


def ema_decay_for(ema_decay: float, steps_per_epoch: int, epochs: int) -> float:
    """The per-step decay of the weights' moving average: ``ema_decay``, but never reaching back more
    than about three epochs (1 - 1/(3 x steps per epoch)) nor more than a quarter of the run
    (1 - 4/steps in all, so the first step's weights end with about e^-4 of the average). A short run
    or a small set then averages what it learned rather than the weights it started from. At batch 32
    and 12 epochs neither cap binds from 17 steps an epoch (about 540 training images) on."""
    if ema_decay <= 0:
        return 0.0
    steps_per_epoch = max(1, steps_per_epoch)
    return max(0.0, min(ema_decay, 1.0 - 1.0 / (3 * steps_per_epoch), 1.0 - 4.0 / (max(1, epochs) * steps_per_epoch)))


def selection_key(record: EpochRecord) -> tuple[float, ...]:
    """Higher is better: the lowest validation loss, ties broken by accuracy."""
    return (-round(record.val_loss, 6), record.val_accuracy)


def train_classifier(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: Sequence[str],
    settings: TrainSettings,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    good_class: str | None = None,
    require_learning: bool = True,
    device: str = "cpu",
) -> TrainResult:
    """Train a timm classifier on in-memory images and keep the best validation epoch.

    Args:
        train_images, val_images: uint8 arrays N×S×S×3 with S = ``settings.image_size``.
        train_labels, val_labels: integer class indices into ``classes``.
        classes: class names, index = label.
        settings: see :class:`TrainSettings`.
        on_epoch: called with each :class:`EpochRecord` as soon as the epoch ends (progress logging,
            and the search's pruning: an exception raised there stops training and propagates).
        good_class: the class of acceptable parts, for the per-epoch validation false-reject rate.
        require_learning: raise :class:`TrainingDidNotLearn` for a model at chance (default); with
            False the result says ``learned=False`` instead (cross-validation scores such a fold).
        device: ``"cpu"`` or ``"cuda"`` (``resources.devices.resolve_device``). On CUDA the forward
            and backward passes run in mixed precision (bfloat16 autocast); the sampling, the online
            augmentation and the seeds stay on the CPU, so a run's choices do not depend on the card.

    Raises:
        ValueError: arrays of the wrong shape/dtype, labels outside the class list, a class without
            training images, an unknown arch.
        resources.models.model_init.WeightsError: a start (backbone, weights file, registered model) that
            cannot be used.
        TrainingDidNotLearn: the model stayed at chance.
    """
    torch, _ = _import_torch_timm()
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"classes must name at least 2 classes, got {classes}; a classifier needs two or more")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be unique, got {classes}")
    if good_class is not None and good_class not in classes:
        raise ValueError(f"good_class {good_class!r} is not one of {classes}")
    train_labels = np.asarray(train_labels)
    val_labels = np.asarray(val_labels)
    _check_images("train", train_images, train_labels, settings.image_size, len(classes))
    _check_images("val", val_images, val_labels, settings.image_size, len(classes))
    sampling = balanced_sampling_weights(train_labels.astype(np.int64), classes, settings.balance)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            np.random.seed(settings.seed % 2**32)
            random.seed(settings.seed)
            return _train(
                train_images,
                train_labels.astype(np.int64),
                val_images,
                val_labels.astype(np.int64),
                classes,
                settings,
                sampling,
                on_epoch,
                None if good_class is None else classes.index(good_class),
                require_learning,
                device,
            )
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    classes: list[str],
    settings: TrainSettings,
    sampling: np.ndarray,
    on_epoch: Callable[[EpochRecord], None] | None,
    good_index: int | None,
    require_learning: bool,
    device: str = "cpu",
) -> TrainResult:
    """The training loop proper; seeding and thread settings are the caller's job."""
    import contextlib

    import torch

    started = time.perf_counter()
    initial = build_initial_model(settings, len(classes), train_images, classes)
    model = initial.model
    frozen = freeze_stages(model, settings.frozen_stages or 0) if settings.init_source() != "scratch" else []
    mean = torch.tensor(initial.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(initial.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    # channels_last was 10-60 % faster for every candidate measured on this CPU.
    model = model.to(device=device, memory_format=torch.channels_last)
    # Mixed precision on a GPU only: the CPU path stays exactly as it was measured.
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if device == "cuda" else contextlib.nullcontext
    )
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # No weight decay on norms and biases: standard practice, and it matters for small models.
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in trainable if p.ndim > 1], "weight_decay": settings.weight_decay},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=settings.learning_rate,
    )
    batch_size = min(settings.batch_size, len(train_images))
    # An epoch draws as many images as the training set holds, but at least MIN_SAMPLES_PER_EPOCH:
    # on a few dozen images an epoch of one or two steps would make "epochs" meaningless.
    steps_per_epoch = max(1, max(len(train_images), MIN_SAMPLES_PER_EPOCH) // batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=settings.learning_rate,
        total_steps=settings.epochs * steps_per_epoch,
        pct_start=0.15,
        anneal_strategy="cos",
        div_factor=20.0,
        final_div_factor=100.0,
    )
    # Averaging the weights steadies the ranking of the rare hardest images from epoch to epoch, which
    # sets the zero-escape threshold (BENCHMARKS.md: magnetic tile's false rejects fell on every seed).
    decay = ema_decay_for(settings.ema_decay or 0.0, steps_per_epoch, settings.epochs or 1)
    ema = torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True
    ) if decay > 0 else None
    sample_rng = np.random.default_rng(settings.seed)
    augment_generator = torch.Generator().manual_seed(settings.seed)
    logger.info(
        "training %s (%s) on %d images (%d classes, %d px, %s sampling) for %d epochs of %d steps, %d frozen modules",
        settings.timm_arch(),
        initial.provenance["source"],
        len(train_images),
        len(classes),
        settings.image_size,
        settings.balance,
        settings.epochs,
        steps_per_epoch,
        len(frozen),
    )

    history: list[EpochRecord] = []
    best_key: tuple[float, ...] | None = None
    best_state: dict[str, Any] = {}
    best_epoch = 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        for module in frozen:
            module.eval()
        order = sample_rng.choice(len(train_images), size=steps_per_epoch * batch_size, replace=True, p=sampling)
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            x = to_float_nchw(train_images[index])
            if settings.online_augmentation:
                x = _online_augment(x, augment_generator, settings.augment_strength)
            x = ((x.to(device) - mean) / std).contiguous(memory_format=torch.channels_last)
            with autocast():
                loss = criterion(model(x).float(), torch.from_numpy(train_labels[index]).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
            loss_sum += loss.item()
        evaluated = ema.module if ema is not None else model
        figures = _validation_figures(_predict(evaluated, val_images, mean, std), val_labels, len(classes), good_index)
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss_sum / steps_per_epoch,
            learning_rate=float(optimizer.param_groups[0]["lr"]),
            seconds=time.perf_counter() - epoch_start,
            **figures,
        )
        history.append(record)
        key = selection_key(record)
        if best_key is None or key > best_key:
            best_key, best_epoch = key, epoch
            best_state = copy.deepcopy(evaluated.state_dict())
        if on_epoch is not None:
            on_epoch(record)
        failpoint("train.after_epoch")

    best = history[best_epoch - 1]
    learned = not did_not_learn(max(r.val_balanced_accuracy for r in history), history[-1].val_loss, len(classes))
    if not learned and require_learning:
        raise TrainingDidNotLearn(
            f"training did not learn: best balanced validation accuracy {max(r.val_balanced_accuracy for r in history):.3f} "
            f"is at chance (1/{len(classes)} = {1 / len(classes):.3f}) and validation loss {history[-1].val_loss:.3f} "
            f"did not fall below 0.9 x ln {len(classes)} = {0.9 * math.log(len(classes)):.3f} after {settings.epochs} epochs. "
            "Try: check that the labels are right (mfgv lineage shows them), a larger --image-size if defects are "
            "small, more --epochs, a lower learning rate, or a bundled --backbone if training from scratch"
        )
    train_seconds = time.perf_counter() - started
    # Stored contiguous (NCHW) so the checkpoint loads the same into any memory format.
    state_dict = {k.removeprefix("module."): v.contiguous().cpu() for k, v in best_state.items() if k != "n_averaged"}
    checkpoint = checkpoint_bytes(
        {
            "state_dict": state_dict,
            "arch": settings.timm_arch(),
            "classes": classes,
            "image_size": settings.image_size,
            "resize": settings.resize,
            "mean": initial.mean,
            "std": initial.std,
            "settings": settings.model_dump(mode="json"),
            "init": initial.provenance,
        }
    )
    logger.info(
        "trained in %.1f s; best epoch %d of %d (val accuracy %.4f, val FRR at zero escapes %s)",
        train_seconds,
        best_epoch,
        settings.epochs,
        best.val_accuracy,
        "n/a" if best.val_false_reject_rate is None else f"{best.val_false_reject_rate:.4f}",
    )
    return TrainResult(
        checkpoint=checkpoint,
        history=history,
        best_epoch=best_epoch,
        train_seconds=train_seconds,
        init=initial.provenance,
        learned=learned,
    )
