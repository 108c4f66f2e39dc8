"""Importing ultralytics must not change how the platform reads images: a corrupt file stays PIL's
``UnidentifiedImageError`` (quarantined with its reason), not an attempt to install pi-heif."""

from pathlib import Path

import pytest
from PIL import Image, UnidentifiedImageError

from resources.data.images import ImageRejected, inspect_image
from resources.detect.yolo_env import prepare_ultralytics


def test_a_corrupt_image_is_still_rejected_after_ultralytics_is_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFG_HOME", str(tmp_path / "home"))
    prepare_ultralytics()
    import ultralytics  # noqa: F401  (the import that used to replace PIL.Image.open)

    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all" * 10)
    with pytest.raises(UnidentifiedImageError):
        Image.open(garbage)
    with pytest.raises(ImageRejected, match="not an image or corrupt"):
        inspect_image(garbage, max_pixels=10**8)
