"""The object-detection decoder: its decoder block (schema 4 only), the platform's manifest fields and
score units, verdicts from synthetic ``detections`` rows, the self-test and operator feedback."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge_sync.contract import (
    DECODER_SCHEMA_VERSION,
    DeploymentManifest,
    InputSpec,
    ModelFile,
    SelfTestMismatch,
    Task,
    decoder_for,
)
from edge_sync.contract.decoders.detect import (
    DETAIL_MAX_BOXES,
    SELFTEST_SCORE_TOLERANCE,
    DetectDecoder,
    DetectParams,
    unpack_detail,
)
from edge_sync.inference import InferenceError

DETECT = decoder_for(Task.DETECT)
CLASSES = ("dent", "good", "scratch", "stain")  # class ids index the defects: dent 0, scratch 1, stain 2


def _manifest(**fields: object) -> DeploymentManifest:
    values: dict[str, object] = {
        "deployment_id": "d1",
        "line": "line1",
        "model_version": "line1-plate-v1",
        "task": "detect",
        "model_format": "onnx",
        "model_path": "model.onnx",
        "files": (ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1),),
        "input": InputSpec(height=8, width=8),
        "classes": CLASSES,
        "good_class": "good",
        "dataset_version": "dataset:x",
        "created_at": datetime(2026, 12, 8, tzinfo=UTC),
        **DETECT.manifest_fields(0.5),
        **fields,
    }
    return DeploymentManifest(**values)


def _detections(*rows: tuple[float, ...], k: int = 8) -> dict[str, np.ndarray]:
    """One image's output as the graph gives it: 1×K×6, padded with rows of score 0."""
    out = np.zeros((1, k, 6), np.float32)
    if rows:
        out[0, : len(rows)] = rows
    return {"detections": out}


# ------------------------------------------------------------------------------------------ manifest


def test_detect_is_registered_and_its_fields_are_schema_4_with_a_block() -> None:
    assert isinstance(DETECT, DetectDecoder) and DETECT.window_counters == ("boxes", "boxes:")
    fields = DETECT.manifest_fields(0.4, min_box_area=12.0)
    assert fields == {
        "schema_version": DECODER_SCHEMA_VERSION,
        "threshold": 0.4,
        "decoder": {"name": "detect", "version": 1, "threshold": 0.4, "min_box_area": 12.0},
    }
    manifest = _manifest(**fields)
    assert DETECT.params(manifest) == DetectParams(threshold=0.4, min_box_area=12.0)
    assert DETECT.params(_manifest()) == DetectParams(threshold=0.5, min_box_area=0.0)
    for bad in (None, 0.0, -0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="box-score threshold in \\(0, 1\\]; re-run the validation report"):
            DETECT.manifest_fields(bad)
    with pytest.raises(ValueError, match="min_box_area -1.0"):
        DETECT.manifest_fields(0.5, min_box_area=-1.0)


def test_the_block_is_validated_and_must_agree_with_the_threshold() -> None:
    block = {"name": "detect", "version": 1, "threshold": 0.5}
    assert DETECT.params(_manifest(decoder=block)) == DetectParams(threshold=0.5)  # min_box_area is optional
    with pytest.raises(ValidationError, match="decoder.threshold is 0.3 but the manifest's threshold is 0.5"):
        _manifest(decoder={**block, "threshold": 0.3})
    with pytest.raises(ValidationError, match="'detect' decoder block is not valid \\(min_box_area: .*rebuild the"):
        _manifest(decoder={**block, "min_box_area": -2})
    with pytest.raises(ValidationError, match="'detect' decoder block is not valid \\(iou: "):
        _manifest(decoder={**block, "iou": 0.5})
    with pytest.raises(ValidationError, match="block has version 2; this device reads version\\(s\\) \\[1\\]"):
        _manifest(decoder={**block, "version": 2})


def test_a_detection_manifest_needs_schema_4_a_threshold_a_good_class_and_a_defect_class() -> None:
    with pytest.raises(ValidationError, match="a detection model needs manifest schema version 4 \\(this one says 3"):
        _manifest(schema_version=3, decoder=None, threshold=0.5)
    with pytest.raises(ValidationError, match="needs its threshold and good_class"):
        _manifest(good_class=None, threshold=None, decoder={"name": "detect", "version": 1, "threshold": 0.5})
    with pytest.raises(ValidationError, match="at least one defect class besides the good class 'good'"):
        _manifest(classes=("good",))
    with pytest.raises(ValidationError, match="an anomaly model needs its score_scale"):
        _manifest(score_scale=2.0)


def test_device_scores_are_the_reports_max_box_scores_checked_and_clipped() -> None:
    fields = DETECT.manifest_fields(0.5)
    assert DETECT.device_scores([0.0, 0.25, 1.0000001, -1e-7], fields) == [0.0, 0.25, 1.0, 0.0]
    with pytest.raises(ValueError, match="1 of 2 report scores are not finite .*re-run the validation report"):
        DETECT.device_scores([0.5, float("nan")], fields)


# ------------------------------------------------------------------------------------------ decode


def test_the_strongest_counted_box_names_the_class_and_rejects() -> None:
    outputs = _detections((1, 1, 4, 3, 0.62, 2), (0, 0, 2, 2, 0.91, 1), (5, 5, 7, 7, 0.30, 0))
    verdict = DETECT.decode(outputs, _manifest())
    assert (verdict.label, verdict.outcome, verdict.defect_score) == ("scratch", "reject", pytest.approx(0.91))
    counts, rows = unpack_detail(verdict.detail, _manifest())
    assert counts == {"dent": 0, "scratch": 1, "stain": 1}  # the 0.30 dent does not count
    assert rows == [(0.0, 0.0, 2.0, 2.0, 0.91, 1.0), (1.0, 1.0, 4.0, 3.0, 0.62, 2.0)]


def test_no_box_over_the_threshold_is_a_good_part_scored_by_its_strongest_box() -> None:
    weak = DETECT.decode(_detections((1, 1, 3, 3, 0.49, 0)), _manifest())
    assert (weak.label, weak.outcome, weak.defect_score) == ("good", "pass", pytest.approx(0.49))
    assert unpack_detail(weak.detail, _manifest()) == ({"dent": 0, "scratch": 0, "stain": 0}, [])
    empty = DETECT.decode(_detections(), _manifest())
    assert (empty.label, empty.outcome, empty.defect_score, empty.detail) == ("good", "pass", 0.0, (0.0, 0.0, 0.0, 0.0))
    at = DETECT.decode(_detections((1, 1, 3, 3, 0.5, 0)), _manifest())  # score >= threshold counts
    assert (at.label, at.outcome) == ("dent", "reject")


def test_min_box_area_drops_small_boxes_from_the_count_and_the_score() -> None:
    manifest = _manifest(**DETECT.manifest_fields(0.5, min_box_area=4.0))
    outputs = _detections((0, 0, 1, 1, 0.95, 0), (2, 2, 4, 4, 0.7, 2))  # areas 1 and 4 px²
    verdict = DETECT.decode(outputs, manifest)
    assert (verdict.label, verdict.defect_score) == ("stain", pytest.approx(0.7))
    only_small = DETECT.decode(_detections((0, 0, 1, 1, 0.95, 0)), manifest)
    assert (only_small.outcome, only_small.defect_score) == ("pass", 0.0)


def test_the_detail_keeps_the_strongest_boxes_and_complete_counts() -> None:
    rows = [(i % 8, 0, i % 8 + 1, 1, 0.6 + i / 1000, i % 3) for i in range(30)]
    verdict = DETECT.decode(_detections(*rows, k=40), _manifest())
    counts, kept = unpack_detail(verdict.detail, _manifest())
    assert verdict.detail[0] == 30 and sum(counts.values()) == 30 and len(kept) == DETAIL_MAX_BOXES
    assert [row[4] for row in kept] == sorted((row[4] for row in kept), reverse=True) and kept[0][4] == 0.629
    with pytest.raises(ValueError, match="not written by this decoder for this manifest"):
        unpack_detail(verdict.detail[:-1], _manifest())


def test_unusable_outputs_are_inference_errors() -> None:
    with pytest.raises(InferenceError, match="no 'detections' output .*not an object detector"):
        DETECT.decode({"score": np.zeros(1)}, _manifest())
    with pytest.raises(InferenceError, match="shape \\(1, 8, 5\\); expected 1×K×6"):
        DETECT.decode({"detections": np.zeros((1, 8, 5))}, _manifest())
    with pytest.raises(InferenceError, match="non-finite"):
        DETECT.decode(_detections((0, 0, np.nan, 1, 0.9, 0)), _manifest())
    with pytest.raises(InferenceError, match="class ids \\[3.0\\] do not index the manifest's 3 defect classes"):
        DETECT.decode(_detections((0, 0, 1, 1, 0.9, 3)), _manifest())
    DETECT.decode(_detections((0, 0, 1, 1, 0.0, 7)), _manifest())  # padding's class id is not read


# ------------------------------------------------------------------------------------------ self-test


class FakeDetector:
    """One box per image whose place and score follow the image's grey level; ``shift`` moves it
    (pixels), ``drift`` changes its score, ``extra`` adds a strong second box."""

    format = "onnx"

    def __init__(self, shift: float = 0.0, drift: float = 0.0, extra: bool = False) -> None:
        self.shift, self.drift, self.extra = shift, drift, extra

    def _rows(self, level: float) -> list[tuple[float, ...]]:
        rows = [(1 + self.shift, 1, 6 + self.shift, 5, level / 255 + self.drift, int(level) % 3)]
        return rows + [(0, 0, 8, 8, 0.8, 0)] if self.extra else rows

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = np.zeros((len(images), 8, 6), np.float32)
        for index, image in enumerate(images):
            rows = self._rows(float(image.mean()))
            out[index, : len(rows)] = rows
        return {"detections": out}

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise AssertionError("a detector is read through outputs()")


def _selftest(tmp_path: Path) -> Path:
    images = np.stack([np.full((8, 8, 3), level, np.uint8) for level in (30, 100, 200, 250)])
    path = tmp_path / "selftest.npz"
    np.savez(path, images=images, detections=FakeDetector().outputs(images)["detections"])
    return path


def test_the_self_test_passes_on_the_same_boxes_and_fails_on_moved_rescored_or_extra_ones(tmp_path: Path) -> None:
    path = _selftest(tmp_path)
    DETECT.self_test(FakeDetector(), path, _manifest())
    DETECT.self_test(FakeDetector(drift=SELFTEST_SCORE_TOLERANCE / 2, shift=0.05), path, _manifest())
    with pytest.raises(SelfTestMismatch, match="differ from the platform's on 4 of 4 images .*no device box for class"):
        DETECT.self_test(FakeDetector(shift=1.0), path, _manifest())  # IoU 0.67
    with pytest.raises(SelfTestMismatch, match="box scores .* on the device, .* in torch"):
        DETECT.self_test(FakeDetector(drift=0.01), path, _manifest())
    with pytest.raises(SelfTestMismatch, match="an extra device box for class 0"):
        DETECT.self_test(FakeDetector(extra=True), path, _manifest())


def test_the_self_test_ignores_weak_boxes_and_judges_int8_by_its_verdicts(tmp_path: Path) -> None:
    images = np.full((2, 8, 8, 3), 60, np.uint8)
    expected = np.zeros((2, 8, 6), np.float32)
    expected[:, 0] = (1, 1, 6, 5, 0.9, 0)
    expected[:, 1] = (0, 0, 3, 3, 0.03, 1)  # below SELFTEST_MIN_SCORE: may come and go with rounding
    np.savez(tmp_path / "s.npz", images=images, detections=expected)
    strong_only = type("Graph", (), {"outputs": lambda self, x: {"detections": expected[:1, :1]}})()
    DETECT.self_test(strong_only, tmp_path / "s.npz", _manifest())
    nudged = expected[:1, :1] + np.array([0.5, 0, 0.5, 0, -0.02, 0], np.float32)
    moved = type("Graph", (), {"outputs": lambda self, x: {"detections": nudged}})()
    with pytest.raises(SelfTestMismatch):
        DETECT.self_test(moved, tmp_path / "s.npz", _manifest())
    DETECT.self_test(moved, tmp_path / "s.npz", _manifest(model_format="onnx_int8"))  # same verdicts
    wrong = type("Graph", (), {"outputs": lambda self, x: {"detections": expected[:1, :1] * [1, 1, 1, 1, 0.1, 1]}})()
    with pytest.raises(SelfTestMismatch, match="onnx_int8.*reaches torch's verdict on 0% of the 2"):
        DETECT.self_test(wrong, tmp_path / "s.npz", _manifest(model_format="onnx_int8"))


def test_an_unusable_self_test_file_is_a_mismatch(tmp_path: Path) -> None:
    images = np.full((2, 8, 8, 3), 60, np.uint8)
    np.savez(tmp_path / "p.npz", images=images, probabilities=np.zeros((2, 4)))
    with pytest.raises(SelfTestMismatch, match="arrays 'images' and 'detections'"):
        DETECT.self_test(FakeDetector(), tmp_path / "p.npz", _manifest())
    np.savez(tmp_path / "flat.npz", images=images, detections=np.zeros((2, 6)))
    with pytest.raises(SelfTestMismatch, match="detections must be 2×K×6"):
        DETECT.self_test(FakeDetector(), tmp_path / "flat.npz", _manifest())
    bad_ids = np.zeros((2, 1, 6))
    bad_ids[:, 0] = (0, 0, 1, 1, 0.9, 5)
    np.savez(tmp_path / "ids.npz", images=images, detections=bad_ids)
    with pytest.raises(SelfTestMismatch, match="class ids \\[5.0\\] do not index"):
        DETECT.self_test(FakeDetector(), tmp_path / "ids.npz", _manifest())


# ------------------------------------------------------------------------------------------ feedback


def test_a_confirmed_defect_takes_the_class_of_the_strongest_box() -> None:
    assert DETECT.confirmed_defect_label(_manifest(), "a.png", "stain") == ("stain", "")
    label, why = DETECT.confirmed_defect_label(_manifest(), "a.png", "good")
    assert label is None and "'a.png,confirmed_defect,<class>'" in why and "['dent', 'scratch', 'stain']" in why
    label, why = DETECT.confirmed_defect_label(_manifest(), "b.png", "crack")
    assert label is None and "'crack'" in why


def test_a_window_counts_the_boxes_over_the_threshold_in_all_and_per_class() -> None:
    from datetime import UTC, datetime

    from edge_sync.agent.windows import AgentState, closed_window, count_decision, new_window

    outputs = _detections((1, 1, 4, 3, 0.62, 2), (0, 0, 2, 2, 0.91, 1), (5, 5, 7, 7, 0.30, 0))
    counts = DETECT.window_counts(DETECT.decode(outputs, _manifest()), _manifest())
    assert counts == {"boxes": 2, "boxes:scratch": 1, "boxes:stain": 1} and DETECT.window_counters == ("boxes", "boxes:")
    assert decoder_for(Task.CLASSIFY).window_counts(None, None) == {}  # type: ignore[arg-type]
    now = datetime(2026, 12, 7, tzinfo=UTC)
    window = new_window(AgentState(), "cam-1", "l1-a-v1", "l1", now)
    for _ in range(3):
        count_decision(window, rejected=True, defect_score=0.91, brightness=120.0, counts=counts)
    closed = closed_window(window, "cam-1", now)
    assert closed.counters == {"boxes": 6, "boxes:scratch": 3, "boxes:stain": 3}
    assert "counters" in closed.model_dump() and "counters" not in closed.model_copy(update={"counters": {}}).model_dump()


def test_a_window_refuses_counters_that_are_not_counts() -> None:
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from edge_sync.contract import MetricWindow

    base = dict(
        window_id="w1", device_id="cam-1", line="l1", model_version="l1-a-v1", started_at=datetime(2026, 12, 7, tzinfo=UTC),
        ended_at=datetime(2026, 12, 7, tzinfo=UTC), inspected=0, rejected=0, confirmed_defects=0, false_rejects=0,
        escapes_found=0, score_histogram=(0,) * 20, input_brightness_histogram=(0,) * 16,
    )
    assert MetricWindow(**base, counters={"boxes:scratch": 4}).counters == {"boxes:scratch": 4}
    for bad in ({"boxes": True}, {"boxes": "3"}, {"boxes": -1}, {"bad name!": 1}, {f"c{i}": 1 for i in range(65)}):
        with pytest.raises(ValidationError):
            MetricWindow(**base, counters=bad)
