"""The anomaly decoder: an image score in, pass or reject at the platform's calibrated threshold out.

The exported detector outputs an anomaly map and an image score (``anomaly_map``, ``score``). The
device decides on the score: its defect score is :func:`anomaly_defect_score` (the raw score over the
manifest's ``score_scale``, clipped to [0, 1]) and it rejects at the manifest's threshold. The
platform sets ``score_scale`` to twice the calibrated raw threshold and the threshold to 0.5, so the
device rejects exactly where the validated threshold rejects and the score histograms of every task
share the bins over [0, 1]. The ``decoder`` block is
``{"name": "anomaly", "version": 1, "threshold": 0.5, "score_scale": s}`` (s > 0); manifests of schema
3 carry the same two numbers as top-level fields only.
"""

import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from pydantic import Field

from edge_sync.contract.decoders.base import (
    Decoder,
    DecoderParams,
    SelfTestMismatch,
    Verdict,
    finite_positive,
    read_selftest,
)
from edge_sync.contract.manifest import SELFTEST_FILE, Task
from edge_sync.inference import InferenceError, Predictor

if TYPE_CHECKING:
    from edge_sync.contract.manifest import DeploymentManifest

__all__ = [
    "ANOMALY_SCHEMA_VERSION",
    "ANOMALY_SELFTEST_TOLERANCE",
    "BLOCK_THRESHOLD",
    "AnomalyDecoder",
    "AnomalyParams",
    "anomaly_defect_score",
]

logger = logging.getLogger(__name__)

ANOMALY_SCHEMA_VERSION = 3
"""The first manifest schema with anomaly models (``score_scale``): an agent that knows only 1 and 2
refuses an anomaly model by its version."""
ANOMALY_SELFTEST_TOLERANCE = 1e-3
"""Largest |score_device - score_torch| accepted, relative to the largest self-test score."""
BLOCK_THRESHOLD = 0.5
"""The threshold of every ``decoder`` block: the scale puts the calibrated raw threshold there."""
SCORE_OUTPUT = "score"
SELFTEST_SCORES = "scores"
"""The self-test's array of the platform's raw image scores."""
LABEL = "anomaly"
"""The class a rejected part is recorded as: the detector flags a part without naming its defect."""


def anomaly_defect_score(raw_score: float, score_scale: float) -> float:
    """An anomaly detector's defect score in [0, 1]: its raw image score over the manifest's
    ``score_scale``, clipped. The platform sets the scale to twice the calibrated raw threshold, so
    the threshold is 0.5 and the score histograms of every task share the bins over [0, 1]."""
    raw, scale = float(raw_score), float(score_scale)
    if not (math.isfinite(raw) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"anomaly score {raw} with score_scale {scale}: both must be finite and the scale positive")
    return min(max(raw / scale, 0.0), 1.0)


class AnomalyParams(DecoderParams):
    threshold: float = Field(gt=0.0, le=1.0, allow_inf_nan=False, description="reject when the defect score >= this")
    score_scale: float = Field(
        gt=0.0, allow_inf_nan=False, description="the raw image score is divided by this for the defect score"
    )


def _raw_score(outputs: Mapping[str, np.ndarray]) -> float:
    """The detector's raw image score among its named outputs (one image)."""
    if SCORE_OUTPUT not in outputs:
        raise InferenceError(
            f"the model has no {SCORE_OUTPUT!r} output (outputs: {', '.join(outputs)}); it is not an anomaly detector "
            "exported by the platform"
        )
    score = float(np.asarray(outputs[SCORE_OUTPUT]).reshape(-1)[0])
    if not np.isfinite(score):
        raise InferenceError(f"the detector returned a non-finite score ({score}); no decision can be made on it")
    return score


class AnomalyDecoder(Decoder):
    """Decides by the detector's image score (see the module docstring)."""

    task = Task.ANOMALY
    params_model = AnomalyParams
    owned_fields = ("score_scale",)

    # ------------------------------------------------------------------------------ manifest

    def check_legacy(self, manifest: "DeploymentManifest") -> None:
        if manifest.threshold is None or manifest.good_class is None:
            raise ValueError(
                "an anomaly model needs its threshold and good_class: a device decides by them; rebuild the manifest"
            )
        if manifest.score_scale is None:
            raise ValueError(
                f"task {manifest.task.value!r} with score_scale {manifest.score_scale}: an anomaly model needs its "
                "score_scale and no other task has one; rebuild the manifest with the current platform"
            )
        if manifest.schema_version < ANOMALY_SCHEMA_VERSION:
            raise ValueError(
                f"an anomaly model needs manifest schema version {ANOMALY_SCHEMA_VERSION} (this one says "
                f"{manifest.schema_version}); rebuild the manifest with the current platform"
            )

    def foreign_field_problem(self, manifest: "DeploymentManifest") -> str | None:
        if manifest.score_scale is None:
            return None
        return (
            f"task {manifest.task.value!r} with score_scale {manifest.score_scale}: an anomaly model needs its "
            "score_scale and no other task has one; rebuild the manifest with the current platform"
        )

    def check_params(self, params: DecoderParams) -> None:
        threshold = cast(AnomalyParams, params).threshold
        if threshold != BLOCK_THRESHOLD:
            raise ValueError(
                f"the 'anomaly' decoder block has threshold {threshold}; it must be {BLOCK_THRESHOLD} (score_scale is "
                "twice the calibrated raw threshold, so the device rejects at 0.5); rebuild the manifest with the "
                "current platform"
            )

    def manifest_fields(self, calibrated_threshold: float | None) -> dict[str, Any]:
        """Schema 4 fields from the report's raw calibrated threshold: ``score_scale`` is twice it and
        the threshold 0.5, so the device rejects exactly where the report's threshold rejects."""
        if not finite_positive(calibrated_threshold):
            raise ValueError(
                f"the anomaly model's calibrated threshold is {calibrated_threshold}: a device needs a positive one; "
                "re-run the validation report with held-out good images"
            )
        scale = 2.0 * float(cast(float, calibrated_threshold))
        return self.fields_for(AnomalyParams(threshold=BLOCK_THRESHOLD, score_scale=scale))

    def device_scores(self, raw_scores: Iterable[float], fields: Mapping[str, Any]) -> list[float]:
        """Raw detector scores divided by the fields' ``score_scale`` (the block's, else the legacy one)."""
        block = fields.get("decoder")
        scale = block.get("score_scale") if isinstance(block, Mapping) else fields.get("score_scale")
        if not finite_positive(scale):
            raise ValueError(
                f"fields {sorted(fields)} carry score_scale {scale!r}; pass what manifest_fields returned for "
                "this model (a positive score_scale)"
            )
        return [anomaly_defect_score(score, float(scale)) for score in raw_scores]

    # ------------------------------------------------------------------------------ device

    def run(self, predictor: Predictor, pixels: np.ndarray) -> dict[str, np.ndarray]:
        outputs = predictor.outputs(pixels[None])
        _raw_score(outputs)  # the detector must give a finite score, or no decision can be made
        return outputs

    def decode(self, outputs: Mapping[str, np.ndarray], manifest: "DeploymentManifest") -> Verdict:
        params = cast(AnomalyParams, self.params(manifest))
        good_class = manifest.good_class
        if good_class is None:  # the manifest refuses this; kept for the type checker
            raise ValueError(f"model {manifest.model_version}: an anomaly manifest needs its good_class")
        raw_score = _raw_score(outputs)
        score = anomaly_defect_score(raw_score, params.score_scale)
        rejected = score >= params.threshold
        return Verdict(
            label=LABEL if rejected else good_class,
            defect_score=score,
            outcome="reject" if rejected else "pass",
            detail=(float(raw_score),),  # the raw score, kept for audits
        )

    def self_test(self, predictor: Predictor, path: Path, manifest: "DeploymentManifest") -> None:
        """The device must reproduce the platform's torch scores on the package's self-test images, and
        decide like them at the threshold (a score within the tolerance of it is a tie, not a failure)."""
        version = manifest.model_version
        images, expected = read_selftest(path, manifest, SELFTEST_SCORES)
        expected = expected.astype(np.float64)
        if expected.shape != (len(images),) or not np.isfinite(expected).all():
            raise SelfTestMismatch(
                f"model {version}: {SELFTEST_FILE} scores must be {len(images)} finite numbers, got {expected.shape}"
            )
        try:
            got = np.array([_raw_score(self.run(predictor, image)) for image in images], dtype=np.float64)
        except InferenceError as exc:
            raise SelfTestMismatch(f"model {version}: self-test inference failed: {exc}") from exc
        scale = max(float(np.abs(expected).max()), 1e-12)
        relative = float(np.abs(got - expected).max()) / scale
        params = cast(AnomalyParams, self.params(manifest))
        raw_threshold = params.threshold * params.score_scale
        tie = np.abs(expected - raw_threshold) <= ANOMALY_SELFTEST_TOLERANCE * scale
        differing = int((((got >= raw_threshold) != (expected >= raw_threshold)) & ~tie).sum())
        if relative > ANOMALY_SELFTEST_TOLERANCE or differing:
            raise SelfTestMismatch(
                f"model {version} ({manifest.model_format}): self-test scores differ from the platform's by "
                f"{relative:.2e} of the largest (limit {ANOMALY_SELFTEST_TOLERANCE:.0e}), decisions differ on "
                f"{differing} of {len(images)} images; this device does not run the validated detector; the "
                "current model keeps running"
            )
        logger.info("self-test of %s passed: relative score difference %.1e on %d images", version, relative, len(images))

    def confirmed_defect_label(
        self, manifest: "DeploymentManifest", image: str, predicted_class: str
    ) -> tuple[str | None, str]:
        """A detector flags a part without naming its defect type: the operator must name it."""
        return None, (
            f"an anomaly model flags a part without naming its defect type; append '{image},confirmed_defect,<type>' "
            f"with one of {[c for c in manifest.classes if c != manifest.good_class]}"
        )
