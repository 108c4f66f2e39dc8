"""The device side of an anomaly model: the self-test against the platform's scores, and decisions."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edge_sync.agent.errors import SelfTestFailed
from edge_sync.agent.inspector import Decision, decide
from edge_sync.agent.installer import self_test as anomaly_self_test  # the agent's self-test, by the task's decoder
from edge_sync.contract import DeploymentManifest, InputSpec, ModelFile
from edge_sync.contract.decoders.anomaly import ANOMALY_SCHEMA_VERSION


def decide_anomaly(
    image: str, raw_score: float, brightness: float, manifest: DeploymentManifest, window_id: str, decided_at: datetime
) -> Decision:
    """The agent's decision on a detector whose named ``score`` output is ``raw_score``."""
    return decide(image, {"score": np.array([raw_score])}, brightness, manifest, window_id, decided_at)


class FakeDetector:
    """Scores an image by its mean grey level / 10, plus an optional drift."""

    format = "onnx"

    def __init__(self, drift: float = 0.0) -> None:
        self.drift = drift

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise AssertionError("an anomaly model is read through outputs()")

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        scores = images.reshape(len(images), -1).mean(axis=1) / 10.0 + self.drift
        return {"anomaly_map": np.zeros((len(images), 1, 4, 4), np.float32), "score": scores.astype(np.float32)}


def _manifest() -> DeploymentManifest:
    return DeploymentManifest(
        schema_version=ANOMALY_SCHEMA_VERSION,
        deployment_id="d1",
        line="line2",
        model_version="line2-cap-a-v1",
        task="anomaly",
        model_format="onnx",
        model_path="model.onnx",
        files=(ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1),),
        input=InputSpec(height=4, width=4),
        classes=("crack", "good"),
        good_class="good",
        threshold=0.5,
        score_scale=20.0,  # raw threshold 10: grey level 100
        dataset_version="dataset:x",
        created_at=datetime(2026, 12, 3, tzinfo=UTC),
    )


def _selftest(path: Path) -> Path:
    images = np.stack([np.full((4, 4, 3), level, np.uint8) for level in (20, 60, 150, 200)])
    np.savez(path, images=images, scores=images.reshape(4, -1).mean(axis=1) / 10.0)
    return path


def test_the_self_test_passes_a_faithful_detector_and_refuses_a_drifted_one(tmp_path: Path) -> None:
    selftest = _selftest(tmp_path / "selftest.npz")
    anomaly_self_test(FakeDetector(), selftest, _manifest())
    with pytest.raises(SelfTestFailed, match="self-test scores differ from the platform's"):
        anomaly_self_test(FakeDetector(drift=0.5), selftest, _manifest())
    np.savez(tmp_path / "old.npz", images=np.zeros((1, 4, 4, 3), np.uint8), probabilities=np.ones((1, 2)))
    with pytest.raises(SelfTestFailed, match="arrays 'images' and 'scores'"):
        anomaly_self_test(FakeDetector(), tmp_path / "old.npz", _manifest())


def test_a_decision_rejects_exactly_at_the_platforms_raw_threshold() -> None:
    when = datetime(2026, 12, 3, tzinfo=UTC)
    passed = decide_anomaly("a.png", 9.99, 120.0, _manifest(), "w1", when)
    rejected = decide_anomaly("b.png", 10.0, 120.0, _manifest(), "w1", when)
    assert (passed.verdict, passed.predicted_class, passed.defect_score) == ("pass", "good", pytest.approx(0.4995))
    assert (rejected.verdict, rejected.predicted_class, rejected.defect_score) == ("reject", "anomaly", 0.5)
    assert decide_anomaly("c.png", 500.0, 120.0, _manifest(), "w1", when).defect_score == 1.0  # clipped into the bins


def test_a_confirmed_anomaly_needs_its_defect_type_from_the_operator() -> None:
    from edge_sync.agent.feedback import feedback_label

    decision = {"predicted_class": "anomaly", "verdict": "reject"}
    label, why = feedback_label(_manifest(), "b.png", "confirmed_defect", None, decision)
    assert label is None and "without naming its defect type" in why and "'b.png,confirmed_defect,<type>'" in why
    assert feedback_label(_manifest(), "b.png", "confirmed_defect", "crack", decision) == ("crack", "")
    assert feedback_label(_manifest(), "a.png", "false_reject", None, decision) == ("good", "")
