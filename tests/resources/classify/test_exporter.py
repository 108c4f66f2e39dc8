"""Export, quantisation, parity and latency on a tiny from-scratch model (32 px, resnet10t).

One model is exported once per module (ONNX, OpenVINO IR, INT8); "a different model" is the same
architecture with another seed, compared against those files, which is what a mixed-up artifact looks
like to the parity check. Nothing touches the network.
"""

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tests.deployable import deployable_model, smooth_images

from edge_sync.inference import InferenceError, ModelFormat, load_predictor
from resources.classify.exporter import (
    PARITY_TOLERANCE,
    ExportError,
    ExportFormat,
    export_onnx,
    export_openvino,
    quantize_onnx_int8,
    sha256_file,
)
from resources.classify.parity import ParityResult, RuntimeParity, check_parity, measure_latency

SIZE = 32
N_CLASSES = 3


def _deployable(seed: int, num_classes: int = N_CLASSES):
    return deployable_model(seed, num_classes)


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return smooth_images(n, size, seed)


@pytest.fixture(scope="module")
def model():
    return _deployable(seed=0)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory: pytest.TempPathFactory) -> dict[ModelFormat, Path]:
    folder = tmp_path_factory.mktemp("export")
    onnx_path = export_onnx(model, SIZE, folder / "model.onnx")
    return {
        ModelFormat.ONNX: onnx_path,
        ModelFormat.OPENVINO: export_openvino(onnx_path, folder / "ir" / "model.xml"),
        ModelFormat.ONNX_INT8: quantize_onnx_int8(
            onnx_path, _images(40, seed=7), folder / "model_int8.onnx"
        ),
    }


def _fp32(exported: dict[ModelFormat, Path]) -> dict[ModelFormat, Path]:
    return {k: v for k, v in exported.items() if k is not ModelFormat.ONNX_INT8}


# ---------------------------------------------------------------------------- export


def test_export_format_is_the_device_enum() -> None:
    assert ExportFormat is ModelFormat
    assert [f.value for f in ExportFormat] == ["onnx", "openvino", "onnx_int8"]


def test_onnx_is_one_self_contained_file_with_the_contract_io(exported) -> None:
    import onnx

    onnx_path = exported[ModelFormat.ONNX]
    assert sorted(p.name for p in onnx_path.parent.iterdir() if p.is_file()) == [
        "model.onnx",
        "model_int8.onnx",
    ], "no .onnx.data side file and no temporary file may be left behind"
    proto = onnx.load(str(onnx_path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    assert graph_input.name == "images"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert isinstance(dims[0], str) and dims[1:] == [3, SIZE, SIZE]
    assert graph_output.name == "probabilities"
    onnx.checker.check_model(proto)


def test_export_restores_training_mode(tmp_path: Path) -> None:
    net = _deployable(seed=2)
    net.train()
    export_onnx(net, SIZE, tmp_path / "m.onnx")
    assert net.training


def test_export_rejects_a_bad_image_size(model, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="image_size"):
        export_onnx(model, 0, tmp_path / "m.onnx")


def test_openvino_ir_keeps_fp32_weights(exported) -> None:
    xml_path = exported[ModelFormat.OPENVINO]
    assert xml_path.with_suffix(".bin").is_file()
    types = {
        layer.find("data").get("element_type")
        for layer in ET.parse(xml_path).getroot().iter("layer")
        if layer.get("type") == "Const"
    }
    assert "f32" in types and "f16" not in types


def test_openvino_export_wants_an_xml_path(exported, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"\.xml"):
        export_openvino(exported[ModelFormat.ONNX], tmp_path / "model.ir")


def test_int8_is_qdq_per_channel_with_float_softmax(exported) -> None:
    import onnx

    graph = onnx.load(str(exported[ModelFormat.ONNX_INT8])).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    initializers = {t.name: t for t in graph.initializer}
    # Per-channel: some weight's dequantisation scale has one value per output channel.
    scale_sizes = [
        int(np.prod(initializers[n.input[1]].dims))
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[1] in initializers
    ]
    assert max(scale_sizes) > 1
    # The softmax reads dequantised logits and writes float probabilities.
    (softmax,) = [n for n in graph.node if n.op_type == "Softmax"]
    assert not any(n.op_type == "QuantizeLinear" and softmax.output[0] in n.input for n in graph.node)


def test_int8_probabilities_are_not_rounded_to_uint8_steps(exported) -> None:
    predictor = load_predictor(exported[ModelFormat.ONNX_INT8], ModelFormat.ONNX_INT8)
    probabilities = predictor.predict(_images(4, seed=5))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_quantize_rejects_calibration_images_of_another_size(exported, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=f"resize to {SIZE}×{SIZE}") as caught:
        quantize_onnx_int8(exported[ModelFormat.ONNX], _images(4, size=48), tmp_path / "q.onnx")
    assert str(exported[ModelFormat.ONNX]) in str(caught.value)
    assert not (tmp_path / "q.onnx").exists()


# ---------------------------------------------------------------------------- parity


def test_parity_passes_for_a_correct_export(model, exported) -> None:
    result = check_parity(model, exported, _images(12, seed=1))

    assert isinstance(result, ParityResult)
    assert result.passed, result.describe()
    assert result.tolerance == PARITY_TOLERANCE and result.n_images == 12
    # INT8 is judged on accuracy, not parity: it is skipped.
    assert {r.format for r in result.runtimes} == {"onnx", "openvino"}
    for runtime in result.runtimes:
        assert runtime.max_abs_diff <= 1e-5
        assert runtime.decision_agreement == 1.0
    assert "parity passed" in result.describe()


def test_parity_fails_for_files_exported_from_another_model(exported) -> None:
    other = _deployable(seed=1)  # same architecture, other weights

    result = check_parity(other, _fp32(exported), _images(12, seed=1))

    assert not result.passed
    assert all(r.max_abs_diff > PARITY_TOLERANCE for r in result.runtimes)
    description = result.describe()
    assert "parity FAILED" in description
    assert "- onnx:" in description and "- openvino:" in description


def test_parity_fails_when_class_count_differs(exported) -> None:
    four_classes = _deployable(seed=0, num_classes=4)

    result = check_parity(four_classes, {ModelFormat.ONNX: exported[ModelFormat.ONNX]}, _images(3))

    assert not result.passed
    (runtime,) = result.runtimes
    assert "output shape (3, 3) vs torch (3, 4)" in runtime.detail
    assert "output shape" in result.describe()


def test_parity_needs_an_fp32_format(model, exported) -> None:
    with pytest.raises(ValueError, match="no FP32 export"):
        check_parity(model, {ModelFormat.ONNX_INT8: exported[ModelFormat.ONNX_INT8]}, _images(2))


def test_parity_reports_a_wrong_image_size_as_an_inference_error(model, exported) -> None:
    with pytest.raises(InferenceError, match=f"resize to {SIZE}×{SIZE}"):
        check_parity(model, _fp32(exported), _images(2, size=48))


def test_describe_lists_only_the_failures() -> None:
    result = ParityResult(
        runtimes=(
            RuntimeParity(format="onnx", max_abs_diff=1e-7, decision_agreement=1.0),
            RuntimeParity(format="openvino", max_abs_diff=3e-3, decision_agreement=0.75),
        ),
        n_images=8,
        tolerance=1e-4,
        passed=False,
    )
    description = result.describe()
    assert "- openvino: max |Δp| 0.003 > 1e-04" in description
    assert "differs from torch on 2 of 8 images" in description
    assert "- onnx" not in description
    assert [r.format for r in result.failures()] == ["openvino"]


# ---------------------------------------------------------------------------- latency, hashing


def test_latency_has_a_positive_median_per_runtime_and_restores_threads(model, exported) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        latency = measure_latency(model, exported, _images(3), repeats=3, warmup=1, num_threads=2)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert set(latency) == {"torch", "onnx", "openvino", "onnx_int8"}
    assert all(ms > 0 for ms in latency.values())


def test_latency_rejects_zero_repeats(model, exported) -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, exported, _images(1), repeats=0)


def test_sha256_file_matches_hashlib(exported) -> None:
    path = exported[ModelFormat.ONNX]
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
