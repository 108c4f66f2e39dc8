"""The object-detection engine: boxes of defect classes; an image without a box is a good part.

Labels come as COCO, YOLO or Pascal VOC files beside the images (``batch_labels.py``); each image's
image-level label is its most frequent box class (or the good class), which the split stratifies
on. The model is an ultralytics YOLO trained from its yaml, offline (``yolo_train.py`` and its neighbours); the image-level
defect score is the highest box score, so the shared threshold calibration, false-reject and escape
rates apply unchanged; mAP50 and mAP50-95 per class come beside them (``steps.py``). The package holds
ONNX and OpenVINO graphs with the box post-processing inside, which the device's detect decoder reads.
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edge_sync.contract import Task
from resources.engine_io import (
    BatchFiles,
    BatchLabels,
    EngineMachine,
    Evaluation,
    ExportOutcome,
    FitOutcome,
    ModelRecord,
    RecipeOutcome,
    RecipeRecord,
    TaskData,
)
from resources.tasks import TaskEngine

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DetectEngine"]


class DetectEngine(TaskEngine):
    """Object detection: defect boxes per image; a good part has none."""

    task = Task.DETECT
    labels = "boxes of defect classes (none on a good part), as COCO, YOLO or Pascal VOC files"
    headline_keys = ("map50", "map50_95")
    augment_targets = ("image", "boxes")
    device_output = "boxes with scores and classes"
    labels_carry_more_than_class = True
    label_file_suffixes = frozenset({".txt", ".xml", ".yaml", ".yml", ".json"})
    int8_default: ClassVar[bool] = False
    unsupported: ClassVar[Mapping[str, str]] = {
        "hpo_trials": "a search over detector settings is not in this release; set --epochs and --image-size",
        "hpo_minutes": "a search over detector settings is not in this release; set --epochs and --image-size",
        "folds": "its validation report measures it on held-out images: drop --cv-folds",
        "int8": "the detector's package is FP32 ONNX and OpenVINO in this release",
        "augment_copies": "the detector augments on the fly (mosaic, flips, HSV) with boxes moved alike: use --augment-copies 0",
    }

    def variant_problems(self, classes: Sequence[str], good_class: str | None) -> list[str]:
        problems = []
        if good_class is None:
            problems.append("a detector calls an image without boxes a good part: name that class (--good-class, default 'good')")
        if len([c for c in classes if c != good_class]) < 1:
            problems.append(f"classes {', '.join(classes) or 'none'}: a detector needs at least one defect class besides the good one")
        return problems

    def batch_labels(self, files: BatchFiles, label_format: str, good_class: str | None) -> BatchLabels:
        from resources.detect.batch_labels import read_batch_boxes

        return read_batch_boxes(files, label_format, good_class)

    def class_image_counts(
        self, labels: "pd.DataFrame", tables: Mapping[str, "pd.DataFrame"], good_class: str | None
    ) -> tuple[dict[str, int], frozenset[str]]:
        """An image counts for every class it has a box of; the good class (images without boxes) may be empty."""
        boxes = tables.get("label_boxes")
        counts: dict[str, int] = {}
        if boxes is not None and not boxes.empty:
            counts = {str(k): int(v) for k, v in boxes.drop_duplicates(["image_sha256", "class_name"])["class_name"].value_counts().items()}
        if good_class is not None:
            counts[good_class] = int((labels.drop_duplicates("sha256")["label"] == good_class).sum())
        return counts, frozenset({good_class} if good_class else set())

    def dataset_labels(self, data_dir: Path, label_format: str, good_class: str | None) -> "pd.DataFrame":
        from resources.data.images import SUPPORTED_EXTENSIONS
        from resources.detect.batch_labels import read_batch_boxes
        from resources.detect.errors import LabelFileError

        files = [p for p in sorted(data_dir.rglob("*")) if p.is_file() and not any(s.startswith(".") for s in p.relative_to(data_dir).parts)]
        rel = {p.relative_to(data_dir).as_posix(): p for p in files}
        read = read_batch_boxes(
            BatchFiles(
                batch=data_dir.name,
                images={r: p for r, p in rel.items() if p.suffix.lower() in SUPPORTED_EXTENSIONS},
                sidecars={r: p for r, p in rel.items() if p.suffix.lower() in self.label_file_suffixes},
            ),
            label_format,
            good_class,
        )
        if read.labels.empty:
            first = read.quarantined[0]["detail"] if read.quarantined else "no image is labelled"
            raise LabelFileError(f"{data_dir}: no usable box labels ({first}); check --format and the label files")
        boxes = read.tables["label_boxes"]
        classes = boxes.groupby("rel_path")["class_name"].agg(lambda names: tuple(sorted(set(names)))).to_dict()
        labels = read.labels[["rel_path", "label"]].copy()
        # every class a box names belongs to the taxonomy, not only the images' most frequent ones
        labels["box_classes"] = [classes.get(rel, ()) for rel in labels["rel_path"]]
        return labels

    def preflight(self, options: Mapping[str, Any], n_classes: int) -> dict[str, Any]:
        from resources.detect.steps import check_detector_options

        return check_detector_options(options)

    def recipe(self, options: Mapping[str, Any], data: TaskData, machine: EngineMachine) -> RecipeOutcome:
        from resources.detect.steps import detector_recipe

        return detector_recipe(options, data)

    def fit(self, recipe: RecipeRecord, data: TaskData, machine: EngineMachine, *, reuse_search_weights: bool) -> FitOutcome:
        from resources.detect.steps import fit_detector

        return fit_detector(recipe, data, machine)

    def evaluate(self, model: ModelRecord, recipe: RecipeRecord, data: TaskData, config: Any, machine: EngineMachine) -> Evaluation:
        from resources.detect.steps import evaluate_detector

        return evaluate_detector(model, data, config, machine)

    def export(
        self,
        model: ModelRecord,
        threshold: float | None,
        data: TaskData,
        config: Any,
        out_dir: Path,
        package_manifest: dict[str, Any],
        machine: EngineMachine,
    ) -> ExportOutcome:
        from resources.detect.package import detector_package

        return detector_package(model, threshold, data, config, out_dir, package_manifest, machine)
