"""Bad-input corpus, datasets and options given to ``mfgv onboard``: each ends in one clear message
naming the file or option and exit status 2 (no traceback), and nothing is landed or registered.

Every case is refused before training, so the corpus runs in seconds.
"""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfg_assets.cli import main
from mfg_assets.onboard_checks import class_counts


def _images(root: Path, per_class: int = 6) -> Path:
    for name in ("good", "bad"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.random.default_rng(i + 10 * len(name)).integers(0, 256, (20, 20), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.png")
    return root


def _csv(root: Path, extra: str = "", header: str = "path,label") -> Path:
    _images(root)
    rows = "".join(f"{c}/{c}{i}.png,{c}\n" for c in ("good", "bad") for i in range(6))
    (root / "labels.csv").write_text(f"{header}\n{rows}{extra}")
    return root


def _coco(root: Path, text: str) -> Path:
    _images(root)
    (root / "annotations.json").write_text(text)
    return root


def _symlink_loop(root: Path) -> Path:
    _images(root)
    os.symlink(root, root / "good" / "loop")
    return root


def _non_utf8_name(root: Path) -> Path:
    _images(root)
    with open(os.fsencode(root / "good") + b"/part\xff.png", "wb") as handle:
        handle.write((root / "good" / "good0.png").read_bytes())
    return root


def _empty_class(root: Path) -> Path:
    _images(root)
    (root / "scratch").mkdir()
    return root


def _metadata(root: Path, header: str, rows: dict[str, str]) -> Path:
    """The two-class images with a metadata.csv: ``rows`` maps an image path to the rest of its row."""
    _images(root)
    lines = [f"{path},{rest}" for path, rest in rows.items()]
    (root / "metadata.csv").write_text("\n".join([header, *lines]) + "\n")
    return root


EVERY_IMAGE = [f"{c}/{c}{i}.png" for c in ("good", "bad") for i in range(6)]
ONE_PART_TWO_LABELS = {path: f"cam1,{'p-shared' if path in ('good/good0.png', 'bad/bad0.png') else path}" for path in EVERY_IMAGE}
SOME_WITHOUT_PART = {path: f"cam1,{'' if path.startswith('bad/bad') and path < 'bad/bad3' else path}" for path in EVERY_IMAGE}


def _rename(root: Path, names: dict[str, str]) -> Path:
    for old, new in names.items():
        (root / old).rename(root / new)
    return root


def _mvtec(root: Path, defect_in_train: bool = False) -> Path:
    for folder in ("train/good", "test/good", "test/crack", *(["train/crack"] if defect_in_train else [])):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            pixels = np.random.default_rng(i).integers(0, 256, (20, 20), dtype=np.uint8)
            Image.fromarray(pixels).save(root / folder / f"{i:03d}.png")
    return root


@dataclass(frozen=True)
class Onboard:
    name: str
    dataset: Callable[[Path], Path]
    options: tuple[str, ...]
    fragment: str
    line: str = "l1"


COCO_UNKNOWN_CATEGORY = json.dumps(
    {"images": [{"id": 1, "file_name": "good/good0.png"}], "annotations": [{"image_id": 1, "category_id": 7}], "categories": []}
)
COCO_UNKNOWN_IMAGE = json.dumps(
    {"images": [], "annotations": [{"image_id": 5, "category_id": 1}], "categories": [{"id": 1, "name": "good"}]}
)
COCO_OUTSIDE = json.dumps(
    {"images": [{"id": 1, "file_name": "../x.png"}], "annotations": [{"image_id": 1, "category_id": 1}],
     "categories": [{"id": 1, "name": "good"}]}
)
CSV = ("--format", "csv")
COCO = ("--format", "coco")
CASES = [
    Onboard("csv wrong header", lambda r: _csv(r, header="file,klass"), CSV, "missing required column(s) path, label"),
    Onboard("csv conflicting rows", lambda r: _csv(r, "good/good0.png,bad\n"), CSV, "different labels from the same reviewer"),
    Onboard("csv path outside with ..", lambda r: _csv(r, "../etc/x.png,good\n"), CSV, "point outside the batch folder"),
    Onboard("csv absolute path", lambda r: _csv(r, "/abs/y.png,bad\n"), CSV, "point outside the batch folder"),
    Onboard("csv empty label", lambda r: _csv(r, "good/good1.png,\n"), CSV, "label is empty"),
    Onboard("csv extra field", lambda r: _csv(r, "good/good1.png,good,x,y\n"), CSV, "more fields than the header"),
    Onboard("csv missing file", lambda r: _images(r), CSV, "labels.csv does not exist"),
    Onboard("coco not json", lambda r: _coco(r, "{not json"), COCO, "invalid JSON"),
    Onboard("coco unknown category id", lambda r: _coco(r, COCO_UNKNOWN_CATEGORY), COCO, "category_id that is not in 'categories'"),
    Onboard("coco unknown image id", lambda r: _coco(r, COCO_UNKNOWN_IMAGE), COCO, "image_id"),
    Onboard("coco file name outside", lambda r: _coco(r, COCO_OUTSIDE), COCO, "points outside the dataset folder"),
    Onboard("coco images not a list", lambda r: _coco(r, '{"images": {}, "annotations": [], "categories": []}'), COCO, "must be a list"),
    Onboard("symlink loop", _symlink_loop, (), "is a symbolic link to the folder"),
    Onboard("non-UTF-8 file name", _non_utf8_name, (), "part\\xff.png: the name is not valid UTF-8"),
    Onboard("empty class folder", _empty_class, (), "scratch/ hold no images"),
    Onboard("one class only", lambda r: (_images(r), __import__("shutil").rmtree(r / "bad"))[0], (), "at least two classes"),
    Onboard("good class not a class", _images, ("--good-class", "ok"), "--good-class 'ok' is not a class"),
    Onboard("task without an engine", _images, ("--task", "segment"), "no engine in this release"),
    Onboard("folds more than images", _images, ("--cv-folds", "8"), "--cv-folds"),
    Onboard("unknown backbone", _images, ("--backbone", "resnet9000"), "resnet9000"),
    Onboard("missing weights file", _images, ("--arch", "resnet10t", "--pretrained-weights", "/nope.pth"), "/nope.pth"),
    Onboard("init from unknown version", _images, ("--init-from", "line9-x-v1"), "line9-x-v1"),
    Onboard("init from with a backbone", _images, ("--init-from", "line9-x-v1", "--backbone", "efficientnet_lite0"),
            "--backbone cannot be used with --init-from (the registered model fixes the architecture and the weights)"),
    Onboard("invalid line name", _images, (), "line name '../l' is not valid", line="../l"),
    Onboard("anomaly without a good class", _images, ("--task", "anomaly"), "name their class (--good-class"),
    Onboard("anomaly with a search", _images, ("--task", "anomaly", "--good-class", "good", "--hpo-trials", "3"),
            "--hpo-trials: not available with --task anomaly"),
    Onboard("anomaly unknown backbone", _images, ("--task", "anomaly", "--good-class", "good", "--backbone", "resnet9000"), "resnet9000"),
    Onboard("anomaly settings out of range", _images, ("--task", "anomaly", "--good-class", "good", "--anomaly-settings",
            '{"neighbourhood": 4}'), "--anomaly-settings or the backbone options are invalid: 1 validation error"),
    Onboard("anomaly settings set the backbone", _images, ("--task", "anomaly", "--good-class", "good", "--anomaly-settings",
            '{"arch": "resnet18"}'), "--anomaly-settings sets arch: use --backbone, --arch"),
    Onboard("anomaly arch without weights", _images, ("--task", "anomaly", "--good-class", "good", "--arch", "wide_resnet50_2"),
            "arch 'wide_resnet50_2' without a weights file: a detector needs learned features"),
    Onboard("anomaly missing weights file", _images, ("--task", "anomaly", "--good-class", "good", "--arch", "wide_resnet50_2",
            "--pretrained-weights", "/nope/wrn50.pth"), "'/nope/wrn50.pth' does not exist"),
    Onboard("anomaly init from with an arch", _images, ("--task", "anomaly", "--good-class", "good", "--init-from", "l9-x-v1",
            "--arch", "resnet18"), "--arch cannot be used with --init-from (the registered model fixes the architecture)"),
    Onboard("anomaly weights file with a backbone too", _images, ("--task", "anomaly", "--good-class", "good", "--backbone",
            "efficientnet_lite0", "--arch", "resnet18", "--pretrained-weights", "/nope.pth"),
            "--backbone cannot be used with --arch with --pretrained-weights; drop --backbone"),
    Onboard("anomaly init from unknown version", _images, ("--task", "anomaly", "--good-class", "good", "--init-from", "l9-x-v1"),
            "--init-from l9-x-v1: no such registered model version"),
    Onboard("anomaly settings for a classifier", _images, ("--anomaly-settings", '{"top_share": 0.1}'),
            "--anomaly-settings / --task-settings: for --task anomaly or detect only"),
    Onboard("part id with two labels", lambda r: _metadata(r, "path,camera,part_id", ONE_PART_TWO_LABELS), (),
            "carry more than one label, first part_id 'p-shared': bad/bad0.png (bad), good/good0.png (good)"),
    Onboard("part id empty for some images", lambda r: _metadata(r, "path,camera,serial", SOME_WITHOUT_PART), (),
            "gives part_id for 9 image(s) but not for 3 (bad/bad0.png, bad/bad1.png, bad/bad2.png)"),
    Onboard("group by metadata without part ids", lambda r: _metadata(r, "path,camera", {p: "cam1" for p in EVERY_IMAGE}),
            ("--group-by", "metadata"), "--group-by metadata needs a part_id (or serial, or capture_id) column"),
    Onboard("group by metadata without metadata.csv", _images, ("--group-by", "metadata"),
            "--group-by metadata: "),
    Onboard("good folder without --good-class", _images, (),
            "class 'good' looks like the good parts, but no --good-class was given: pass --good-class good"),
    Onboard("good and no good class", _images, ("--good-class", "good", "--no-good-class"), "contradict each other"),
    Onboard("not_ok is not the good class", lambda r: _rename(_images(r), {"good": "ok", "bad": "not_ok"}), (),
            "class 'ok' looks like the good parts, but no --good-class was given: pass --good-class ok"),
    Onboard("mvtec layout as folders", _mvtec, (), "looks like the MVTec AD layout (train/, test/), not one folder per class"),
    Onboard("mvtec defect under train", lambda r: _mvtec(r, defect_in_train=True), ("--task", "anomaly", "--format", "mvtec"),
            "train/ may hold only train/good/, but 3 image(s) lie in other folders (first: train/crack/000.png"),
]


def _onboard(dataset: Path, case: Onboard) -> list[str]:
    epochs = () if "anomaly" in case.options else ("--epochs", "1")  # a detector is fitted: no epochs
    return ["onboard", str(dataset), "--line", case.line, "--variant", "v1", *epochs, *case.options]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_dataset_or_option_is_refused_with_its_reason(
    case: Onboard, mfg_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dataset = case.dataset(tmp_path / "data")
    status = main(_onboard(dataset, case))
    err = capsys.readouterr().err
    assert status == 2, err
    assert case.fragment in err and "Traceback" not in err, err
    assert not (mfg_home / "variants").exists(), "a refused onboard must not register the variant"
    landing = mfg_home / "landing"
    assert not landing.exists() or not [p for p in landing.rglob("*") if p.is_file()], "nothing may be landed"


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--epochs", "0", "out of range"),
        ("--epochs", "many", "is not an integer"),
        ("--image-size", "8", "out of range"),
        ("--hpo-minutes", "0", "must be more than 0"),
        ("--hpo-trials", "-3", "out of range"),
        ("--cv-folds", "1", "out of range"),
        ("--min-accuracy", "1.5", "out of range"),
        ("--escape-budget", "nan", "out of range"),
        ("--seed", "-1", "out of range"),
        ("--epoch", "3", "unrecognized arguments: --epoch"),
        ("--group-by", "parts", "invalid choice: 'parts'"),
    ],
)
def test_bad_numeric_options_are_refused_before_any_ingest(
    option: str, value: str, fragment: str, mfg_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    dataset = _images(tmp_path / "data")
    with pytest.raises(SystemExit) as exit_info:
        main(["onboard", str(dataset), "--line", "l1", "--variant", "v1", option, value])
    assert exit_info.value.code == 2
    assert fragment in capsys.readouterr().err
    assert not (mfg_home / "landing").exists() and not (mfg_home / "variants").exists()


def test_a_csv_dataset_is_counted_by_its_labels(tmp_path: Path) -> None:
    """The preflight counted a labels.csv dataset by a column it does not have, so every
    ``--format csv`` onboard crashed with a KeyError before this."""
    assert class_counts(_csv(tmp_path / "data"), "csv") == {"bad": 6, "good": 6}
