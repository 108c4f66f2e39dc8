"""Labels and masks of a batch in the MVTec AD layout (``--format mvtec``), from its file paths.

The layout is ``train/good/*``, ``test/<type>/*`` (``test/good`` for good parts) and
``ground_truth/<type>/<stem>_mask.png`` for the defect images' masks. An image's label is its folder
(``good`` or the defect type); a mask is not an image of the line but the annotation of one, so it
is set apart here and attached to its image. The platform re-splits the good images itself (a
leakage-free, seeded split with held-out good parts for the threshold), so ``train/`` vs ``test/``
only says which images may be defective: a defect under ``train/`` is an error, not a label.

Like the other label readers this only reads paths: whether a mask fits its image is checked by
the ``annotations`` asset, which has the stored files and quarantines a bad mask with its reason.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from resources.data.labels import LabelImportError, label_frame, normalise_path

__all__ = ["GOOD", "MVTEC_FORMAT", "MvtecLabels", "is_mask_path", "labels_from_mvtec"]

MVTEC_FORMAT = "mvtec"
GOOD = "good"
MVTEC_REVIEWER = "mvtec"
MASK_FOLDER = "ground_truth"
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class MvtecLabels:
    labels: pd.DataFrame
    """One row per image, ``LABEL_COLUMNS``."""
    masks: dict[str, str]
    """Image path -> its mask's path (defect images that have one)."""
    problems: list[str] = field(default_factory=list)
    """Masks without an image and defect images without a mask: usable data, said out loud."""


def is_mask_path(rel_path: str) -> bool:
    """Whether a batch path lies under ``ground_truth/`` (a mask, not an image of the line)."""
    return normalise_path(rel_path).split("/", 1)[0] == MASK_FOLDER


def labels_from_mvtec(rel_paths: Sequence[str], require_good: bool = True) -> MvtecLabels:
    """Labels for every image path, masks matched to their images by type and file stem.

    ``require_good`` False: one batch of several (operator feedback of defects only) may lack good
    images; the variant's label checks then ask for them over all its batches."""
    rows: list[tuple[str, str, str, str]] = []
    misplaced: list[str] = []
    defects_in_train: list[str] = []
    mask_paths: list[str] = []
    for raw in rel_paths:
        rel_path = normalise_path(str(raw))
        parts = rel_path.split("/")
        if parts[0] == MASK_FOLDER:
            mask_paths.append(rel_path)
            continue
        if len(parts) != 3 or parts[0] not in ("train", "test") or not parts[1].strip():
            misplaced.append(rel_path)
            continue
        if parts[0] == "train" and parts[1] != GOOD:
            defects_in_train.append(rel_path)
            continue
        rows.append((rel_path, parts[1].strip(), MVTEC_REVIEWER, MVTEC_FORMAT))
    if misplaced:
        raise LabelImportError(
            f"MVTec layout: {len(misplaced)} image(s) outside train/good/, test/<type>/ and ground_truth/<type>/ "
            f"(first: {', '.join(misplaced[:5])}); move each directly into one of those folders (no sub-folders)"
        )
    if defects_in_train:
        raise LabelImportError(
            f"MVTec layout: train/ may hold only train/good/, but {len(defects_in_train)} image(s) lie in other "
            f"folders (first: {', '.join(defects_in_train[:5])}); move defective images to test/<type>/"
        )
    if require_good and not any(label == GOOD for _, label, _, _ in rows):
        raise LabelImportError(
            "MVTec layout: no good images (train/good/ and test/good/ are empty or missing); a detector learns "
            "what good looks like from them: add them"
        )
    by_key: dict[tuple[str, str], str] = {}
    for rel_path, _label, _r, _s in rows:
        parts = rel_path.split("/")
        if parts[0] != "test" or parts[1] == GOOD:
            continue
        key = (parts[1], PurePosixPath(rel_path).stem)
        if key in by_key:
            raise LabelImportError(
                f"MVTec layout: {by_key[key]} and {rel_path} share the name {key[1]!r}, so a mask "
                f"ground_truth/{key[0]}/{key[1]}_mask.png could belong to either; rename one of them"
            )
        by_key[key] = rel_path
    masks: dict[str, str] = {}
    problems: list[str] = []
    for mask in mask_paths:
        parts = mask.split("/")
        stem = PurePosixPath(mask).stem
        image_stem = stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else stem
        image = by_key.get((parts[1], image_stem)) if len(parts) == 3 else None
        if image is None:
            problems.append(f"{mask}: no test/{parts[1] if len(parts) > 1 else '?'}/{image_stem}.* image for this mask; it is not used")
        else:
            masks[image] = mask
    unmasked = sorted(set(by_key.values()) - set(masks))
    if unmasked:
        problems.append(
            f"{len(unmasked)} defect image(s) have no mask under ground_truth/ (first: {', '.join(unmasked[:5])}); "
            "they count for image-level metrics, not for pixel metrics"
        )
    return MvtecLabels(labels=label_frame(rows), masks=masks, problems=problems)
