"""Deploying an INT8 model that fell short of the export's tolerance is a person's explicit decision."""

from mfg_assets.deployment import int8_shortfall

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


def test_an_accepted_shortfall_held_int8_and_fp32_formats_deploy() -> None:
    assert int8_shortfall("onnx_int8", SHORT, "v", accepted=True) is None
    assert int8_shortfall("onnx_int8", HELD, "v", accepted=False) is None
    assert int8_shortfall("onnx", SHORT, "v", accepted=False) is None
    assert int8_shortfall("openvino", SHORT, "v", accepted=False) is None
    assert int8_shortfall("onnx", None, "v", accepted=False) is None
