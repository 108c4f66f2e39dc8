"""The contract's shared rules: one binning, one name rule, one task list, one exception root."""

from datetime import UTC, datetime

import numpy as np
import pytest
from pydantic import ValidationError

from edge_sync.agent import AgentConfig
from edge_sync.contract import (
    INPUT_BINS,
    SCORE_BINS,
    ContractError,
    DeploymentManifest,
    InputSpec,
    ModelFile,
    Task,
    brightness_bin,
    brightness_histogram,
    score_bin,
    score_histogram,
)
from edge_sync.errors import EdgeSyncError
from resources.data.variants import validate_name


def _manifest(**fields: object) -> DeploymentManifest:
    values = {
        "deployment_id": "d1",
        "line": "line1",
        "model_version": "line1-bracket-a-v1",
        "model_format": "onnx",
        "model_path": "model.onnx",
        "files": (ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1),),
        "input": InputSpec(height=8, width=8),
        "classes": ("defect", "good"),
        "good_class": "good",
        "threshold": 0.5,
        "dataset_version": "dataset:x",
        "created_at": datetime(2026, 12, 2, tzinfo=UTC),
        **fields,
    }
    return DeploymentManifest(**values)


def test_brightness_bins_are_sixteen_grey_levels_wide_everywhere() -> None:
    # np.histogram over 0..255 (the platform's old baseline) put 239.5 in bin 15, the device in bin 14.
    assert brightness_bin(239.5) == 14
    assert [brightness_bin(v) for v in (0.0, 15.99, 16.0, 255.0, 300.0, -1.0)] == [0, 0, 1, 15, 15, 0]
    assert brightness_histogram([239.5, 240.0, 10.0]) == [1] + [0] * 13 + [1, 1]
    assert len(brightness_histogram([])) == INPUT_BINS


def test_score_bins_put_one_in_the_last_bin() -> None:
    assert [score_bin(s) for s in (0.0, 0.049, 0.05, 0.999, 1.0)] == [0, 0, 1, SCORE_BINS - 1, SCORE_BINS - 1]
    assert sum(score_histogram([0.0, 0.5, 1.0])) == 3


def test_names_share_one_rule_across_platform_device_and_manifest() -> None:
    # The agent accepted '+' and '.' in device ids that the server then refused.
    with pytest.raises(ValidationError, match="device_id"):
        AgentConfig(
            device_id="cam+1", server_url="http://x", token="t", camera_dir=".", state_dir=".", public_key_path="k"
        )
    with pytest.raises(ValidationError, match="model_version"):
        _manifest(model_version="line1-v1+build")
    with pytest.raises(ValidationError, match="line"):
        _manifest(line="-line1")
    with pytest.raises(ValueError, match="not valid"):
        validate_name("line", "-line1")
    assert validate_name("line", "line_1-a") == "line_1-a"


def test_manifest_holds_its_decision_fields_to_the_classes() -> None:
    with pytest.raises(ValidationError, match="good_class"):
        _manifest(good_class="ok")
    with pytest.raises(ValidationError, match="needs a good_class"):
        _manifest(good_class=None)
    with pytest.raises(ValidationError, match=r"threshold must be in \(0, 1\]"):
        _manifest(threshold=1.5)


def test_tasks_are_one_list_and_an_unknown_task_is_refused() -> None:
    assert {t.value for t in Task} == {"classify", "anomaly", "detect", "segment", "ocr"}
    assert _manifest(task="segment").task is Task.SEGMENT
    with pytest.raises(ValidationError, match="task"):
        _manifest(task="count")


def test_every_contract_error_has_the_edge_sync_root() -> None:
    assert issubclass(ContractError, EdgeSyncError) and issubclass(ContractError, ValueError)


def test_device_and_platform_bin_the_same_image_into_the_same_brightness_bin(tmp_path) -> None:
    """The defect this rule fixes: the baseline (platform) and the window (device) binned differently."""
    from PIL import Image

    from edge_sync.agent.inspector import decode_image
    from edge_sync.agent.windows import OpenWindow, count_decision
    from mfg_assets.deployment import baseline_histograms

    pixels = np.full((16, 16, 3), 239, dtype=np.uint8)
    pixels[:8] = 240  # mean exactly 239.5
    path = tmp_path / "bright.png"
    Image.fromarray(pixels).save(path)

    fitted, brightness = decode_image(path, InputSpec(height=16, width=16, resize="letterbox"))
    window = OpenWindow(window_id="w", model_version="v", line="l", started_at=datetime(2026, 12, 2, tzinfo=UTC))
    count_decision(window, rejected=False, defect_score=0.1, brightness=brightness)
    _, baseline = baseline_histograms({"test": {"defect_scores": [0.1]}}, fitted[None])

    assert brightness == 239.5
    assert window.input_brightness_histogram == baseline
    assert baseline.index(1) == 14


def test_the_agent_refuses_a_manifest_for_a_task_it_cannot_run(tmp_path) -> None:
    import httpx

    from edge_sync.agent.errors import VerificationError
    from edge_sync.agent.installer import Installer

    installer = Installer(
        tmp_path, public_key=None, client=httpx.Client(), server_url="http://x", auth={}, num_threads=1,
        clock=lambda: datetime(2026, 12, 2, tzinfo=UTC),
    )
    files = (ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1), ModelFile(path="selftest.npz", sha256="1" * 64, n_bytes=1))
    installer.check_manifest(_manifest(files=files))
    with pytest.raises(VerificationError, match="'segment' model; this agent runs anomaly, classify, detect models only; update the edge agent"):
        installer.check_manifest(_manifest(task="segment", files=files))


def test_an_anomaly_manifest_carries_its_score_scale_at_schema_3() -> None:
    from edge_sync.contract.decoders.anomaly import ANOMALY_SCHEMA_VERSION, anomaly_defect_score

    manifest = _manifest(task="anomaly", schema_version=ANOMALY_SCHEMA_VERSION, score_scale=6.0)
    assert manifest.score_scale == 6.0 and manifest.threshold == 0.5
    assert [anomaly_defect_score(raw, 6.0) for raw in (-1.0, 0.0, 3.0, 6.0, 60.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValidationError, match="an anomaly model needs its score_scale"):
        _manifest(task="anomaly", schema_version=ANOMALY_SCHEMA_VERSION)
    with pytest.raises(ValidationError, match="an anomaly model needs its score_scale"):
        _manifest(score_scale=6.0)  # a classifier has none
    with pytest.raises(ValidationError, match="needs manifest schema version 3"):
        _manifest(task="anomaly", score_scale=6.0)  # schema 2: an older agent must refuse it by its version


def test_an_anomaly_manifest_without_a_decision_or_with_a_broken_scale_is_refused() -> None:
    from edge_sync.contract.decoders.anomaly import ANOMALY_SCHEMA_VERSION, anomaly_defect_score

    with pytest.raises(ValidationError, match="needs its threshold and good_class"):
        _manifest(task="anomaly", schema_version=ANOMALY_SCHEMA_VERSION, score_scale=6.0, threshold=None)
    with pytest.raises(ValidationError, match="finite"):
        _manifest(task="anomaly", schema_version=ANOMALY_SCHEMA_VERSION, score_scale=float("inf"))
    with pytest.raises(ValueError, match="must be finite"):
        anomaly_defect_score(float("nan"), 6.0)  # a NaN score must not pass as a good part
    assert _manifest().schema_version == 2  # a classifier's manifest stays readable by older agents
