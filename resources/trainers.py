"""Trainer resources: the abstract :class:`Trainer` the training assets annotate, one implementation per task.

The engines live in their task's package (``resources.classify.trainer``); a resource holds the
machine-level settings (threads). Assets depend on :class:`Trainer` only, so a task plugs in its own
trainer and a test binds a small fake one under the same ``trainer`` key.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
from pydantic import Field

if TYPE_CHECKING:
    from resources.anomaly.detector import AnomalySettings, FitResult
    from resources.classify.train_settings import EpochRecord, TrainResult, TrainSettings

__all__ = ["AnomalyTrainer", "ClassificationTrainer", "Trainer"]


class Trainer(dg.ConfigurableResource, ABC):
    """What the search, the folds and the training asset need: train on arrays, predict with a checkpoint."""

    @abstractmethod
    def train(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        classes: Sequence[str],
        settings: "TrainSettings",
        on_epoch: "Callable[[EpochRecord], None] | None" = None,
        good_class: str | None = None,
        require_learning: bool = True,
    ) -> "TrainResult":
        """Train on the arrays with ``settings``; the checkpoint is bytes the artifact store keeps."""

    @abstractmethod
    def predict(self, checkpoint: bytes, images: np.ndarray) -> np.ndarray:
        """Per-image outputs of a checkpoint's model (for classification: class probabilities)."""


class ClassificationTrainer(Trainer):
    """Trains timm image classifiers on the CPU (or a GPU when torch sees one)."""

    num_threads: int = Field(2, ge=1, le=256, description="torch CPU threads used for training")

    def train(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        classes: Sequence[str],
        settings: "TrainSettings",
        on_epoch: "Callable[[EpochRecord], None] | None" = None,
        good_class: str | None = None,
        require_learning: bool = True,
    ) -> "TrainResult":
        from resources.classify.trainer import train_classifier

        settings = settings.model_copy(update={"num_threads": self.num_threads})
        return train_classifier(
            train_images,
            train_labels,
            val_images,
            val_labels,
            classes,
            settings,
            on_epoch=on_epoch,
            good_class=good_class,
            require_learning=require_learning,
        )

    def predict(self, checkpoint: bytes, images: np.ndarray) -> np.ndarray:
        """Class probabilities of a checkpoint's model (what the device will compute)."""
        from resources.classify.model import load_inference_model, predict_proba

        return predict_proba(load_inference_model(checkpoint), images)


class AnomalyTrainer(dg.ConfigurableResource):
    """Fits the anomaly task's detector on good images (``resources.anomaly``): a feature memory
    bank, not gradient training, so it has its own resource and settings."""

    num_threads: int = Field(2, ge=1, le=256, description="torch CPU threads used for fitting and scoring")

    def fit(self, good_images: np.ndarray, settings: "AnomalySettings") -> "FitResult":
        from resources.anomaly.detector import fit_detector

        return fit_detector(good_images, settings.model_copy(update={"num_threads": self.num_threads}))

    def score(self, checkpoint: bytes, images: np.ndarray, keep_maps: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        """Anomaly maps (or None) and image scores of a checkpoint's detector."""
        import torch

        from resources.anomaly.detector import load_detector, score_images

        previous = torch.get_num_threads()
        torch.set_num_threads(self.num_threads)
        try:
            return score_images(load_detector(checkpoint), images, keep_maps=keep_maps)
        finally:
            torch.set_num_threads(previous)
