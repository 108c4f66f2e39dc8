"""Deploying an INT8 model that fell short of the export's tolerance is a person's explicit decision;
promoting a canary publishes only what that canary, still live, ran."""

from datetime import UTC, datetime

from edge_sync.contract import DeploymentManifest, InputSpec, ModelFile, Ring
from mfg_assets.deployment import int8_shortfall, promotion_refusal

HELD = {"within_tolerance": True, "holdout_disagreement": 0.0, "max_disagreement": 0.005}
SHORT = {
    "within_tolerance": False, "holdout_disagreement": 0.0259, "max_disagreement": 0.005, "holdout": "val", "n_holdout": 270,
}


def test_int8_outside_its_tolerance_is_refused_with_what_to_do() -> None:
    refusal = int8_shortfall("onnx_int8", SHORT, "line1-tile-v3", accepted=False)
    assert refusal is not None
    assert "line1-tile-v3's INT8 model decides differently from FP32 on 2.59 % of 270 val images" in refusal
    assert "above the export's 0.50 % tolerance" in refusal
    assert "deploy --format onnx or openvino" in refusal and "--accept-int8-shortfall" in refusal


def test_int8_losing_more_test_accuracy_than_allowed_is_refused_too() -> None:
    lossy = {**HELD, "test_accuracy_drop": 0.0225, "max_test_accuracy_drop": 0.005}
    refusal = int8_shortfall("onnx_int8", lossy, "line1-tile-v4", accepted=False)
    assert refusal is not None and "decides differently" not in refusal
    assert "line1-tile-v4's INT8 model loses 2.25 pt of test accuracy against FP32, more than the export's 0.50 pt" in refusal
    assert "--accept-int8-shortfall" in refusal
    both = int8_shortfall("onnx_int8", {**SHORT, **{k: lossy[k] for k in ("test_accuracy_drop", "max_test_accuracy_drop")}},
                          "v", accepted=False)
    assert "decides differently from FP32 on 2.59 %" in both and " and loses 2.25 pt" in both
    assert int8_shortfall("onnx_int8", lossy, "v", accepted=True) is None
    within = {**HELD, "test_accuracy_drop": 0.005, "max_test_accuracy_drop": 0.005}  # at the limit is allowed
    assert int8_shortfall("onnx_int8", within, "v", accepted=False) is None
    assert int8_shortfall("onnx_int8", {**HELD, "test_accuracy_drop": -0.004, "max_test_accuracy_drop": 0.0}, "v",
                          accepted=False) is None  # INT8 better on test


def test_an_accepted_shortfall_held_int8_and_fp32_formats_deploy() -> None:
    assert int8_shortfall("onnx_int8", SHORT, "v", accepted=True) is None
    assert int8_shortfall("onnx_int8", HELD, "v", accepted=False) is None
    assert int8_shortfall("onnx", SHORT, "v", accepted=False) is None
    assert int8_shortfall("openvino", SHORT, "v", accepted=False) is None
    assert int8_shortfall("onnx", None, "v", accepted=False) is None


def _canary(deployment_id: str, version: str) -> str:
    return DeploymentManifest(
        deployment_id=deployment_id, line="line1", model_version=version, model_format="onnx", model_path="model.onnx",
        files=(ModelFile(path="model.onnx", sha256="0" * 64, n_bytes=1),), input=InputSpec(height=32, width=32),
        classes=("bad", "good"), good_class="good", threshold=0.5, dataset_version="dataset:x", ring=Ring.CANARY,
        devices=("dev1",), created_at=datetime.now(UTC),
    ).model_dump_json()


def test_a_promotion_of_the_live_canary_with_its_version_goes_ahead() -> None:
    assert promotion_refusal("c1", _canary("c1", "line1-a-v2"), "line1-a-v2", "fleet") is None


def test_a_promotion_is_refused_when_its_canary_is_gone_replaced_or_another_version_registered() -> None:
    assert "it now has no canary" in promotion_refusal("c1", None, "line1-a-v2", "fleet")
    assert "it now has canary c2" in promotion_refusal("c1", _canary("c2", "line1-a-v3"), "line1-a-v3", "fleet")
    newer = promotion_refusal("c1", _canary("c1", "line1-a-v2"), "line1-a-v3", "fleet")
    assert "ran line1-a-v2 but the variant's registered model is now line1-a-v3" in newer
    assert "deploy line1-a-v3 to the canary ring first" in newer
    assert "a promotion deploys to ring fleet" in promotion_refusal("c1", _canary("c1", "v"), "v", "canary")
