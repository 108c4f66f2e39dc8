"""``--device``: auto finds CUDA when torch sees it, cpu stays cpu, cuda without a card is refused early."""

import pytest

from resources.devices import DeviceUnavailable, resolve_device


def test_cpu_is_cpu_and_auto_follows_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda") == "cuda"


def test_cuda_without_a_card_and_an_unknown_device_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailable, match="--device cuda: torch .* sees no CUDA device.*use --device cpu or auto"):
        resolve_device("cuda")
    with pytest.raises(DeviceUnavailable, match="device 'tpu' is unknown; choose one of auto, cpu, cuda"):
        resolve_device("tpu")
