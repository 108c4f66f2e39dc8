"""``mfgv onboard`` of a fixtured product where every part looks alike, in the MVTec layout, as a new
user runs it: the split holds near the asked fractions with every defect kind in validation and test
(the transitive grouping once split such a product 347/3/1 and reported AUROC 0.0), and the report
says how the images were grouped."""

import json
from pathlib import Path

import pytest

from resources.lineage import LineageStore
from tests.processes import mfgv

pytestmark = pytest.mark.e2e

DEFECTS = {"scratch", "dent", "stain", "missing_hole"}


def test_a_look_alike_line_splits_near_the_fractions_and_is_measured(mfg_home: Path, tmp_path: Path) -> None:
    data = tmp_path / "line"
    done = mfgv(mfg_home, "sample-anomaly-line", str(data), "--seed", "4", "--train-good", "60", "--test-good", "20",
                "--test-per-defect", "8", "--image-size", "96", "--look-alike")
    assert done.returncode == 0, done.stderr[-3000:]
    report_path = tmp_path / "report.json"
    done = mfgv(mfg_home, "onboard", str(data), "--task", "anomaly", "--format", "mvtec", "--line", "line3",
                "--variant", "jig-a", "--report-json", str(report_path), "--min-accuracy", "0", "--max-test-escape-rate", "1")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "split grouped by phash (auto: no part ids in metadata.csv" in done.stdout

    report = json.loads(report_path.read_text())
    grouping = report["grouping"]
    assert grouping["requested"] == "auto" and grouping["group_by"] == "phash" and grouping["fallback"] is None
    items = LineageStore().read_table("dataset_items", "dataset_id = ?", [report["dataset_version"]])
    good = items[items["label"] == "good"]["split"].value_counts(normalize=True)
    assert abs(good["train"] - 0.6) < 0.07 and abs(good["val"] - 0.2) < 0.07 and abs(good["test"] - 0.2) < 0.07, good
    for kind in DEFECTS:
        assert {"val", "test"} <= set(items.loc[items["label"] == kind, "split"]), kind
    assert {name: row["images"] for name, row in grouping["splits"].items()} == items["split"].value_counts().to_dict()

    test = report["test"]
    assert test["n_images"] >= 25 and set(test["per_type"]) == DEFECTS
    assert 0.5 < test["image_auroc"] <= 1.0  # measured on a real test split, not on one image of each kind
    html = Path(report["report_html"]).read_text()
    assert "Data split" in html and "effective parts" in html
