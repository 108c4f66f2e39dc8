"""What a device does differently for an anomaly-detection model: its self-test and its decision.

The exported detector outputs an anomaly map and an image score (``anomaly_map``, ``score``). The
device decides on the score: its defect score is the contract's :func:`anomaly_defect_score`
(the raw score over the manifest's ``score_scale``, clipped to [0, 1]) and it rejects at the
manifest's threshold, exactly where the platform's validated threshold rejects. Everything else
(windows, histograms, feedback, outbox) is the same as for a classifier.
"""

import logging
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_sync.agent.errors import SelfTestFailed
from edge_sync.agent.inspector import Decision
from edge_sync.contract import SELFTEST_FILE, DeploymentManifest, anomaly_defect_score
from edge_sync.inference import InferenceError, Predictor

__all__ = ["ANOMALY_SELFTEST_TOLERANCE", "anomaly_raw_score", "anomaly_self_test", "decide_anomaly"]

logger = logging.getLogger(__name__)

ANOMALY_SELFTEST_TOLERANCE = 1e-3
"""Largest |score_device - score_torch| accepted, relative to the largest self-test score."""
SCORE_OUTPUT = "score"


def anomaly_raw_score(predictor: Predictor, pixels: np.ndarray) -> float:
    """The detector's raw image score for one model input (uint8 H×W×3)."""
    outputs = predictor.outputs(pixels[None])
    if SCORE_OUTPUT not in outputs:
        raise InferenceError(
            f"the model has no {SCORE_OUTPUT!r} output (outputs: {', '.join(outputs)}); it is not an anomaly detector "
            "exported by the platform"
        )
    score = float(np.asarray(outputs[SCORE_OUTPUT]).reshape(-1)[0])
    if not np.isfinite(score):
        raise InferenceError(f"the detector returned a non-finite score ({score}); no decision can be made on it")
    return score


def anomaly_self_test(predictor: Predictor, path: Path, manifest: DeploymentManifest) -> None:
    """The device must reproduce the platform's torch scores on the package's self-test images, and
    decide like them at the threshold (a score within the tolerance of it is a tie, not a failure)."""
    from edge_sync.agent.installer import read_selftest

    version = manifest.model_version
    images, expected = read_selftest(path, manifest, "scores")
    expected = expected.astype(np.float64)
    if expected.shape != (len(images),) or not np.isfinite(expected).all():
        raise SelfTestFailed(f"model {version}: {SELFTEST_FILE} scores must be {len(images)} finite numbers, got {expected.shape}")
    try:
        got = np.array([anomaly_raw_score(predictor, image) for image in images], dtype=np.float64)
    except InferenceError as exc:
        raise SelfTestFailed(f"model {version}: self-test inference failed: {exc}") from exc
    scale = max(float(np.abs(expected).max()), 1e-12)
    relative = float(np.abs(got - expected).max()) / scale
    differing = 0
    if manifest.threshold is not None and manifest.score_scale is not None:
        raw_threshold = manifest.threshold * manifest.score_scale
        tie = np.abs(expected - raw_threshold) <= ANOMALY_SELFTEST_TOLERANCE * scale
        differing = int((((got >= raw_threshold) != (expected >= raw_threshold)) & ~tie).sum())
    if relative > ANOMALY_SELFTEST_TOLERANCE or differing:
        raise SelfTestFailed(
            f"model {version} ({manifest.model_format}): self-test scores differ from the platform's by {relative:.2e} "
            f"of the largest (limit {ANOMALY_SELFTEST_TOLERANCE:.0e}), decisions differ on {differing} of {len(images)} "
            "images; this device does not run the validated detector; the current model keeps running"
        )
    logger.info("self-test of %s passed: relative score difference %.1e on %d images", version, relative, len(images))


def decide_anomaly(
    image: str, raw_score: float, brightness: float, manifest: DeploymentManifest, window_id: str, decided_at: datetime
) -> Decision:
    """Pass or reject one image from the detector's raw score (the manifest has a threshold and a scale)."""
    if manifest.score_scale is None or manifest.threshold is None or manifest.good_class is None:
        raise ValueError(f"model {manifest.model_version}: an anomaly manifest needs score_scale, threshold and good_class")
    score = anomaly_defect_score(raw_score, manifest.score_scale)
    rejected = score >= manifest.threshold
    return Decision(
        image=image,
        model_version=manifest.model_version,
        window_id=window_id,
        predicted_class="anomaly" if rejected else manifest.good_class,
        defect_score=score,
        verdict="reject" if rejected else "pass",
        probabilities=(float(raw_score),),  # the raw score, kept for audits
        brightness=brightness,
        decided_at=decided_at,
    )
