"""Errors of the object-detection model layer (ultralytics training, prediction, metrics, export).

One class per failure mode, each deriving from :class:`resources.errors.MfgVisionError` (so the CLI
prints the message instead of a traceback) and from the built-in class callers already catch. Every
message names the object, what was expected, what was found and what to do next.
"""

from resources.errors import MfgVisionError

__all__ = [
    "DetectorConfigError",
    "DetectorDataError",
    "DetectorError",
    "DetectorExportError",
    "DetectorTrainingError",
]


class DetectorError(MfgVisionError):
    """Base of every error the detection model layer raises on purpose."""


class DetectorConfigError(DetectorError, ValueError):
    """A setting cannot be used: an unknown model yaml, an image size that is not a multiple of 32,
    a device that is not there, a checkpoint that is not a detector."""


class DetectorDataError(DetectorError, ValueError):
    """Images, boxes or predictions do not fit: wrong dtype or shape, a class id without a name,
    split names ultralytics does not know, predictions and ground truth of different lengths."""


class DetectorTrainingError(DetectorError, RuntimeError):
    """ultralytics failed while training or wrote no checkpoint; the message carries its error."""


class DetectorExportError(DetectorError, RuntimeError):
    """An export or conversion failed, or an exported graph does not reproduce the torch model."""
