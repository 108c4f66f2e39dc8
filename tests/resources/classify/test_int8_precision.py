"""Choosing how much of a classifier stays in float for INT8, on a tiny from-scratch model (32 px, resnet10t)."""

from pathlib import Path

import numpy as np
import pytest

from tests.deployable import deployable_model, smooth_images

from resources.classify.exporter import ExportError, export_onnx, quantize_onnx_int8
from resources.classify.int8_precision import (
    _prefixes,
    count_convolutions,
    decisions,
    quantize_within_tolerance,
)

SIZE = 32


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(deployable_model(0, 3), SIZE, tmp_path_factory.mktemp("int8") / "model.onnx")


def _quantised_conv_names(path: Path) -> list[str]:
    """Conv nodes whose weight comes through a DequantizeLinear, i.e. run in INT8."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantised = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    return [node.name for node in graph.node if node.op_type == "Conv" and node.input[1] in dequantised]


def test_prefixes_double_up_to_the_cap() -> None:
    assert list(_prefixes(52, 0.5)) == [0, 1, 2, 4, 8, 16]
    assert list(_prefixes(3, 0.5)) == [0, 1]
    assert list(_prefixes(1, 0.5)) == [0]


def test_decisions_follow_the_device_rule() -> None:
    probs = np.array([[0.7, 0.3], [0.55, 0.45], [0.2, 0.8]])
    # good class 0, reject when 1 - p(good) >= 0.4: image 1 is top class "good" but rejected
    assert decisions(probs, 0, 0.4).tolist() == [0, 1, 3]
    assert decisions(probs, None, None).tolist() == [0, 0, 1]


def test_float_convs_keeps_the_leading_convolutions_in_float(onnx_path: Path, tmp_path: Path) -> None:
    calibration = smooth_images(16, SIZE, 1)
    everything = _quantised_conv_names(quantize_onnx_int8(onnx_path, calibration, tmp_path / "all.onnx"))
    total = count_convolutions(onnx_path)
    assert len(everything) == total
    partly = _quantised_conv_names(quantize_onnx_int8(onnx_path, calibration, tmp_path / "p.onnx", float_convs=3))
    assert len(partly) == total - 3
    assert partly == everything[3:]


def test_every_convolution_in_float_is_allowed_and_unnamed_nodes_are_refused(onnx_path: Path, tmp_path: Path) -> None:
    import onnx

    calibration = smooth_images(8, SIZE, 1)
    total = count_convolutions(onnx_path)
    assert _quantised_conv_names(quantize_onnx_int8(onnx_path, calibration, tmp_path / "f.onnx", float_convs=total)) == []
    model = onnx.load(str(onnx_path))
    model.graph.node[0].name = ""
    unnamed = tmp_path / "unnamed.onnx"
    onnx.save(model, str(unnamed))
    with pytest.raises(ExportError, match="node 0 .* has no name"):
        quantize_onnx_int8(unnamed, calibration, tmp_path / "u.onnx", float_convs=1)


def test_stops_at_the_first_try_within_tolerance(onnx_path: Path, tmp_path: Path) -> None:
    choice = quantize_within_tolerance(
        onnx_path, smooth_images(16, SIZE, 1), smooth_images(12, SIZE, 2), tmp_path / "q.onnx", max_disagreement=0.99
    )
    assert choice.float_convs == 0 and [t.float_convs for t in choice.tries] == [0]
    assert choice.within_tolerance and choice.path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]  # no scratch left behind


def test_impossible_tolerance_keeps_the_closest_try_and_says_so(onnx_path: Path, tmp_path: Path) -> None:
    """Decisions of an untrained model on near-identical images sit on ties, so 0 % disagreement is
    not guaranteed; whatever happens, every prefix is tried in order and the least-disagreeing kept."""
    choice = quantize_within_tolerance(
        onnx_path, smooth_images(16, SIZE, 1), smooth_images(12, SIZE, 2), tmp_path / "q.onnx", max_disagreement=0.0
    )
    tried = [t.float_convs for t in choice.tries]
    assert tried == list(_prefixes(choice.total_convs, 0.5))[: len(tried)]
    assert choice.disagreement == min(t.disagreement for t in choice.tries)
    # the file put in place is the chosen try, not the last one
    assert len(_quantised_conv_names(choice.path)) == choice.total_convs - choice.float_convs
    if not choice.within_tolerance:
        assert len(tried) == len(_prefixes(choice.total_convs, 0.5))
    summary = choice.summary()
    assert summary["float_convs"] == choice.float_convs and len(summary["tries"]) == len(tried)


def test_bad_arguments_are_named(onnx_path: Path, tmp_path: Path) -> None:
    images = smooth_images(4, SIZE, 1)
    with pytest.raises(ExportError, match="held-out images"):
        quantize_within_tolerance(onnx_path, images, images[:0], tmp_path / "q.onnx")
    with pytest.raises(ExportError, match="max_disagreement"):
        quantize_within_tolerance(onnx_path, images, images, tmp_path / "q.onnx", max_disagreement=1.5)
    with pytest.raises(ExportError, match="float_convs"):
        quantize_onnx_int8(onnx_path, images, tmp_path / "q.onnx", float_convs=-1)
    with pytest.raises(ExportError, match="convolutions, 999 asked to stay in float"):
        quantize_onnx_int8(onnx_path, images, tmp_path / "q.onnx", float_convs=999)
    assert not (tmp_path / "q.onnx").exists()


def test_the_graph_is_prepared_once_for_every_try_and_a_failed_preparation_is_recorded(
    onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BatchNorm folding does not depend on the float prefix, so it runs once per choice; when onnxruntime's
    shape inference fails the raw graph still quantises, and the record says so (the check shows it)."""
    import onnxruntime.quantization.shape_inference as shape_inference

    real = shape_inference.quant_pre_process
    calls: list[str] = []

    def counted(*args: object, **kwargs: object) -> None:
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    import resources.classify.int8_precision as int8_precision

    seen: list[int] = []

    def never_alike(probabilities: np.ndarray, good_index: int | None, threshold: float | None) -> np.ndarray:
        """The FP32 reference first, then every INT8 try disagreeing on every image: all prefixes are tried."""
        seen.append(1)
        return decisions(probabilities, good_index, threshold) + (len(seen) > 1)

    monkeypatch.setattr(shape_inference, "quant_pre_process", counted)
    monkeypatch.setattr(int8_precision, "decisions", never_alike)
    folded = quantize_within_tolerance(
        onnx_path, smooth_images(16, SIZE, 1), smooth_images(12, SIZE, 2), tmp_path / "a.onnx", max_disagreement=0.0
    )
    monkeypatch.setattr(int8_precision, "decisions", decisions)
    assert len(folded.tries) == len(_prefixes(folded.total_convs, 0.5)) >= 2 and calls == [str(onnx_path)]
    assert folded.bn_folded and folded.summary()["bn_folded"] is True

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("symbolic shape inference gave up")

    monkeypatch.setattr(shape_inference, "quant_pre_process", broken)
    raw = quantize_within_tolerance(
        onnx_path, smooth_images(16, SIZE, 1), smooth_images(12, SIZE, 2), tmp_path / "b.onnx", max_disagreement=0.99
    )
    assert raw.path.is_file() and not raw.bn_folded
    assert "symbolic shape inference gave up" in raw.summary()["pre_process"]
    assert "without BatchNorm folding" in raw.summary()["pre_process"]
