"""MVTec-layout labels: folders as labels, masks matched to their images, a wrong layout refused by name."""

import pytest

from resources.data.labels import LABEL_COLUMNS, LabelImportError
from resources.data.mvtec_labels import is_mask_path, labels_from_mvtec


def test_labels_come_from_folders_and_masks_attach_to_their_images() -> None:
    paths = [
        "train/good/000.png",
        "test/good/000.png",
        "test/crack/001.png",
        "test/crack/002.png",
        "ground_truth/crack/001_mask.png",
        "ground_truth/crack/009_mask.png",  # no image: reported, not used
    ]
    result = labels_from_mvtec(paths)
    assert tuple(result.labels.columns) == LABEL_COLUMNS
    assert dict(zip(result.labels["rel_path"], result.labels["label"], strict=True)) == {
        "train/good/000.png": "good",
        "test/good/000.png": "good",
        "test/crack/001.png": "crack",
        "test/crack/002.png": "crack",
    }
    assert result.masks == {"test/crack/001.png": "ground_truth/crack/001_mask.png"}
    assert any("009_mask.png: no test/crack/009" in p for p in result.problems)
    assert any("test/crack/002.png" in p and "pixel metrics" in p for p in result.problems)
    assert is_mask_path("ground_truth/crack/001_mask.png") and not is_mask_path("test/crack/001.png")


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["train/crack/1.png", "train/good/2.png"], "train/ may hold only train/good/"),
        (["loose.png", "train/good/2.png"], "outside train/good/, test/<type>/"),
        (["test/crack/1.png"], "no good images"),
    ],
)
def test_a_wrong_layout_is_refused_naming_the_files(paths: list[str], message: str) -> None:
    with pytest.raises(LabelImportError, match=message):
        labels_from_mvtec(paths)


def test_names_that_would_make_a_mask_ambiguous_are_refused() -> None:
    with pytest.raises(LabelImportError, match="share the name '000'"):
        labels_from_mvtec(["train/good/1.png", "test/crack/000.png", "test/crack/000.jpg"])
    with pytest.raises(LabelImportError, match="no sub-folders"):
        labels_from_mvtec(["train/good/1.png", "test/crack/a/000.png"])


def test_a_batch_of_defects_only_is_read_when_good_images_are_not_required() -> None:
    result = labels_from_mvtec(["test/crack/000.png"], require_good=False)  # operator feedback of one defect
    assert result.labels["label"].tolist() == ["crack"]
