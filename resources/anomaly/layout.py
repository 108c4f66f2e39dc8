"""Reading an anomaly dataset in the MVTec AD layout, and fitting its masks to the model input.

The layout (Bergmann et al., MVTec AD)::

    ROOT/train/good/*.png|jpg              good parts only: what the detector learns
    ROOT/test/good/*                       good parts held out
    ROOT/test/<defect type>/*              defective parts
    ROOT/ground_truth/<defect type>/<stem>_mask.png   a binary mask per defective image (optional)

A defect image without its mask is kept (it counts for the image figures, not the pixel ones) and
listed; a mask without its image is reported, never silently dropped. Masks are binarised at > 127
(soft edges, as in magnetic tile's) and fitted to the input by the same geometry as the image
(:func:`edge_sync.contract.imaging.letterbox_box`), with the border marked as not part of the part.
"""

from dataclasses import dataclass, field
from pathlib import Path


from resources.data.mask_files import MaskLayoutError, content_region, fit_mask, read_mask

__all__ = ["AnomalyLayoutError", "MvtecLayout", "TestItem", "content_region", "fit_mask", "read_mask", "read_mvtec_layout"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
GOOD = "good"


AnomalyLayoutError = MaskLayoutError
"""The folder is not an MVTec-layout dataset the detector can learn from, or a mask does not fit its
image; the message says what to fix (one class with the mask files' error, which masks raise)."""


@dataclass(frozen=True)
class TestItem:
    path: Path
    defect_type: str
    mask: Path | None

    @property
    def is_defect(self) -> bool:
        return self.defect_type != GOOD


@dataclass(frozen=True)
class MvtecLayout:
    root: Path
    train_good: list[Path]
    test: list[TestItem]
    problems: list[str] = field(default_factory=list)
    """What was odd but not fatal (a defect image without a mask, a mask without an image)."""

    @property
    def defect_types(self) -> list[str]:
        return sorted({item.defect_type for item in self.test if item.is_defect})


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_mvtec_layout(root: Path) -> MvtecLayout:
    """List ``root``'s images and masks; raise :class:`AnomalyLayoutError` when it cannot be used."""
    root = Path(root)
    train_dir = root / "train" / GOOD
    if not train_dir.is_dir():
        raise AnomalyLayoutError(
            f"{train_dir} does not exist: an MVTec-layout dataset keeps its good training images in train/good/"
        )
    train_good = _images(train_dir)
    if not train_good:
        raise AnomalyLayoutError(f"{train_dir} holds no images: put the good parts the detector learns from there")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise AnomalyLayoutError(f"{test_dir} does not exist: put held-out good parts in test/good/ and defects in test/<type>/")
    test: list[TestItem] = []
    problems: list[str] = []
    for type_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        masks_dir = root / "ground_truth" / type_dir.name
        images = _images(type_dir)
        stems = {image.stem for image in images}
        for image in images:
            mask = masks_dir / f"{image.stem}_mask.png"
            if type_dir.name == GOOD:
                test.append(TestItem(image, GOOD, None))
            elif mask.is_file():
                test.append(TestItem(image, type_dir.name, mask))
            else:
                test.append(TestItem(image, type_dir.name, None))
                problems.append(f"{image}: no mask at {mask}; it counts for the image figures only")
        if masks_dir.is_dir():
            for orphan in sorted(p for p in masks_dir.glob("*_mask.png") if p.name[: -len("_mask.png")] not in stems):
                problems.append(f"{orphan}: a mask with no image in {type_dir}; it is not used")
    if not any(not item.is_defect for item in test):
        raise AnomalyLayoutError(
            f"{test_dir / GOOD} holds no images: the false-reject rate and the threshold need held-out good parts there"
        )
    return MvtecLayout(root=root, train_good=train_good, test=test, problems=problems)
