"""Names both sides store as folder names and compare: lines, variants, devices, model versions, labels.

One rule each, so a name the platform registers is a name the server stores and the device accepts
(they drifted before: the agent allowed ``+`` in a version the server refused, and the server
allowed a line starting with ``-`` that the platform's landing zone refused).
"""

import re

from edge_sync.errors import EdgeSyncError

__all__ = [
    "LABEL",
    "MODEL_VERSION",
    "NAME",
    "InvalidName",
    "check_label",
    "check_model_version",
    "check_name",
]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
"""Lines, variants and device ids: 1-63 letters, digits, '_' or '-', starting with a letter or digit."""

MODEL_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""Registered model versions (``<line>-<variant>-v<n>``): up to 128 letters, digits, '.', '_' or '-'."""

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
"""Class names a device may send as feedback labels (they become landing-zone folder names)."""

_NAME_RULE = "1 to 63 letters, digits, '_' or '-', starting with a letter or digit"
_VERSION_RULE = "up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"


class InvalidName(EdgeSyncError, ValueError):
    """A line, variant, device or model-version name breaks its rule."""


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a valid line/variant/device name, else :class:`InvalidName` naming ``kind``."""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise InvalidName(f"{kind} {value!r} is not a valid name: use {_NAME_RULE} (it becomes a folder name)")
    return value


def check_model_version(value: object) -> str:
    """``value`` if it is a valid model-version name, else :class:`InvalidName`."""
    if not isinstance(value, str) or not MODEL_VERSION.fullmatch(value):
        raise InvalidName(f"model_version {value!r} is not valid: use {_VERSION_RULE}")
    return value


def check_label(value: object) -> str:
    """``value`` if it is a class name usable as a folder name, else :class:`InvalidName`."""
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise InvalidName(
            f"label {value!r} is not a valid class name: use up to 128 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )
    return value
