"""Which torch device a fit runs on: ``auto`` (CUDA when torch sees a card), ``cpu`` or ``cuda``.

A plant with a GPU workstation trains there without a flag; a run asked for ``cuda`` on a machine
without one fails before any work, naming what torch sees. The device is recorded in lineage.
"""

from typing import Literal

from resources.errors import MfgVisionError

__all__ = ["DEVICE_CHOICES", "DeviceUnavailable", "resolve_device"]

DeviceChoice = Literal["auto", "cpu", "cuda"]
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


class DeviceUnavailable(MfgVisionError, RuntimeError):
    """The asked device does not exist on this machine."""


def resolve_device(choice: str) -> str:
    """``"cpu"`` or ``"cuda"`` for ``choice``; imports torch only when CUDA has to be looked for."""
    if choice not in DEVICE_CHOICES:
        raise DeviceUnavailable(f"device {choice!r} is unknown; choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if choice == "cuda":
        raise DeviceUnavailable(
            f"--device cuda: torch {torch.__version__} sees no CUDA device on this machine (CUDA build: "
            f"{torch.version.cuda or 'none'}); use --device cpu or auto, or check the driver with nvidia-smi"
        )
    return "cpu"
