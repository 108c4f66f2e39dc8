"""The refusal every task's preflight raises: an option cannot work with this dataset or installation."""

from resources.errors import MfgVisionError

__all__ = ["PreflightError"]


class PreflightError(MfgVisionError, ValueError):
    """An option cannot work with this dataset or this installation; the message says why."""
