"""Export a trained classifier to the formats edge devices run, and prove the exports are the model.

The trainer hands over a deployable ``torch.nn.Module``: float32 N×3×H×W RGB pixel values 0..255 in,
softmax probabilities N×C out, normalisation inside. Exporting that module keeps pre- and
post-processing in the graph, so a device only has to deliver pixels (see ``edge_sync.inference``).

* :func:`export_onnx` writes ONE self-contained ``.onnx`` file (no ``.onnx.data`` side file that could
  be separated from it in the artifact store), input ``images`` [batch, 3, H, W], output
  ``probabilities`` [batch, C], batch dynamic.
* :func:`export_openvino` converts that file to an OpenVINO IR with FP32 weights
  (``compress_to_fp16=False``: the default FP16 weights moved logits by ~1e-3).
* :func:`quantize_onnx_int8` makes a static QDQ INT8 ONNX file for ONNX Runtime (and OpenVINO, which
  reads QDQ too).
* parity with torch and latency per runtime: :mod:`resources.classify.parity`.

Parity tolerance (:data:`PARITY_TOLERANCE`, 1e-4 on softmax probabilities), as measured on this
2-core x86_64 build machine (AVX512 with BF16, torch 2.14.1, onnxruntime 1.32, openvino 2026.4.1), 64
seeded smooth-noise images, untrained timm models with the classifier scaled ×30 so that
probabilities are as peaked as a trained model's. Max |p_torch - p_runtime|:

=====================  =========  =========  ===============  ==============  =========  ===========
model @ size           ONNX RT    OV FP32    OV FP16 weights  OV bf16 (CPU    0.1 %      other seed
                                             (default save)   default here)   weight
                                                                              noise
=====================  =========  =========  ===============  ==============  =========  ===========
resnet10t @ 128        2.4e-7     1.2e-7     7.2e-6           2.8e-4          2.4e-5     0.98
mobilenetv3_small @128 1.8e-7     4.2e-7     1.4e-4           2.9e-3          9.6e-4     0.13
resnet18 @ 224         4.2e-7     4.8e-7     5.4e-4           3.8e-3          1.1e-3     0.70
convnext_atto @ 128    4.0e-6     4.2e-6     7.4e-3           4.6e-2          1.9e-2     1.00
=====================  =========  =========  ===============  ==============  =========  ===========

(efficientnet_b0 @ 128 and resnet10t @ 64: ≤ 1e-7; resnet10t @ 128 trained 6 epochs on NEU, 330
test images: 3.0e-7 ONNX RT, 4.8e-7 OpenVINO.) 1e-4 is 25× above the worst honest FP32 difference
(convnext's LayerNorm/GELU) and over 200× above the CNNs', leaving room for other instruction paths,
yet it catches a runtime left in bf16 (which ``edge_sync.inference`` therefore pins to f32), FP16
weights and 0.1 % weight noise on three of the four models, and any other checkpoint. Parity proves
"same model, same precision", not "same to the last bit of every weight". The 1e-3 first proposed would have let bf16 on resnet10t and FP16 weights on three of the
four models through. The predicted class must also agree on every image, except where torch itself
scores the runtime's class within the tolerance of its top one (a tie at this precision, decided by
rounding, not by the model).
"""

import collections
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.inference import InferenceError, ModelFormat, load_predictor, preprocess
from resources.artifact_store import sha256_file
from resources.storage.scratch import scratch_dir
from resources.settings import apply_offline_switches
from resources.errors import MfgVisionError
from resources.export_limits import PARITY_TOLERANCE

if TYPE_CHECKING:
    import torch

__all__ = [
    "ExportError",
    "ExportFormat",
    "FP32_FORMATS",
    "PARITY_TOLERANCE",
    "export_onnx",
    "export_openvino",
    "prepare_for_quantisation",
    "quantize_onnx_int8",
    "sha256_file",
]

logger = logging.getLogger(__name__)

ExportFormat = ModelFormat
"""The platform's name for the formats; the same enum the device runtime uses, so values never drift."""


FP32_FORMATS: frozenset[ModelFormat] = frozenset({ModelFormat.ONNX, ModelFormat.OPENVINO})
"""Formats that must reproduce torch's numbers; INT8 is judged on accuracy, not parity."""

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
CLASSIFIER_OUTPUTS: Mapping[str, int] = MappingProxyType({OUTPUT_NAME: 2})
_TORCH_BATCH = 32


class ExportError(MfgVisionError, RuntimeError):
    """An export, conversion or quantisation failed or produced a file that does not fit the contract."""


# --------------------------------------------------------------------------------------------------
# export


def export_onnx(
    model: "torch.nn.Module",
    image_size: int,
    path: Path,
    *,
    opset: int = 18,
    outputs: Mapping[str, int] = CLASSIFIER_OUTPUTS,
) -> Path:
    """Export ``model`` to ONE self-contained ONNX file at ``path`` and validate it with the checker.

    ``outputs`` names the graph's outputs in the order the module returns them, each with its rank
    (the classifier: ``probabilities`` N×C; the anomaly detector: ``anomaly_map`` N×1×H×W and
    ``score`` N); the written file must have exactly those.

    Uses the torch.export-based (dynamo) exporter, torch's default and the supported one (the
    TorchScript exporter is deprecated), with ``external_data=False`` on both export and save so the
    weights are embedded; it then checks that no initializer points at external data and that no
    ``.onnx.data`` file was written. That limits a model to 2 GB, far above an inspection CNN. The
    example batch is 2, so torch.export cannot specialise the batch dimension to 1. The file is
    written under a temporary name and renamed, so a reader never sees half a model.
    """
    import onnx
    import torch

    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ExportError(f"image_size: expected an integer >= 8 pixels, got {image_size!r}")
    if not isinstance(model, torch.nn.Module):
        raise ExportError(
            f"model: expected the trainer's deployable torch.nn.Module, got {type(model).__name__}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    example = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)) * 255
    started = time.perf_counter()
    try:
        with _eval_mode(model), torch.no_grad():
            program = torch.onnx.export(
                model,
                (example,),
                None,
                input_names=[INPUT_NAME],
                output_names=list(outputs),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                verbose=False,
            )
        if program is None:
            raise ExportError(f"{path}: torch.onnx.export returned no program (torch {torch.__version__})")
        program.save(str(tmp), external_data=False)
        _require_single_file(tmp, path)
        onnx.checker.check_model(str(tmp), full_check=True)
        _check_onnx_io(tmp, path, image_size, outputs)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:  # torch.export and onnx raise many unrelated types; translate them all
        raise ExportError(
            f"{path}: ONNX export of {type(model).__name__} at {image_size}×{image_size} failed: "
            f"{type(exc).__name__}: {exc}; check the model is traceable by torch.export "
            f"(no data-dependent Python control flow) and returns {_describe(outputs)}"
        ) from exc
    finally:
        for leftover in (tmp, Path(f"{tmp}.data")):
            leftover.unlink(missing_ok=True)
    logger.info(
        "exported ONNX %s (%d×%d, opset %d, %.1f MB) in %.1f s",
        path,
        image_size,
        image_size,
        opset,
        path.stat().st_size / 1e6,
        time.perf_counter() - started,
    )
    return path


def export_openvino(onnx_path: Path, xml_path: Path) -> Path:
    """Convert an ONNX export to an OpenVINO IR (``xml_path`` plus a ``.bin`` beside it), FP32 weights.

    ``save_model`` compresses weights to FP16 unless told not to; that alone moved logits by ~1e-3 on
    this machine, so ``compress_to_fp16=False`` keeps the IR numerically the validated model. Works
    for a QDQ INT8 ONNX file too (OpenVINO then runs it in INT8).
    """
    onnx_path, xml_path = Path(onnx_path), Path(xml_path)
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path}: ONNX file not found; run export_onnx first")
    if xml_path.suffix.lower() != ".xml":
        raise ExportError(
            f"{xml_path}: an OpenVINO IR path must end in .xml (the .bin is written beside it), got "
            f"{xml_path.suffix or 'no suffix'}"
        )
    apply_offline_switches()
    import openvino as ov

    xml_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        converted = ov.convert_model(str(onnx_path))
        ov.save_model(converted, str(xml_path), compress_to_fp16=False)
    except Exception as exc:  # openvino raises RuntimeError/OpConversionFailure with the converter's text
        raise ExportError(
            f"{onnx_path}: OpenVINO conversion to {xml_path} failed: {exc}; check the ONNX file with "
            "onnx.checker and that its opset is supported by openvino"
        ) from exc
    bin_path = xml_path.with_suffix(".bin")
    if not bin_path.is_file():
        raise ExportError(f"{xml_path}: OpenVINO wrote no weights file {bin_path.name} beside it")
    logger.info(
        "exported OpenVINO IR %s (+%s, %.1f MB) in %.1f s",
        xml_path,
        bin_path.name,
        bin_path.stat().st_size / 1e6,
        time.perf_counter() - started,
    )
    return xml_path


def quantize_onnx_int8(
    onnx_path: Path,
    calibration_images: np.ndarray,
    out_path: Path,
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    max_images: int = 32,
    nodes_to_exclude: tuple[str, ...] = (),
    float_convs: int = 0,
    pre_process: bool = True,
) -> Path:
    """Quantise an FP32 ONNX export to a static QDQ INT8 ONNX file for CPU inference.

    Static (calibrated) quantisation, because dynamic quantisation gave no speed-up for CNNs here
    (it only quantises MatMul/Gemm at run time). QDQ because ONNX Runtime's CPU kernels are optimised
    for it and OpenVINO reads it too. Weights are per-channel INT8 (ResNet-style conv weights vary a
    lot between output channels), activations asymmetric UINT8 with MinMax ranges, the ORT
    recommendation for x86 CPUs with VNNI; pass ``reduce_range=True`` for x86 CPUs without VNNI
    (7-bit weights avoid integer saturation there). ``quant_pre_process`` first folds BatchNorm into
    convolutions and infers shapes, so BN is quantised as part of its conv (:func:`prepare_for_quantisation`;
    ``pre_process=False`` when ``onnx_path`` is its output already, as for each of several tries). The final Softmax stays in
    float: quantised, its UINT8 output rounded probabilities to steps of 1/255 (0.0039), too coarse
    for reject thresholds, for no measurable speed gain. ``nodes_to_exclude`` keeps more nodes
    in float (e.g. the first conv and the classifier, see ``bench/int8_speed.py``). Up to ``max_images``
    calibration images (uint8 N×H×W×3, at the model's size, spread evenly over what is given) are used;
    about 32 is enough for MinMax ranges and keeps calibration to seconds. ``float_convs`` keeps the
    first that many convolutions, and every node before them, in float: on low-contrast images the
    high-resolution early layers carry the faint signal that 8-bit per-tensor activations round away
    (see ``resources.classify.int8_precision``, which chooses it).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise ExportError(f"{onnx_path}: ONNX file not found; run export_onnx first")
    if isinstance(float_convs, bool) or not isinstance(float_convs, int) or float_convs < 0:
        raise ExportError(f"float_convs: expected an integer >= 0, got {float_convs!r}")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ExportError(f"max_images: expected an integer >= 1, got {max_images!r}")
    try:
        batch = preprocess(calibration_images)
    except InferenceError as exc:
        raise ExportError(f"calibration images for {onnx_path}: {exc}") from exc
    if batch.shape[0] == 0:
        raise ExportError(f"calibration images for {onnx_path}: got none; pass about 32 uint8 images")
    try:
        # Loading and running one image proves the file is an image classifier at this image size,
        # with the device runtime's own error message (which says what to resize to) if it is not.
        load_predictor(onnx_path, ModelFormat.ONNX, num_threads=1).predict(calibration_images[:1])
    except InferenceError as exc:
        raise ExportError(f"calibration images for {onnx_path}: {exc}") from exc
    if batch.shape[0] > max_images:
        keep = np.linspace(0, batch.shape[0] - 1, max_images).round().astype(int)
        batch = batch[keep]
    if batch.shape[0] < 16:
        logger.warning(
            "quantising %s with only %d calibration images; about 32 give steadier activation ranges",
            onnx_path,
            batch.shape[0],
        )

    class _Reader(CalibrationDataReader):
        """Feeds one image at a time, so the calibration session runs at the deployed batch size."""

        def __init__(self, images: np.ndarray) -> None:
            self._iter: Iterator[np.ndarray] = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._iter, None)
            return None if image is None else {INPUT_NAME: image[None]}

    out_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # Temporary files (pre-processed model, augmented calibration model) live in a private in-progress
    # folder beside the output, never in the working directory; they go away afterwards, or are swept
    # after a crash (resources.storage.scratch).
    with scratch_dir(out_path.parent, "quant") as work:
        tmp_out = work / "int8.onnx"
        prepared = onnx_path
        if pre_process:
            prepared, _note = prepare_for_quantisation(onnx_path, work / "prepared.onnx")
        try:
            quantize_static(
                str(prepared),
                str(tmp_out),
                _Reader(batch),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=[*_softmax_nodes(prepared), *_float_prefix(prepared, float_convs), *nodes_to_exclude],
                use_external_data_format=False,
            )
        except Exception as exc:
            raise ExportError(
                f"{onnx_path}: static INT8 quantisation failed: {type(exc).__name__}: {exc}; check "
                "the FP32 file loads with edge_sync.inference.load_predictor"
            ) from exc
        _require_single_file(tmp_out, out_path)
        os.replace(tmp_out, out_path)  # same folder tree, so a rename: a reader never sees half a model
    logger.info(
        "quantised %s → %s (QDQ INT8, per_channel=%s, first %d convolutions in float, %d calibration images, "
        "%.1f MB) in %.1f s",
        onnx_path,
        out_path,
        per_channel,
        float_convs,
        batch.shape[0],
        out_path.stat().st_size / 1e6,
        time.perf_counter() - started,
    )
    return out_path


def prepare_for_quantisation(onnx_path: Path, out_path: Path) -> tuple[Path, str]:
    """ONNX Runtime's ``quant_pre_process`` of ``onnx_path`` into ``out_path`` (BatchNorm folded into
    the convolutions, shapes inferred), and what happened, for the export's record.

    Symbolic shape inference fails on some graphs; the raw graph still quantises (BatchNorm then
    quantised on its own, which costs accuracy), so that is a fallback, not an error: the returned
    path is then ``onnx_path`` and the note says why, and the caller records it with the INT8 choice."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(onnx_path), str(out_path), skip_symbolic_shape=False)
    except Exception as exc:  # onnxruntime raises assorted errors from its shape inference
        note = f"quant_pre_process failed ({type(exc).__name__}: {exc}); the graph was quantised without BatchNorm folding"
        logger.warning("%s: %s", onnx_path, note)
        return Path(onnx_path), note
    return Path(out_path), "quant_pre_process: BatchNorm folded, shapes inferred"


@contextlib.contextmanager
def _eval_mode(model: "torch.nn.Module") -> Iterator[None]:
    """Run in eval mode (BatchNorm/Dropout frozen) and give the caller its model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _softmax_nodes(model_path: Path) -> list[str]:
    """Names of the Softmax nodes, kept in float so probabilities are not rounded to 1/255 steps."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "Softmax"]


def _float_prefix(model_path: Path, float_convs: int) -> list[str]:
    """Names of every node before the convolution that follows the first ``float_convs`` ones, in graph
    (topological) order: the float convolutions keep their activations too, so the first quantised tensor
    is an activation's output (range 0..6), never a raw convolution output (quantised alone, its wide
    range cost a magnetic-tile model more than quantising the whole network). With every convolution in
    float, nothing is quantised but the file stays a valid INT8-format model.

    ONNX Runtime excludes nodes by name, so every node of the prefix needs its own name: an unnamed or
    repeated one would keep unrelated nodes in float, or none.
    """
    import onnx

    if float_convs == 0:
        return []
    nodes = list(onnx.load(str(model_path), load_external_data=False).graph.node)
    conv_positions = [i for i, node in enumerate(nodes) if node.op_type == "Conv"]
    if float_convs > len(conv_positions):
        raise ExportError(
            f"float_convs: {model_path} has {len(conv_positions)} convolutions, {float_convs} asked to stay in float; "
            "pass at most that many"
        )
    prefix = nodes[: conv_positions[float_convs]] if float_convs < len(conv_positions) else nodes
    uses = collections.Counter(node.name for node in nodes)
    for i, node in enumerate(prefix):
        if not node.name or uses[node.name] > 1:
            raise ExportError(
                f"{model_path}: node {i} ({node.op_type}) has {'no' if not node.name else 'a repeated'} name, so it "
                "cannot be kept in float; re-export the model with export_onnx, which names every node"
            )
    return [node.name for node in prefix]


def _require_single_file(written: Path, target: Path) -> None:
    """Fail if ONNX weights went to a side file: a lone ``.onnx`` would then be unloadable."""
    import onnx

    side = Path(f"{written}.data")
    proto = onnx.load(str(written), load_external_data=False)
    external = [
        t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external or side.exists():
        raise ExportError(
            f"{target}: expected one self-contained ONNX file, but {len(external)} weights are stored "
            f"externally (first: {external[:1]}) and side file exists: {side.exists()}; the model may "
            "exceed ONNX's 2 GB single-file limit"
        )


def _describe(outputs: Mapping[str, int]) -> str:
    return ", ".join(f"{name} (rank {rank})" for name, rank in outputs.items())


def _check_onnx_io(written: Path, target: Path, image_size: int, outputs: Mapping[str, int]) -> None:
    import onnx

    graph = onnx.load(str(written), load_external_data=False).graph

    def dims(value: Any) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = [(i.name, dims(i)) for i in graph.input]
    written_outputs = [(o.name, dims(o)) for o in graph.output]
    ok_input = (
        len(inputs) == 1
        and inputs[0][0] == INPUT_NAME
        and len(inputs[0][1]) == 4
        and isinstance(inputs[0][1][0], str)
        and inputs[0][1][1:] == [3, image_size, image_size]
    )
    ok_output = [(name, len(shape)) for name, shape in written_outputs] == list(outputs.items())
    if not (ok_input and ok_output):
        raise ExportError(
            f"{target}: expected input {INPUT_NAME} [batch, 3, {image_size}, {image_size}] and outputs "
            f"{_describe(outputs)}, got inputs {inputs} and outputs {written_outputs}; the model must take "
            f"one N×3×H×W tensor and return {_describe(outputs)}"
        )
