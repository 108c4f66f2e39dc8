"""The object-detection decoder: boxes in, the class of the strongest box and a defect score out.

The exported detector carries its own pre- and post-processing, NMS included, so its one named
output ``detections`` is float32 1×K×6: rows ``[x_min, y_min, x_max, y_max, score, class_id]`` in the
model input's pixels, padded with rows of score 0. ``class_id`` indexes the manifest's **defect**
classes: ``manifest.classes`` without the good class, in manifest order (the detector never draws a
box of the good class; an image with no box over the threshold is a good part). Doing the NMS in the
graph means a device cannot get it wrong, and this decoder only filters and counts.

A box *counts* when its score is at least ``threshold`` and its area at least ``min_box_area`` (px²).
The defect score is the highest score of a box of at least ``min_box_area`` (0 without one), so the
device rejects exactly when ``defect score >= threshold``, the rule every task's histograms and rates
share; the platform's report scores are the same maxima (:meth:`DetectDecoder.device_scores`). The
label is the class of the highest-scoring counted box, else the good class.

The parameters live only in the ``decoder`` block, ``{"name": "detect", "version": 1, "threshold": t,
"min_box_area": a}``, so a detection manifest needs schema 4 (an agent that knows only 1 to 3 refuses
it by its version). ``threshold`` is mirrored by the top-level field every manifest keeps;
``min_box_area`` has no top-level field (adding one would change the manifest for every task).

The self-test file (``selftest.npz``, read by :func:`read_selftest`) holds what the platform's
exporter must write for this decoder: ``images`` uint8 N×H×W×3 (the model input's size) and
``detections`` float32 N×K×6, the platform's own rows for those images in the format above.
"""

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydantic import Field

from edge_sync.contract.decoders.base import Decoder, DecoderParams, SelfTestMismatch, Verdict, read_selftest
from edge_sync.contract.manifest import DECODER_SCHEMA_VERSION, SELFTEST_FILE, Task
from edge_sync.inference import InferenceError, ModelFormat, Predictor

if TYPE_CHECKING:
    from edge_sync.contract.manifest import DeploymentManifest

__all__ = [
    "DETAIL_MAX_BOXES",
    "DETECTIONS",
    "INT8_MIN_AGREEMENT",
    "SELFTEST_MATCH_IOU",
    "SELFTEST_MIN_SCORE",
    "SELFTEST_SCORE_TOLERANCE",
    "DetectDecoder",
    "DetectParams",
    "unpack_detail",
]

logger = logging.getLogger(__name__)

DETECTIONS = "detections"
"""The name of the detector's output, and of the platform's rows in the self-test."""
_COLUMNS = 6
DETAIL_MAX_BOXES = 20
"""Most counted boxes a decision keeps for audits (the strongest first); the counts stay complete."""
SELFTEST_MATCH_IOU = 0.9
"""A device box reproduces a platform box when it has the same class and at least this IoU."""
SELFTEST_SCORE_TOLERANCE = 1e-3
"""Largest |score_device - score_torch| of a matched box for FP32 formats. The box score is a
probability, like a classifier's, so the classifier's self-test bound serves: honest rounding moves it
by about 1e-5, a runtime that does not run the validated model by far more."""
SELFTEST_MIN_SCORE = 0.05
"""Boxes scoring below this (or below the threshold, if that is lower) are not compared: a detector's
weakest boxes come and go with rounding inside the graph's NMS and decide nothing."""
INT8_MIN_AGREEMENT = 0.9
"""Share of self-test images on which an INT8 model must reach torch's verdict (label and pass/reject)."""


class DetectParams(DecoderParams):
    threshold: float = Field(gt=0.0, le=1.0, allow_inf_nan=False, description="a box counts when its score >= this")
    min_box_area: float = Field(
        0.0, ge=0.0, allow_inf_nan=False, description="a box counts only with at least this area (model-input px²)"
    )


def unpack_detail(
    detail: tuple[float, ...], manifest: "DeploymentManifest"
) -> tuple[dict[str, int], list[tuple[float, ...]]]:
    """The counts per defect class and the kept boxes from a detection verdict's ``detail``.

    ``detail`` is flat because decisions store plain numbers: ``(n_counted, count of defect class 0,
    ..., count of defect class D-1, then up to DETAIL_MAX_BOXES rows of x_min, y_min, x_max, y_max,
    score, class_id)``, strongest box first."""
    defects = _defect_classes(manifest)
    head = 1 + len(defects)
    if len(detail) < head or (len(detail) - head) % _COLUMNS:
        raise ValueError(
            f"a detection detail for {len(defects)} defect classes has 1 + {len(defects)} counts and rows of "
            f"{_COLUMNS}, got {len(detail)} numbers; it was not written by this decoder for this manifest"
        )
    counts = {name: int(detail[1 + index]) for index, name in enumerate(defects)}
    rows = [tuple(detail[start : start + _COLUMNS]) for start in range(head, len(detail), _COLUMNS)]
    return counts, rows


def _defect_classes(manifest: "DeploymentManifest") -> list[str]:
    """The classes a detector's ``class_id`` indexes: the manifest's classes without the good one."""
    return [name for name in manifest.classes if name != manifest.good_class]


def _output(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """The detector's ``detections`` for one image as K×6 float64, checked for shape and finiteness."""
    if DETECTIONS not in outputs:
        raise InferenceError(
            f"the model has no {DETECTIONS!r} output (outputs: {', '.join(outputs)}); it is not an object "
            "detector exported by the platform"
        )
    given = np.asarray(outputs[DETECTIONS], dtype=np.float64)
    raw = given[0] if given.ndim == 3 and given.shape[0] == 1 else given
    if raw.ndim != 2 or raw.shape[1] != _COLUMNS:
        raise InferenceError(
            f"the detector's {DETECTIONS!r} output has shape {given.shape}; expected 1×K×{_COLUMNS} rows "
            "[x_min, y_min, x_max, y_max, score, class_id]; re-export the model with the platform's exporter"
        )
    if not np.isfinite(raw).all():
        raise InferenceError("the detector returned non-finite detections; no decision can be made on them")
    return raw


def _rows(outputs: Mapping[str, np.ndarray], n_defect_classes: int) -> np.ndarray:
    """The detector's real rows for one image (padding of score 0 dropped), whose class ids must
    index the manifest's defect classes."""
    raw = _output(outputs)
    rows = raw[raw[:, 4] > 0.0]
    ids = rows[:, 5]
    if len(rows) and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= n_defect_classes):
        raise InferenceError(
            f"the detector's class ids {sorted(set(ids.tolist()))[:10]} do not index the manifest's "
            f"{n_defect_classes} defect classes; the package's model and manifest do not belong together"
        )
    return rows


def _areas(rows: np.ndarray) -> np.ndarray:
    return np.clip(rows[:, 2] - rows[:, 0], 0.0, None) * np.clip(rows[:, 3] - rows[:, 1], 0.0, None)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``others`` (M×4), corners in pixels."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0, None)
    inter = width * height
    union = _areas(box[None])[0] + _areas(others) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _box_differences(expected: np.ndarray, got: np.ndarray, floor: float) -> list[str]:
    """What the device's rows for one image fail to reproduce of the platform's: boxes at or over
    ``floor`` that have no counterpart (same class, IoU >= SELFTEST_MATCH_IOU) or whose score differs by
    more than the tolerance. A box within the tolerance of the floor may be missing on either side."""
    margin = floor + SELFTEST_SCORE_TOLERANCE
    unmatched = np.ones(len(got), dtype=bool)
    problems: list[str] = []
    for row in expected[np.argsort(-expected[:, 4], kind="stable")]:
        candidates = unmatched & (got[:, 5] == row[5])
        overlaps = np.where(candidates, _iou(row[:4], got[:, :4]), 0.0) if len(got) else np.zeros(0)
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        if best < 0 or overlaps[best] < SELFTEST_MATCH_IOU:
            if row[4] >= margin:
                problems.append(f"no device box for class {int(row[5])} at {np.round(row[:4], 1).tolist()} "
                                f"(score {row[4]:.4f})")
            continue
        unmatched[best] = False
        drift = abs(float(got[best, 4] - row[4]))
        if max(row[4], got[best, 4]) >= floor and drift > SELFTEST_SCORE_TOLERANCE:
            problems.append(f"class {int(row[5])} box scores {got[best, 4]:.4f} on the device, {row[4]:.4f} in torch")
    for row in got[unmatched & (got[:, 4] >= margin)]:
        problems.append(f"an extra device box for class {int(row[5])} at {np.round(row[:4], 1).tolist()} "
                        f"(score {row[4]:.4f})")
    return problems


class DetectDecoder(Decoder):
    """Decides by the detector's boxes (see the module docstring).

    A metric window counts, besides the shared counters, the boxes that passed the threshold: in all
    (``boxes``) and per defect class (``boxes:<class>``); each decision keeps its boxes in ``detail``
    (:func:`unpack_detail`).
    """

    task = Task.DETECT
    params_model = DetectParams
    window_counters = ("boxes", "boxes:")

    def window_counts(self, verdict: Verdict, manifest: "DeploymentManifest") -> dict[str, int]:
        counts, _ = unpack_detail(verdict.detail, manifest)
        return {"boxes": int(sum(counts.values())), **{f"boxes:{name}": n for name, n in counts.items() if n}}

    # ------------------------------------------------------------------------------ manifest

    def check_legacy(self, manifest: "DeploymentManifest") -> None:
        if manifest.threshold is None or manifest.good_class is None:
            raise ValueError(
                "a detection model needs its threshold and good_class: a device counts boxes at that score and "
                "calls an image without one good; rebuild the manifest with the current platform"
            )
        if len(_defect_classes(manifest)) == 0:
            raise ValueError(
                f"a detection model needs at least one defect class besides the good class {manifest.good_class!r}, "
                f"got classes {list(manifest.classes)}; rebuild the manifest with the model's box classes"
            )
        if manifest.schema_version < DECODER_SCHEMA_VERSION:
            raise ValueError(
                f"a detection model needs manifest schema version {DECODER_SCHEMA_VERSION} (this one says "
                f"{manifest.schema_version}): its parameters live in the decoder block; rebuild the manifest "
                "with the current platform"
            )

    def legacy_params(self, manifest: "DeploymentManifest") -> DecoderParams:
        """The threshold as the top-level field states it; ``min_box_area`` has no top-level field, so it
        is the block's own (the block is always there: detection needs schema 4)."""
        block = manifest.decoder.params() if manifest.decoder is not None else {}
        return DetectParams(threshold=cast(float, manifest.threshold), min_box_area=block.get("min_box_area", 0.0))

    def manifest_fields(self, calibrated_threshold: float | None, *, min_box_area: float = 0.0) -> dict[str, Any]:
        """Schema 4 fields for the report's calibrated box-score threshold: the top-level ``threshold``
        and the block (``min_box_area`` only there, as the manifest has no top-level field for it)."""
        if calibrated_threshold is None or not (
            math.isfinite(float(calibrated_threshold)) and 0.0 < float(calibrated_threshold) <= 1.0
        ):
            raise ValueError(
                f"the detector's calibrated threshold is {calibrated_threshold}: a device needs a box-score threshold "
                "in (0, 1]; re-run the validation report with held-out images"
            )
        if not (math.isfinite(float(min_box_area)) and float(min_box_area) >= 0.0):
            raise ValueError(f"min_box_area {min_box_area}: needs a finite area >= 0 px² (0 counts every box)")
        params = DetectParams(threshold=float(calibrated_threshold), min_box_area=float(min_box_area))
        return {"schema_version": DECODER_SCHEMA_VERSION, "threshold": params.threshold, "decoder": self.block(params)}

    def device_scores(self, raw_scores: Iterable[float], fields: Mapping[str, Any]) -> list[float]:
        """A detector's report scores are already its images' highest box scores, the device's units;
        they are checked finite and clipped to [0, 1] (a graph's sigmoid may round just past 1)."""
        scores = [float(score) for score in raw_scores]
        if bad := [score for score in scores if not math.isfinite(score)]:
            raise ValueError(
                f"{len(bad)} of {len(scores)} report scores are not finite (first: {bad[0]}); re-run the "
                "validation report"
            )
        return [min(max(score, 0.0), 1.0) for score in scores]

    # ------------------------------------------------------------------------------ device

    def run(self, predictor: Predictor, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = predictor.outputs(pixels[None])
        _output(outputs)  # shape and finiteness; the class ids are checked against the manifest in decode
        return {DETECTIONS: outputs[DETECTIONS]}

    def decode(self, outputs: Mapping[str, np.ndarray], manifest: "DeploymentManifest") -> Verdict:
        params = cast(DetectParams, self.params(manifest))
        good_class = manifest.good_class
        if good_class is None:  # the manifest refuses this; kept for the type checker
            raise ValueError(f"model {manifest.model_version}: a detection manifest needs its good_class")
        defects = _defect_classes(manifest)
        rows = _rows(outputs, len(defects))
        rows = rows[_areas(rows) >= params.min_box_area]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")]
        counted = rows[rows[:, 4] >= params.threshold]
        score = min(max(float(rows[0, 4]), 0.0), 1.0) if len(rows) else 0.0
        counts = np.bincount(counted[:, 5].astype(np.int64), minlength=len(defects))
        kept = [
            value
            for row in counted[:DETAIL_MAX_BOXES]
            for value in (*np.round(row[:4], 1).tolist(), round(float(row[4]), 4), float(row[5]))
        ]
        return Verdict(
            label=defects[int(counted[0, 5])] if len(counted) else good_class,
            defect_score=score,
            outcome="reject" if len(counted) else "pass",
            detail=(float(len(counted)), *(float(c) for c in counts), *kept),
        )

    def self_test(self, predictor: Predictor, path: Path, manifest: "DeploymentManifest") -> None:
        """Compare the device's boxes on the self-test images with the platform's torch ones.

        FP32 formats must reproduce every box scoring at least ``min(threshold, SELFTEST_MIN_SCORE)``:
        a device box of the same class with IoU >= :data:`SELFTEST_MATCH_IOU` whose score is within
        :data:`SELFTEST_SCORE_TOLERANCE`, and no extra box over that floor (a box within the tolerance of
        the floor is a tie and may be missing on either side). INT8 must reach torch's verdict (label
        and pass/reject) on at least :data:`INT8_MIN_AGREEMENT` of the images.
        """
        version = manifest.model_version
        images, expected = read_selftest(path, manifest, DETECTIONS)
        if expected.ndim != 3 or expected.shape[0] != len(images) or expected.shape[2] != _COLUMNS:
            raise SelfTestMismatch(
                f"model {version}: {SELFTEST_FILE} detections must be {len(images)}×K×{_COLUMNS} (images × rows "
                f"[x_min, y_min, x_max, y_max, score, class_id]), got {expected.shape}; regenerate the self-test"
            )
        n_defects = len(_defect_classes(manifest))
        try:
            reference = [_rows({DETECTIONS: rows}, n_defects) for rows in expected]
            got = [_rows(self.run(predictor, image), n_defects) for image in images]
        except InferenceError as exc:
            raise SelfTestMismatch(f"model {version}: self-test rows unusable or inference failed: {exc}") from exc
        if ModelFormat(manifest.model_format) is ModelFormat.ONNX_INT8:
            agree = [
                self.decode({DETECTIONS: a}, manifest).label == self.decode({DETECTIONS: b}, manifest).label
                for a, b in zip(reference, got, strict=True)
            ]
            agreement = float(np.mean(agree))
            if agreement < INT8_MIN_AGREEMENT:
                raise SelfTestMismatch(
                    f"model {version} (onnx_int8): reaches torch's verdict on {agreement:.0%} of the {len(images)} "
                    f"self-test images, at least {INT8_MIN_AGREEMENT:.0%} required; the quantised model does not run "
                    "as validated on this device; keep the current model and report the device's CPU"
                )
            logger.info("self-test of %s passed: %.0f%% verdict agreement", version, agreement * 100)
            return
        floor = min(cast(DetectParams, self.params(manifest)).threshold, SELFTEST_MIN_SCORE)
        failing = {index: problems for index, (a, b) in enumerate(zip(reference, got, strict=True))
                   if (problems := _box_differences(a, b, floor))}
        if failing:
            first, problems = next(iter(failing.items()))
            raise SelfTestMismatch(
                f"model {version} ({manifest.model_format}): self-test boxes differ from the platform's on "
                f"{len(failing)} of {len(images)} images (image {first}: {'; '.join(problems[:3])}; match: same "
                f"class, IoU >= {SELFTEST_MATCH_IOU}, score within {SELFTEST_SCORE_TOLERANCE:.0e}); this device "
                "does not run the validated detector; the current model keeps running"
            )
        logger.info("self-test of %s passed: boxes of %d images reproduced", version, len(images))

    def confirmed_defect_label(
        self, manifest: "DeploymentManifest", image: str, predicted_class: str
    ) -> tuple[str | None, str]:
        """A detector names the defect: the class of its strongest box is the label, if it is a defect
        class (the boxes themselves are drawn when the image is annotated for training)."""
        if predicted_class not in manifest.classes or predicted_class == manifest.good_class:
            return None, (
                f"the model found no box of a defect class ({predicted_class!r}); append "
                f"'{image},confirmed_defect,<class>' with one of {_defect_classes(manifest)} to label it"
            )
        return predicted_class, ""
