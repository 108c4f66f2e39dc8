"""Train an object detector with ultralytics, offline, seeded, inside a run folder.

:func:`train_detector` takes a ``data.yaml`` written by :func:`resources.detect.yolo_data.write_yolo_dataset`
and :class:`DetectorSettings`, trains from a model yaml (never a ``.pt`` name, which downloads), and
returns the best checkpoint as bytes with the per-epoch history. Everything ultralytics writes
(``args.yaml``, ``results.csv``, ``weights/``) lands in ``run_dir``; settings, fonts and caches sit
under ``MFG_HOME`` (:mod:`resources.detect.yolo_env`).

Choices that are not ultralytics' defaults, and why:

* ``plots=False``: plotting needs fonts and time and nobody looks at PNGs in a pipeline;
* ``workers=0``: no dataloader processes (ultralytics uses none on CPU anyway; on a plant PC with 2
  cores they only compete with the training thread);
* ``amp`` only on CUDA (its check downloads a model otherwise; there is no CPU AMP benefit);
* ``deterministic=True`` with ``seed``: two runs with the same settings give the same checkpoint on CPU;
* ``lr0`` set with ``optimizer='auto'`` switches to AdamW, because ``auto`` silently ignores ``lr0``.

The checkpoint is ultralytics' own ``best.pt`` (EMA weights in FP16, pickled model, optimizer
stripped): self-contained, loadable with ultralytics installed, see :mod:`resources.detect.yolo_predict`.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from resources.detect.yolo_env import prepare_ultralytics
from resources.detect.yolo_errors import DetectorConfigError, DetectorTrainingError
from resources.errors import MfgVisionError
from resources.detect.yolo_models import (
    DEFAULT_MODEL,
    MOBILENETV2_DETECTOR,
    load_mobilenetv2_body,
    resolve_model,
    write_mobilenetv2_yaml,
)

if TYPE_CHECKING:
    from resources.models.backbones import BackboneProvenance

__all__ = ["DetectorSettings", "DetectorTrainResult", "EpochCallback", "train_detector"]

logger = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, float]], None]

_METRIC_NAMES = {
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "map50",
    "metrics/mAP50-95(B)": "map50_95",
}


class DetectorSettings(BaseModel):
    """How to train a detector; every field is read by :func:`train_detector`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="model yaml shipped in ultralytics (yolo26n.yaml, yolo11s.yaml, …) "
                       f"or {MOBILENETV2_DETECTOR!r} (MobileNetV2 body with bundled ImageNet weights)")
    epochs: int = Field(100, ge=1, le=2000, description="training epochs")
    batch: int = Field(16, ge=1, le=1024, description="images per batch")
    image_size: int = Field(320, ge=32, le=4096, description="square training/inference size in pixels, a multiple of 32")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of initialisation, augmentation and data order")
    lr0: float | None = Field(None, gt=0.0, le=1.0, description="initial learning rate; None lets ultralytics choose")
    optimizer: Literal["auto", "SGD", "AdamW"] = Field("auto", description="'auto' picks by run length; lr0 needs SGD/AdamW")
    patience: int = Field(50, ge=1, le=2000, description="epochs without val fitness gain before stopping")
    num_threads: int = Field(2, ge=1, le=256, description="torch CPU threads during training")
    device: Literal["cpu", "cuda"] = Field("cpu", description="where to train; AMP is used only on cuda")

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"image_size must be a multiple of 32 (the detector's largest stride), got {value}; "
                             f"use {max(32, round(value / 32) * 32)}")
        return value

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        return resolve_model(value)

    @model_validator(mode="before")
    @classmethod
    def _optimizer_for_lr0(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("lr0") is not None and data.get("optimizer", "auto") == "auto":
            return {**data, "optimizer": "AdamW"}
        return data


@dataclass(frozen=True)
class DetectorTrainResult:
    """What a training produced: the best checkpoint and how it got there."""

    checkpoint: bytes
    """ultralytics ``best.pt`` bytes (self-contained; load with ``yolo_predict.load_detector``)."""
    history: tuple[dict[str, float], ...]
    """one record per epoch: ``epoch``, ``train/*`` and ``val/*`` losses, precision, recall, map50, map50_95, seconds."""
    best_epoch: int
    """1-based epoch whose weights are in ``checkpoint`` (best val fitness)."""
    seconds: float
    model: str
    class_names: tuple[str, ...]
    image_size: int
    backbone: "BackboneProvenance | None" = None
    """the bundled weights the body started from (MobileNetV2 detector only), for lineage."""


def train_detector(
    data_yaml: Path,
    run_dir: Path,
    settings: DetectorSettings,
    on_epoch: EpochCallback | None = None,
) -> DetectorTrainResult:
    """Train ``settings.model`` on ``data_yaml``; ultralytics writes only under ``run_dir``.

    ``on_epoch`` receives each epoch's record as it ends (the same dicts as ``history``), e.g. to log
    a line or report progress; an exception it raises stops the training (a platform error as it is,
    anything else as a :class:`DetectorTrainingError`). Raises :class:`DetectorConfigError` for a missing
    data.yaml, a run folder that already holds a training, or missing CUDA; :class:`DetectorTrainingError`
    when ultralytics fails or writes no checkpoint.
    """
    data_yaml, run_dir = Path(data_yaml), Path(run_dir)
    if not data_yaml.is_file():
        raise DetectorConfigError(f"{data_yaml}: data.yaml not found; write it with write_yolo_dataset()")
    prepare_ultralytics()
    import torch
    import yaml

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise DetectorConfigError("device='cuda' but torch sees no CUDA device; use device='cpu'")
    class_names = _class_names(data_yaml)
    if (run_dir / "train").exists():
        raise DetectorConfigError(f"{run_dir / 'train'} exists from an earlier training; pass a new run folder "
                                  "(a stale best.pt must never be taken for this run's)")
    run_dir.mkdir(parents=True, exist_ok=True)
    from ultralytics import YOLO

    model_source = settings.model
    provenance: list[BackboneProvenance] = []
    if settings.model == MOBILENETV2_DETECTOR:
        model_source = str(write_mobilenetv2_yaml(run_dir / f"{MOBILENETV2_DETECTOR}.yaml", len(class_names)))
    try:
        detector = YOLO(model_source, task="detect")
    except Exception as exc:  # ultralytics raises many types while parsing a yaml
        raise DetectorTrainingError(f"model {settings.model}: ultralytics could not build it: {type(exc).__name__}: {exc}") from exc
    history: list[dict[str, float]] = []
    state = {"epoch_open": False, "started": time.perf_counter()}

    def epoch_started(trainer: Any) -> None:
        state["epoch_open"] = True
        state["started"] = time.perf_counter()

    def epoch_ended(trainer: Any) -> None:
        if not state["epoch_open"]:  # the final re-validation of best.pt fires this event again
            return
        state["epoch_open"] = False
        record = _epoch_record(trainer, time.perf_counter() - state["started"])
        history.append(record)
        logger.info("detector epoch %d/%d: map50 %.3f, map50-95 %.3f (%.1f s)", record["epoch"], settings.epochs,
                    record.get("map50", float("nan")), record.get("map50_95", float("nan")), record["seconds"])
        if on_epoch is not None:
            on_epoch(dict(record))

    def load_body(trainer: Any) -> None:
        # After ultralytics built the model, its optimizer and EMA copy: load the body in place (the
        # optimizer holds the same tensors) and give the EMA the same start.
        model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
        provenance.append(load_mobilenetv2_body(model))
        trainer.ema.ema.load_state_dict(model.state_dict())

    detector.add_callback("on_train_epoch_start", epoch_started)
    detector.add_callback("on_fit_epoch_end", epoch_ended)
    if settings.model == MOBILENETV2_DETECTOR:
        detector.add_callback("on_pretrain_routine_end", load_body)
    arguments = _train_arguments(settings, data_yaml, run_dir)
    # ultralytics switches torch to deterministic algorithms process-wide; give the process back as it was.
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.deterministic)
    torch.set_num_threads(settings.num_threads)
    started = time.perf_counter()
    try:
        detector.train(**arguments)
    except MfgVisionError:
        raise  # ours, e.g. from on_epoch or the backbone loader: already says what to do
    except Exception as exc:  # ultralytics, torch and the callback raise many unrelated types
        raise DetectorTrainingError(
            f"training {settings.model} on {data_yaml} failed after {len(history)} epoch(s): {type(exc).__name__}: {exc}; "
            f"see {run_dir / 'train'}"
        ) from exc
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.backends.cudnn.deterministic = saved[3]
    seconds = time.perf_counter() - started
    best = run_dir / "train" / "weights" / "best.pt"
    if not best.is_file():
        raise DetectorTrainingError(f"training {settings.model} wrote no {best}; see {run_dir / 'train'}")
    trainer = detector.trainer
    # EarlyStopping records the 1-based epoch of the best fitness.
    best_epoch = int(getattr(getattr(trainer, "stopper", None), "best_epoch", 0)) or len(history)
    (run_dir / "history.yaml").write_text(yaml.safe_dump(history, sort_keys=False), encoding="utf-8")
    return DetectorTrainResult(
        checkpoint=best.read_bytes(),
        history=tuple(history),
        best_epoch=best_epoch,
        seconds=seconds,
        model=settings.model,
        class_names=class_names,
        image_size=settings.image_size,
        backbone=provenance[0] if provenance else None,
    )


def _train_arguments(settings: DetectorSettings, data_yaml: Path, run_dir: Path) -> dict[str, Any]:
    """ultralytics' train() arguments; see the module docstring for the non-default ones."""
    cuda = settings.device == "cuda"
    arguments: dict[str, Any] = {
        "data": str(data_yaml),
        "epochs": settings.epochs,
        "batch": settings.batch,
        "imgsz": settings.image_size,
        "seed": settings.seed,
        "deterministic": True,
        "patience": settings.patience,
        "optimizer": settings.optimizer,
        "device": 0 if cuda else "cpu",
        "amp": cuda,
        "plots": False,
        "workers": 0,
        "project": str(run_dir),
        "name": "train",
        "exist_ok": True,
        "pretrained": False,
        "val": True,
        "save": True,
        "cache": False,
        "verbose": False,
    }
    if settings.lr0 is not None:
        arguments["lr0"] = settings.lr0
    return arguments


def _epoch_record(trainer: Any, seconds: float) -> dict[str, float]:
    record: dict[str, float] = {"epoch": float(trainer.epoch + 1)}
    losses = trainer.label_loss_items(trainer.tloss, prefix="train") if trainer.tloss is not None else {}
    record.update({key: float(value) for key, value in losses.items()})
    for key, value in (trainer.metrics or {}).items():
        record[_METRIC_NAMES.get(key, key)] = float(value)
    if trainer.fitness is not None:
        record["fitness"] = float(trainer.fitness)
    record["seconds"] = float(seconds)
    return record


def _class_names(data_yaml: Path) -> tuple[str, ...]:
    import yaml

    try:
        names = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))["names"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise DetectorConfigError(f"{data_yaml}: cannot read 'names' ({exc}); write it with write_yolo_dataset()") from exc
    if isinstance(names, dict):
        return tuple(str(names[key]) for key in sorted(names, key=int))
    return tuple(str(name) for name in names)
