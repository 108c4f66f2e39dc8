"""The INT8 accuracy check warns (never blocks) when quantisation costs more than allowed."""

import dagster as dg

from mfg_assets.export import _int8_check


def test_int8_within_the_allowed_drop_passes() -> None:
    result = _int8_check(0.960, 0.964, 0.005, 267)
    assert result.passed
    assert "0.40 pt, within the 0.50 pt allowed" in result.description


def test_int8_losing_more_than_allowed_warns_and_says_what_to_deploy_instead() -> None:
    result = _int8_check(0.9588, 0.9663, 0.005, 267)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.WARN
    assert "0.75 pt, more than the 0.50 pt allowed" in result.description
    assert "deploy with --format onnx (the default) or openvino, not onnx_int8" in result.description
    assert abs(result.metadata["drop_pt"].value - 0.75) < 0.01


def test_no_int8_model_is_said_so() -> None:
    result = _int8_check(None, 0.9, 0.005, 10)
    assert result.passed and "no INT8 model" in result.description


def test_int8_check_says_how_much_stayed_in_float() -> None:
    result = _int8_check(0.962, 0.962, 0.005, 267, {"float_convs": 16, "total_convs": 52})
    assert result.passed
    assert "INT8 (first 16 of 52 convolutions kept in float) test accuracy" in result.description
    assert result.metadata["int8_float_convs"].value == 16


SHORT = {
    "float_convs": 8, "total_convs": 52, "within_tolerance": False, "holdout_disagreement": 0.0185,
    "max_disagreement": 0.005, "holdout": "val", "n_holdout": 270,
}


def test_an_int8_search_that_fell_short_warns_even_when_test_accuracy_held() -> None:
    result = _int8_check(0.9663, 0.9663, 0.005, 267, SHORT)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "0.00 pt, within the 0.50 pt allowed" in result.description
    assert "no try decided like FP32 within 0.50 % of the val images (closest: 1.85 %)" in result.description
    assert "--accept-int8-shortfall" in result.description
    assert result.metadata["int8_within_tolerance"].value is False


def test_int8_check_says_when_batchnorm_was_not_folded() -> None:
    note = "quant_pre_process failed (RuntimeError: gave up); the graph was quantised without BatchNorm folding"
    unfolded = {"float_convs": 0, "total_convs": 52, "bn_folded": False, "pre_process": note}
    assert note in _int8_check(0.962, 0.962, 0.005, 267, unfolded).description
    folded = {**unfolded, "bn_folded": True, "pre_process": "quant_pre_process: BatchNorm folded, shapes inferred"}
    assert "quant_pre_process" not in _int8_check(0.962, 0.962, 0.005, 267, folded).description
