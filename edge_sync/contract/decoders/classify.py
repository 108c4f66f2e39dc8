"""The classification decoder: class probabilities in, the top class and a defect score out.

The exported classifier carries its own normalisation and softmax, so its first output is the N×C
class probabilities (``Predictor.predict``). The defect score is ``1 - P(good)``; with a threshold the
device rejects at ``score >= threshold``, without one it rejects whenever the top class is not the
good class, and a model without a good class only records its top class (score ``1 - P(top)``).
Its only parameter is that threshold (``None`` allowed), so the ``decoder`` block is
``{"name": "classify", "version": 1, "threshold": t | null}``.
"""

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydantic import Field

from edge_sync.contract.decoders.base import Decoder, DecoderParams, Outcome, SelfTestMismatch, Verdict, read_selftest
from edge_sync.contract.manifest import SELFTEST_FILE, Task
from edge_sync.inference import InferenceError, ModelFormat, Predictor

if TYPE_CHECKING:
    from edge_sync.contract.manifest import DeploymentManifest

__all__ = ["FP32_SELFTEST_TOLERANCE", "INT8_MIN_AGREEMENT", "PROBABILITIES", "ClassifyDecoder", "ClassifyParams"]

logger = logging.getLogger(__name__)

FP32_SELFTEST_TOLERANCE = 1e-3
"""Largest accepted |p_device - p_torch| for FP32 formats; the platform's parity gate is tighter
(1e-4), so this only catches a runtime that does not run the validated model (wrong file, FP16/bf16
execution, a different runtime build), never honest rounding."""
INT8_MIN_AGREEMENT = 0.9
"""Share of self-test images on which an INT8 model must predict torch's class."""
PROBABILITIES = "probabilities"
"""The name of the class probabilities, in :meth:`ClassifyDecoder.run`'s outputs and in the self-test."""


class ClassifyParams(DecoderParams):
    threshold: float | None = Field(
        ..., gt=0.0, le=1.0, allow_inf_nan=False,
        description="reject when 1 - P(good) >= threshold; None: reject when the top class is not the good one",
    )


class ClassifyDecoder(Decoder):
    """Decides by the probability of the good class (see the module docstring)."""

    task = Task.CLASSIFY
    params_model = ClassifyParams

    def manifest_fields(self, calibrated_threshold: float | None) -> dict[str, Any]:
        """Schema 4 fields for the calibrated threshold (None: no threshold, decide by the top class)."""
        if calibrated_threshold is not None and not (
            math.isfinite(float(calibrated_threshold)) and 0.0 < float(calibrated_threshold) <= 1.0
        ):
            raise ValueError(
                f"the classifier's calibrated threshold is {calibrated_threshold}: a device needs one in (0, 1] "
                "(or none, to decide by the top class); re-run the validation report"
            )
        threshold = None if calibrated_threshold is None else float(calibrated_threshold)
        return self.fields_for(ClassifyParams(threshold=threshold))

    def device_scores(self, raw_scores: Iterable[float], fields: Mapping[str, Any]) -> list[float]:
        """A classifier's report scores are already ``1 - P(good)``, the device's units."""
        return [float(score) for score in raw_scores]

    def run(self, predictor: Predictor, pixels: np.ndarray) -> dict[str, np.ndarray]:
        return {PROBABILITIES: predictor.predict(pixels[None])[0]}

    def decode(self, outputs: Mapping[str, np.ndarray], manifest: "DeploymentManifest") -> Verdict:
        threshold = cast(ClassifyParams, self.params(manifest)).threshold
        probs = np.asarray(outputs[PROBABILITIES], dtype=np.float64)
        top = int(np.argmax(probs))
        predicted = manifest.classes[top]
        outcome: Outcome
        if manifest.good_class is not None:
            score = 1.0 - float(probs[manifest.classes.index(manifest.good_class)])
            if threshold is not None:
                outcome = "reject" if score >= threshold else "pass"
            else:
                outcome = "pass" if predicted == manifest.good_class else "reject"
        else:
            score = 1.0 - float(probs[top])
            outcome = "recorded"
        return Verdict(
            label=predicted,
            defect_score=min(max(score, 0.0), 1.0),
            outcome=outcome,
            detail=tuple(float(p) for p in probs),
        )

    def self_test(self, predictor: Predictor, path: Path, manifest: "DeploymentManifest") -> None:
        """Compare the device's probabilities on the self-test images with the platform's torch ones.

        FP32 formats must match within :data:`FP32_SELFTEST_TOLERANCE` and predict torch's class on every
        image, except where torch itself scores the device's class within that tolerance of its top one
        (a tie decided by rounding, the same exemption as the platform's parity check). INT8 must agree
        on at least :data:`INT8_MIN_AGREEMENT` of the images.
        """
        version = manifest.model_version
        images, expected = read_selftest(path, manifest, PROBABILITIES)
        n_classes = len(manifest.classes)
        if expected.ndim != 2 or expected.shape != (len(images), n_classes) or not np.isfinite(expected).all():
            raise SelfTestMismatch(
                f"model {version}: {SELFTEST_FILE} probabilities must be finite {len(images)}×{n_classes} "
                f"(images × classes {list(manifest.classes)}), got {expected.shape}"
            )
        try:
            got = predictor.predict(images)
        except InferenceError as exc:
            raise SelfTestMismatch(f"model {version}: self-test inference failed: {exc}") from exc
        if got.shape != expected.shape:
            raise SelfTestMismatch(
                f"model {version}: the model returns {got.shape} probabilities for the self-test, the platform "
                f"recorded {expected.shape}; the package's model and manifest do not belong together"
            )
        rows = np.arange(len(images))
        reference_top = expected.argmax(axis=1)
        device_top = got.argmax(axis=1)
        if ModelFormat(manifest.model_format) is ModelFormat.ONNX_INT8:
            agreement = float((reference_top == device_top).mean())
            if agreement < INT8_MIN_AGREEMENT:
                raise SelfTestMismatch(
                    f"model {version} (onnx_int8): predicts torch's class on {agreement:.0%} of the {len(images)} "
                    f"self-test images, at least {INT8_MIN_AGREEMENT:.0%} required; the quantised model does not "
                    "run as validated on this device; keep the current model and report the device's CPU"
                )
            logger.info("self-test of %s passed: %.0f%% class agreement", version, agreement * 100)
            return
        difference = float(np.abs(got.astype(np.float64) - expected).max())
        tie = expected[rows, device_top] >= expected[rows, reference_top] - FP32_SELFTEST_TOLERANCE
        disagree = int(((reference_top != device_top) & ~tie).sum())
        if difference > FP32_SELFTEST_TOLERANCE or disagree:
            raise SelfTestMismatch(
                f"model {version} ({manifest.model_format}): self-test max |p_device - p_torch| = {difference:.2e} "
                f"(limit {FP32_SELFTEST_TOLERANCE:.0e}), predicted class differs on {disagree} of {len(images)} "
                "images; this device does not run the validated model; the current model keeps running"
            )
        logger.info("self-test of %s passed: max |diff| %.1e on %d images", version, difference, len(images))

    def confirmed_defect_label(
        self, manifest: "DeploymentManifest", image: str, predicted_class: str
    ) -> tuple[str | None, str]:
        """A classifier names the defect: its predicted class is the label, if it is a defect class."""
        if predicted_class not in manifest.classes or predicted_class == manifest.good_class:
            return None, (
                f"the model predicted {predicted_class!r}, which is not a defect class of the active model; append "
                f"'{image},confirmed_defect,<class>' to label it"
            )
        return predicted_class, ""
