"""The classifier trainer the classification engine calls: train on arrays, predict with a checkpoint.

:class:`Trainer` is the seam the search, the folds and the fit use, so a test can hand the engine a
small fake one (``ClassifyEngine(trainer=...)``) and run the graph's plumbing without training.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings

__all__ = ["ClassificationTrainer", "Trainer"]


class Trainer(ABC):
    """What the search, the folds and the fit need: train on arrays, predict with a checkpoint."""

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
    """Trains timm image classifiers with ``num_threads`` CPU threads on ``device`` ('cpu' or 'cuda')."""

    def __init__(self, num_threads: int = 2, device: str = "cpu") -> None:
        self.num_threads = num_threads
        self.device = device

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
            device=self.device,
        )

    def predict(self, checkpoint: bytes, images: np.ndarray) -> np.ndarray:
        """Class probabilities of a checkpoint's model (what the device will compute)."""
        from resources.classify.model import load_inference_model, predict_proba

        return predict_proba(load_inference_model(checkpoint), images)
