"""Each task's decoder: its decoder block, the platform's manifest fields, the device's score units,
verdicts from named outputs, the self-test, and legacy manifests (schemas 1 to 3, no block)."""

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge_sync.agent import AGENT_TASKS
from edge_sync.contract import (
    DECODER_SCHEMA_VERSION,
    DECODERS,
    DeploymentManifest,
    InputSpec,
    ModelFile,
    SelfTestMismatch,
    Task,
    UnsupportedTask,
    canonical_json,
    decoder_for,
    generate_keypair,
    load_private_key,
    load_public_key,
    sign_manifest,
    verify_manifest,
)
from edge_sync.contract.decoders.anomaly import AnomalyDecoder, AnomalyParams
from edge_sync.contract.decoders.classify import ClassifyDecoder, ClassifyParams
from edge_sync.inference import InferenceError

CLASSIFY = decoder_for(Task.CLASSIFY)
ANOMALY = decoder_for(Task.ANOMALY)


def _manifest(**fields: object) -> DeploymentManifest:
    values: dict[str, object] = {
        "deployment_id": "d1",
        "line": "line1",
        "model_version": "line1-bracket-a-v1",
        "model_format": "onnx",
        "model_path": "model.onnx",
        "files": (ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1),),
        "input": InputSpec(height=4, width=4),
        "classes": ("crack", "good", "scratch"),
        "good_class": "good",
        "threshold": 0.5,
        "dataset_version": "dataset:x",
        "created_at": datetime(2026, 12, 8, tzinfo=UTC),
        **fields,
    }
    return DeploymentManifest(**values)


def _anomaly(**fields: object) -> DeploymentManifest:
    return _manifest(task="anomaly", **{**ANOMALY.manifest_fields(10.0), **fields})


# ------------------------------------------------------------------------------------------ registry


def test_every_task_the_agent_runs_has_a_decoder_and_no_other() -> None:
    assert isinstance(CLASSIFY, ClassifyDecoder) and isinstance(ANOMALY, AnomalyDecoder)
    assert decoder_for("anomaly") is ANOMALY and AGENT_TASKS == frozenset(DECODERS)
    assert all(decoder.task is task for task, decoder in DECODERS.items())
    with pytest.raises(UnsupportedTask, match="no decoder for task 'segment' .*update the edge agent"):
        decoder_for(Task.SEGMENT)
    with pytest.raises(UnsupportedTask, match="'count'"):
        decoder_for("count")
    assert CLASSIFY.window_counters == () and ANOMALY.window_counters == ()  # the shared counters suffice


# ------------------------------------------------------------------------------------------ platform side


def test_classify_manifest_fields_carry_the_threshold_in_block_and_top_level() -> None:
    fields = CLASSIFY.manifest_fields(0.3)
    assert fields == {
        "schema_version": DECODER_SCHEMA_VERSION,
        "threshold": 0.3,
        "decoder": {"name": "classify", "version": 1, "threshold": 0.3},
    }
    manifest = _manifest(**fields)
    assert manifest.decoder is not None and manifest.decoder.params() == {"threshold": 0.3}
    assert CLASSIFY.params(manifest) == ClassifyParams(threshold=0.3)
    none = _manifest(**CLASSIFY.manifest_fields(None))
    assert none.threshold is None and CLASSIFY.params(none) == ClassifyParams(threshold=None)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="a device needs one in \\(0, 1\\].*re-run the validation report"):
            CLASSIFY.manifest_fields(bad)
    assert CLASSIFY.device_scores([0.0, 0.25, 1.0], fields) == [0.0, 0.25, 1.0]


def test_anomaly_manifest_fields_scale_the_raw_threshold_to_one_half() -> None:
    fields = ANOMALY.manifest_fields(3.0)
    assert fields == {
        "schema_version": DECODER_SCHEMA_VERSION,
        "threshold": 0.5,
        "score_scale": 6.0,
        "decoder": {"name": "anomaly", "version": 1, "threshold": 0.5, "score_scale": 6.0},
    }
    assert ANOMALY.params(_manifest(task="anomaly", **fields)) == AnomalyParams(threshold=0.5, score_scale=6.0)
    for bad in (None, 0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="a device needs a positive one; re-run the validation report"):
            ANOMALY.manifest_fields(bad)


def test_anomaly_device_scores_are_raw_scores_over_the_scale_clipped() -> None:
    fields = ANOMALY.manifest_fields(3.0)
    assert ANOMALY.device_scores([-1.0, 0.0, 3.0, 6.0, 60.0], fields) == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert ANOMALY.device_scores([3.0], {"score_scale": 6.0}) == [0.5]  # legacy fields (schema 3)
    with pytest.raises(ValueError, match="pass what manifest_fields returned"):
        ANOMALY.device_scores([3.0], CLASSIFY.manifest_fields(0.5))
    with pytest.raises(ValueError, match="must be finite"):
        ANOMALY.device_scores([math.nan], fields)


# ------------------------------------------------------------------------------------------ the block


def test_a_decoder_block_must_agree_with_the_top_level_fields() -> None:
    block = {"name": "classify", "version": 1, "threshold": 0.3}
    with pytest.raises(ValidationError, match=r"decoder.threshold is 0.3 but the manifest's threshold is 0.5\); they must agree"):
        _manifest(schema_version=4, decoder=block)
    with pytest.raises(ValidationError, match="decoder.score_scale is 7.0 but the manifest's score_scale is 20.0"):
        _anomaly(decoder={"name": "anomaly", "version": 1, "threshold": 0.5, "score_scale": 7.0})


def test_a_decoder_block_is_checked_by_its_decoder() -> None:
    with pytest.raises(ValidationError, match="'classify' decoder block is not valid .*margin.*rebuild the manifest"):
        _manifest(schema_version=4, decoder={"name": "classify", "version": 1, "threshold": 0.5, "margin": 1})
    with pytest.raises(ValidationError, match="block has version 2; this device reads version\\(s\\) \\[1\\]; update the edge agent"):
        _manifest(schema_version=4, decoder={"name": "classify", "version": 2, "threshold": 0.5})
    with pytest.raises(ValidationError, match="'anomaly' decoder block is not valid \\(score_scale: Field required"):
        _anomaly(decoder={"name": "anomaly", "version": 1, "threshold": 0.5})
    with pytest.raises(ValidationError, match="'anomaly' decoder block has threshold 0.4; it must be 0.5"):
        _anomaly(threshold=0.4, decoder={"name": "anomaly", "version": 1, "threshold": 0.4, "score_scale": 20.0})


def test_the_block_belongs_to_schema_4_and_to_the_manifests_task() -> None:
    with pytest.raises(ValidationError, match="a decoder block needs manifest schema version 4 \\(this one says 2\\)"):
        _manifest(decoder={"name": "classify", "version": 1, "threshold": 0.5})
    with pytest.raises(ValidationError, match="schema version 4 needs its decoder block"):
        _manifest(schema_version=4)
    with pytest.raises(ValidationError, match="the decoder block is for 'anomaly' but the manifest's task is 'classify'"):
        _manifest(schema_version=4, decoder={"name": "anomaly", "version": 1, "threshold": 0.5})
    with pytest.raises(ValidationError, match="an anomaly model needs its score_scale"):
        _manifest(**{**CLASSIFY.manifest_fields(0.5), "score_scale": 2.0})


def test_a_manifest_without_a_block_serialises_as_before_schema_4(tmp_path: Path) -> None:
    legacy = _manifest()
    assert "decoder" not in json.loads(canonical_json(legacy)) and legacy.schema_version == 2
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    for manifest in (legacy, _manifest(**CLASSIFY.manifest_fields(0.5)), _anomaly()):
        signed = sign_manifest(manifest, load_private_key(tmp_path / "k"))
        assert verify_manifest(signed, load_public_key(tmp_path / "k.pub")) == manifest
    assert json.loads(canonical_json(_anomaly()))["decoder"] == {
        "name": "anomaly", "version": 1, "threshold": 0.5, "score_scale": 20.0
    }


# ------------------------------------------------------------------------------------------ legacy manifests


def test_legacy_manifests_give_their_decoders_the_same_parameters() -> None:
    assert CLASSIFY.params(_manifest(schema_version=1)) == ClassifyParams(threshold=0.5)
    assert CLASSIFY.params(_manifest(threshold=None)) == ClassifyParams(threshold=None)
    schema3 = _manifest(task="anomaly", schema_version=3, score_scale=20.0)
    assert schema3.decoder is None and ANOMALY.params(schema3) == ANOMALY.params(_anomaly())
    with pytest.raises(ValidationError, match="needs manifest schema version 3"):
        _manifest(task="anomaly", score_scale=20.0)


# ------------------------------------------------------------------------------------------ device side


class FakeModel:
    """Class probabilities and a detector score from an image's mean grey level (0..255)."""

    format = "onnx"

    def __init__(self, drift: float = 0.0) -> None:
        self.drift = drift

    def predict(self, images: np.ndarray) -> np.ndarray:
        level = images.reshape(len(images), -1).mean(axis=1) / 255.0
        return np.stack([level * 0.5, 1.0 - level, level * 0.5], axis=1).astype(np.float32) + self.drift

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        scores = images.reshape(len(images), -1).mean(axis=1) / 10.0 + self.drift
        return {"anomaly_map": np.zeros((len(images), 1, 4, 4), np.float32), "score": scores.astype(np.float32)}


def _pixels(level: int) -> np.ndarray:
    return np.full((4, 4, 3), level, np.uint8)


def test_classify_decodes_probabilities_by_threshold_top_class_or_records() -> None:
    outputs = CLASSIFY.run(FakeModel(), _pixels(102))  # P = (0.2, 0.6, 0.2): defect score 0.4
    assert set(outputs) == {"probabilities"}
    assert CLASSIFY.decode(outputs, _manifest(threshold=0.39)).outcome == "reject"
    verdict = CLASSIFY.decode(outputs, _manifest(**CLASSIFY.manifest_fields(0.5)))
    assert (verdict.label, verdict.outcome, verdict.defect_score) == ("good", "pass", pytest.approx(0.4))
    assert verdict.detail == pytest.approx((0.2, 0.6, 0.2))
    by_top = CLASSIFY.decode({"probabilities": np.array([0.5, 0.3, 0.2])}, _manifest(threshold=None))
    assert (by_top.label, by_top.outcome) == ("crack", "reject")
    recorded = CLASSIFY.decode({"probabilities": np.array([0.1, 0.2, 0.7])}, _manifest(good_class=None, threshold=None))
    assert (recorded.label, recorded.outcome, recorded.defect_score) == ("scratch", "recorded", pytest.approx(0.3))


def test_anomaly_decodes_the_score_output_at_the_scaled_threshold() -> None:
    manifest = _anomaly()  # raw threshold 10: grey level 100
    passed = ANOMALY.decode(ANOMALY.run(FakeModel(), _pixels(99)), manifest)
    rejected = ANOMALY.decode(ANOMALY.run(FakeModel(), _pixels(100)), manifest)
    assert (passed.label, passed.outcome, passed.defect_score) == ("good", "pass", pytest.approx(0.495))
    assert (rejected.label, rejected.outcome, rejected.defect_score, rejected.detail) == ("anomaly", "reject", 0.5, (10.0,))
    legacy = _manifest(task="anomaly", schema_version=3, score_scale=20.0)
    assert ANOMALY.decode({"score": np.array([10.0])}, legacy) == rejected
    with pytest.raises(InferenceError, match="no 'score' output .*not an anomaly detector"):
        ANOMALY.run(type("Classifier", (), {"outputs": lambda self, x: {"logits": x}})(), _pixels(1))
    with pytest.raises(InferenceError, match="non-finite score"):
        ANOMALY.decode({"score": np.array([np.nan])}, manifest)


def test_each_decoder_judges_its_self_test(tmp_path: Path) -> None:
    images = np.stack([_pixels(level) for level in (20, 60, 150, 200)])
    np.savez(tmp_path / "c.npz", images=images, probabilities=FakeModel().predict(images))
    np.savez(tmp_path / "a.npz", images=images, scores=images.reshape(4, -1).mean(axis=1) / 10.0)
    CLASSIFY.self_test(FakeModel(), tmp_path / "c.npz", _manifest())
    ANOMALY.self_test(FakeModel(), tmp_path / "a.npz", _anomaly())
    with pytest.raises(SelfTestMismatch, match="max \\|p_device - p_torch\\|"):
        CLASSIFY.self_test(FakeModel(drift=0.01), tmp_path / "c.npz", _manifest())
    with pytest.raises(SelfTestMismatch, match="self-test scores differ from the platform's"):
        ANOMALY.self_test(FakeModel(drift=0.5), tmp_path / "a.npz", _anomaly())
    with pytest.raises(SelfTestMismatch, match="arrays 'images' and 'scores'"):
        ANOMALY.self_test(FakeModel(), tmp_path / "c.npz", _anomaly())


def test_each_decoder_maps_a_confirmed_defect_to_a_label() -> None:
    assert CLASSIFY.confirmed_defect_label(_manifest(), "a.png", "crack") == ("crack", "")
    label, why = CLASSIFY.confirmed_defect_label(_manifest(), "a.png", "good")
    assert label is None and "not a defect class" in why and "'a.png,confirmed_defect,<class>'" in why
    label, why = ANOMALY.confirmed_defect_label(_anomaly(), "b.png", "anomaly")
    assert label is None and "without naming its defect type" in why and "['crack', 'scratch']" in why
