"""The detection model layer without training: YOLO dataset writing, settings, metrics, defect scores."""

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from resources.detect.boxes import Box, BoxSet, ImageInfo
from resources.detect.formats import read_yolo
from resources.detect.yolo_data import write_yolo_dataset
from resources.detect.yolo_errors import DetectorConfigError, DetectorDataError
from resources.detect.yolo_metrics import detection_metrics, image_defect_scores, image_has_defect
from resources.detect.yolo_models import MOBILENETV2_DETECTOR, detector_names, resolve_model
from resources.detect.yolo_train import DetectorSettings, train_detector

# Shared with test_yolo_e2e.py: bright rectangles on a noisy background, boxes known.
CLASS_NAMES = ("scratch", "dent")
COLOURS = ((235, 235, 60), (60, 235, 235))


def make_samples(count: int, *, size: int = 64, seed: int = 0, good_every: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (image uint8 size×size×3, boxes (K, 5) pixels + class id) pairs; every ``good_every``-th
    image (if > 0) has no box."""
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        boxes = []
        if not (good_every and index % good_every == good_every - 1):
            for _ in range(int(rng.integers(1, 3))):
                w, h = (int(v) for v in rng.integers(size // 6, size // 2, 2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                cls = int(rng.integers(0, len(CLASS_NAMES)))
                image[y:y + h, x:x + w] = COLOURS[cls]
                boxes.append([x, y, x + w, y + h, cls])
        samples.append((image, np.asarray(boxes, dtype=np.float64).reshape(-1, 5)))
    return samples


def test_write_yolo_dataset_writes_ultralytics_layout_that_reads_back(tmp_path: Path) -> None:
    train, val = make_samples(4, seed=1, good_every=4), make_samples(2, seed=2)
    data_yaml = write_yolo_dataset(tmp_path / "ds", {"train": train, "val": val}, CLASS_NAMES)

    document = yaml.safe_load(data_yaml.read_text())
    assert document == {"path": str((tmp_path / "ds").resolve()), "train": "images/train", "val": "images/val",
                        "nc": 2, "names": {0: "scratch", 1: "dent"}}
    assert Image.open(tmp_path / "ds/images/train/000000.png").size == (64, 64)
    assert (tmp_path / "ds/labels/train/000003.txt").read_text() == ""  # a good part: empty label file
    read = read_yolo(tmp_path / "ds/labels/train", tmp_path / "ds/images/train", names_file=data_yaml)
    assert not read.problems
    for n, (_, boxes) in enumerate(train):
        got = sorted(b.corners + (CLASS_NAMES.index(b.class_name),) for b in read.dataset.boxes_for(f"{n:06d}.png"))
        assert np.allclose(got, sorted(map(tuple, boxes)), atol=1e-6)


def test_write_yolo_dataset_copies_a_box_set_and_checks_image_sizes(tmp_path: Path) -> None:
    images = tmp_path / "src"
    (images / "sub").mkdir(parents=True)
    Image.new("RGB", (64, 32)).save(images / "sub/a.png")
    Image.new("RGB", (32, 32)).save(images / "good.png")
    dataset = BoxSet((ImageInfo("sub/a.png", 64, 32), ImageInfo("good.png", 32, 32)),
                     (Box("sub/a.png", "dent", 4, 4, 20, 30),), ("dent",))
    data_yaml = write_yolo_dataset(tmp_path / "ds", {"train": dataset, "val": dataset}, CLASS_NAMES, images_dir=images)

    assert (tmp_path / "ds/images/val/sub/a.png").is_file()
    assert (tmp_path / "ds/labels/train/sub/a.txt").read_text().startswith("1 ")  # id from class_names, not the set's
    wrong = BoxSet((ImageInfo("sub/a.png", 60, 32),), (), ("dent",))
    with pytest.raises(DetectorDataError, match="is 64x32 but its boxes refer to 60x32"):
        write_yolo_dataset(tmp_path / "ds2", {"train": wrong, "val": wrong}, CLASS_NAMES, images_dir=images)
    assert data_yaml.is_file()


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        ({"train": []}, "missing: \\['val'\\]"),
        ({"train": [], "val": [], "holdout": []}, "unknown: \\['holdout'\\]"),
        ({"train": [(np.zeros((8, 8, 3), np.uint8), np.array([[0, 0, 4, 4, 7]]))], "val": []}, "class id 7 has no name"),
        ({"train": [(np.zeros((8, 8, 3), np.float32), np.zeros((0, 5)))], "val": []}, "expected a uint8 H×W×3"),
    ],
)
def test_write_yolo_dataset_refuses_bad_input(tmp_path: Path, splits: dict, message: str) -> None:
    with pytest.raises(DetectorDataError, match=message):
        write_yolo_dataset(tmp_path / "ds", splits, CLASS_NAMES)


def test_write_yolo_dataset_refuses_a_folder_that_holds_a_dataset(tmp_path: Path) -> None:
    splits = {"train": make_samples(1), "val": make_samples(1)}
    write_yolo_dataset(tmp_path / "ds", splits, CLASS_NAMES)
    with pytest.raises(DetectorDataError, match="already holds a YOLO dataset"):
        write_yolo_dataset(tmp_path / "ds", splits, CLASS_NAMES)


def test_settings_accept_shipped_yamls_and_name_the_choices_otherwise() -> None:
    names = detector_names()
    assert {"yolo26n.yaml", "yolo11n.yaml", MOBILENETV2_DETECTOR} <= set(names)
    assert resolve_model("yolo11s") == "yolo11s.yaml"
    assert DetectorSettings().model == "yolo26n.yaml"
    with pytest.raises(ValidationError, match="download weights.*choose one of yolo26n.yaml, "):
        DetectorSettings(model="yolo26n.pt")
    with pytest.raises(ValidationError, match="multiple of 32.*use 96"):
        DetectorSettings(image_size=100)
    assert DetectorSettings(lr0=0.002).optimizer == "AdamW"  # 'auto' would ignore lr0
    assert DetectorSettings(lr0=0.002, optimizer="SGD").optimizer == "SGD"
    with pytest.raises(ValidationError):
        DetectorSettings(device="tpu")


def test_train_refuses_a_missing_data_yaml_and_a_used_run_folder(
    tmp_path: Path, mfg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(mfg_home / "cache" / "ultralytics"))
    with pytest.raises(DetectorConfigError, match="data.yaml not found"):
        train_detector(tmp_path / "nothing.yaml", tmp_path / "run", DetectorSettings())
    data_yaml = write_yolo_dataset(tmp_path / "ds", {"train": make_samples(1), "val": make_samples(1)}, CLASS_NAMES)
    (tmp_path / "run" / "train" / "weights").mkdir(parents=True)
    with pytest.raises(DetectorConfigError, match="exists from an earlier training; pass a new run folder"):
        train_detector(data_yaml, tmp_path / "run", DetectorSettings())


def _perfect(truth: list[np.ndarray]) -> list[np.ndarray]:
    return [np.hstack([t[:, :4], np.ones((len(t), 1)), t[:, 4:5]]) for t in truth]


def test_metrics_are_one_for_perfect_and_zero_for_empty_predictions() -> None:
    truth = [boxes for _, boxes in make_samples(6, seed=3, good_every=3)]

    perfect = detection_metrics(_perfect(truth), truth, CLASS_NAMES)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map50_95"] == pytest.approx(1.0)
    assert {name: v["ap50"] for name, v in perfect["per_class"].items()} == {"scratch": 1.0, "dent": 1.0}
    assert sum(v["n_boxes"] for v in perfect["per_class"].values()) == sum(len(t) for t in truth)

    empty = detection_metrics([np.zeros((0, 6))] * len(truth), truth, CLASS_NAMES)
    assert empty["map50"] == 0.0 and empty["map50_95"] == 0.0 and empty["n_predictions"] == 0


def test_metrics_take_a_box_set_and_leave_classes_without_boxes_out() -> None:
    dataset = BoxSet((ImageInfo("a.png", 64, 64), ImageInfo("good.png", 64, 64)),
                     (Box("a.png", "dent", 10, 10, 30, 40),), ("scratch", "dent", "pit"))
    shifted = [np.array([[10, 10, 30, 44, 0.9, 1], [0, 0, 5, 5, 0.2, 0]]), np.zeros((0, 6))]  # IoU 20*30/(20*34)

    result = detection_metrics(shifted, dataset, ("scratch", "dent", "pit"))
    assert result["per_class"]["dent"]["ap50"] == pytest.approx(1.0)
    assert result["per_class"]["dent"]["ap50_95"] == pytest.approx(0.8)  # matched for IoU 0.50..0.85, not 0.9, 0.95
    assert math.isnan(result["per_class"]["pit"]["ap50"]) and result["per_class"]["pit"]["n_boxes"] == 0
    assert result["map50"] == pytest.approx(1.0)  # only the class with boxes counts
    with pytest.raises(DetectorDataError, match="2 prediction arrays for 1 ground-truth"):
        detection_metrics(shifted, [np.zeros((0, 5))], ("scratch", "dent", "pit"))
    with pytest.raises(DetectorDataError, match="class ids \\[5.0\\]"):
        detection_metrics([np.array([[0, 0, 1, 1, 0.5, 5]])], [np.zeros((0, 5))], ("scratch",))


def test_image_defect_score_is_the_highest_box_score_and_zero_without_boxes() -> None:
    predictions = [np.array([[0, 0, 4, 4, 0.3, 0], [1, 1, 5, 5, 0.8, 1]]), np.zeros((0, 6))]
    assert image_defect_scores(predictions).tolist() == [0.8, 0.0]
    assert image_has_defect([np.array([[0, 0, 4, 4, 1]]), np.zeros((0, 5))]).tolist() == [True, False]
