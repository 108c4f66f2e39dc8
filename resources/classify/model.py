"""The deployable classifier: rebuilt from a checkpoint, raw pixels in, probabilities out.

This exact module is what export writes to ONNX/OpenVINO: it takes float32 N×3×H×W pixels in 0..255
RGB, normalises them inside (two tensor ops on registered buffers, traced into the graph) and
returns softmax probabilities, so the device feeds camera pixels as they are and cannot get the
normalisation wrong. It knows nothing of how the weights were trained.
"""

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from resources.settings import apply_offline_switches

if TYPE_CHECKING:
    import torch

__all__ = ["CHECKPOINT_KEYS", "load_inference_model", "predict_proba", "to_float_nchw"]

CHECKPOINT_KEYS: tuple[str, ...] = ("state_dict", "arch", "classes", "image_size", "mean", "std", "settings")


def to_float_nchw(images: np.ndarray) -> "torch.Tensor":
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()


def _inference_module_class() -> type:
    """Define the deployable wrapper lazily, because subclassing ``torch.nn.Module`` needs torch."""
    import torch

    class NormalisedClassifier(torch.nn.Module):
        """Raw 0..255 RGB float32 N×3×H×W in, softmax probabilities N×C out.

        With ``flips`` the probabilities are the mean over the image and its horizontal, vertical
        and double flips (the flips training augments with): four views of the same part, inside
        the graph, so the device runs the same averaged model the report validated.
        """

        def __init__(self, net: torch.nn.Module, mean: Sequence[float], std: Sequence[float], flips: bool = False) -> None:
            super().__init__()
            self.net = net
            self.flips = flips
            self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = (pixels - self.mean) / self.std
            if not self.flips:
                return torch.softmax(self.net(x), dim=1)
            n = x.shape[0]
            views = torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3)], dim=0)
            probabilities = torch.softmax(self.net(views), dim=1)
            return probabilities.reshape(4, n, -1).mean(dim=0)

    return NormalisedClassifier


def load_inference_model(checkpoint: bytes | Path) -> "torch.nn.Module":
    """Rebuild the deployable module from a checkpoint (bytes from ``TrainResult`` or a file).

    The module is in eval mode and carries ``classes``, ``image_size`` and ``resize`` (how images
    were fitted to the input: ``letterbox`` or, for checkpoints from before letterboxing,
    ``squash``); it averages over flips when the settings asked for ``test_time_flips``.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: bytes or a file that are not a checkpoint written by the trainer.
    """
    apply_offline_switches()
    import timm
    import torch

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
    flips = bool(payload.get("settings", {}).get("test_time_flips", False))
    module = _inference_module_class()(net, payload["mean"], payload["std"], flips)
    module.classes = list(payload["classes"])
    module.image_size = int(payload["image_size"])
    module.resize = str(payload.get("resize", "squash"))
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
            outputs.append(model(to_float_nchw(images[start : start + batch_size])).numpy())
    if not outputs:
        return np.zeros((0, len(getattr(model, "classes", []))), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
