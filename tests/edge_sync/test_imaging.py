"""One fitting rule on both sides: what training sees is what the device feeds the model."""

import numpy as np
import pytest
from PIL import Image

from edge_sync.contract import InputSpec
from edge_sync.contract.imaging import fit_to_input, letterbox_box


def _crop(width: int, height: int, mode: str = "L") -> Image.Image:
    rng = np.random.default_rng(width * 1000 + height)
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), mode="L")
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_the_mean_colour() -> None:
    image = _crop(300, 100, "RGB")
    pixels = fit_to_input(image, 96, 96, "letterbox")
    assert pixels.shape == (96, 96, 3) and pixels.dtype == np.uint8
    left, top, width, height = letterbox_box(300, 100, 96, 96)
    assert (left, top, width, height) == (0, 32, 96, 32)
    content = pixels[top : top + height, left : left + width]
    fill = np.rint(content.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
    assert (pixels[:top] == fill).all() and (pixels[top + height :] == fill).all()
    squashed = fit_to_input(image, 96, 96, "squash")
    assert squashed.shape == (96, 96, 3) and not np.array_equal(squashed, pixels)


def test_grey_and_its_rgb_copy_fit_to_the_same_pixels() -> None:
    grey = _crop(123, 257)
    for mode in ("letterbox", "squash"):
        np.testing.assert_array_equal(fit_to_input(grey, 64, 64, mode), fit_to_input(grey.convert("RGB"), 64, 64, mode))


def test_the_platform_and_the_device_fit_camera_files_identically(tmp_path) -> None:
    from edge_sync.agent.inspector import decode_image
    from resources.data.images import load_rgb

    path = tmp_path / "frame.png"
    _crop(311, 188).save(path)
    for resize in ("letterbox", "squash"):
        device, _ = decode_image(path, InputSpec(height=128, width=128, resize=resize))
        np.testing.assert_array_equal(device, load_rgb(path, 128, resize))


def test_unknown_mode_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of letterbox, squash"):
        fit_to_input(_crop(10, 10), 8, 8, "crop")
