"""Run an exported inspection model on a CPU: the edge device's runtime and the platform's parity check.

The exported graph carries its own normalisation and softmax (see ``resources.classify.exporter``), so the
only thing a caller must get right is the pixel layout: RGB ``uint8`` images, N×H×W×3, at the size the
model was exported for. :func:`preprocess` turns that into the float32 N×3×H×W tensor of raw 0..255
values the graph expects; nothing here normalises, so the device cannot disagree with training about
mean and standard deviation.

Three formats are served, each by the engine that runs it best on a CPU:

* ``onnx`` and ``onnx_int8`` (the QDQ-quantised ONNX file) through ONNX Runtime's
  ``CPUExecutionProvider``;
* ``openvino`` (an IR ``.xml`` with its ``.bin`` beside it) through ``openvino.Core().compile_model``
  on ``"CPU"``.

OpenVINO is compiled with ``INFERENCE_PRECISION_HINT=f32``: on CPUs with AVX512-BF16 or AMX (the
platform's own build machine has AVX512-BF16) OpenVINO silently runs FP32 IRs in bfloat16, which
moved softmax probabilities by 3e-4 (resnet10t) to 5e-2 (convnext_atto) in our measurements, whereas
with ``f32`` they stay within 5e-6 of torch. A device must run the numbers that were validated, so
precision is pinned here (measurements: ``resources/classify/exporter.py``).

This module imports nothing from Dagster or from the platform's packages, so a device can install it
alone; it uses only the OpenVINO runtime (``Core``), never the converter, which is where OpenVINO's
telemetry lives.
"""

import logging
import threading
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "PIL_DECODE_ERRORS",
    "InferenceError",
    "ModelFormat",
    "Predictor",
    "load_predictor",
    "preprocess",
]

logger = logging.getLogger(__name__)


# Errors Pillow raises from its plugins on malformed data (it does not wrap them all in OSError);
# shared by the device (camera images) and the platform (ingest) so both treat the same files as bad.
PIL_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    ZeroDivisionError,
)

_REEXPORT = "re-export the model with the platform's exporter of its task"
"""The fix for a model file this runtime cannot run: the platform's export writes what it can."""


class ModelFormat(StrEnum):
    """The exported formats a device can run; the value is what manifests and metadata store."""

    ONNX = "onnx"
    OPENVINO = "openvino"
    ONNX_INT8 = "onnx_int8"


class InferenceError(Exception):
    """A model file cannot be loaded, or images do not fit the model (size, channels, dtype)."""


@runtime_checkable
class Predictor(Protocol):
    """A loaded model: RGB ``uint8`` N×H×W×3 images in; ``predict`` gives a classifier's float32 N×C
    class probabilities, ``outputs`` every output by name (an anomaly detector's map and score)."""

    format: ModelFormat

    def predict(self, images: np.ndarray) -> np.ndarray: ...

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]: ...


def preprocess(images: np.ndarray) -> np.ndarray:
    """Turn RGB ``uint8`` N×H×W×3 images into the float32 N×3×H×W tensor (values 0..255) the graph takes.

    No scaling or normalisation happens here on purpose: the exported graph does it, so the device
    and the trainer cannot disagree about it.
    """
    if not isinstance(images, np.ndarray):
        raise InferenceError(
            f"images: expected a numpy uint8 array N×H×W×3, got {type(images).__name__}; "
            "convert with np.asarray(..., dtype=np.uint8)"
        )
    if images.dtype != np.uint8:
        raise InferenceError(
            f"images: expected dtype uint8 (RGB 0..255), got {images.dtype}; pass the decoded pixels, "
            "not a normalised or float array (the model normalises inside)"
        )
    if images.ndim != 4:
        hint = " (one image? use images[None])" if images.ndim == 3 else ""
        raise InferenceError(
            f"images: expected 4 dimensions N×H×W×3, got shape {images.shape}{hint}"
        )
    if images.shape[-1] != 3:
        raise InferenceError(
            f"images: expected 3 RGB channels last (N×H×W×3), got shape {images.shape}; "
            "convert grey or RGBA images to RGB, and channels-first arrays to channels-last"
        )
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def load_predictor(
    path: Path, model_format: ModelFormat | str, *, num_threads: int = 2
) -> "Predictor":
    """Load an exported model for CPU inference with ``num_threads`` threads.

    Fails early, with an :class:`InferenceError` that names the file, when the file is missing, is not
    of ``model_format``, or does not take one RGB image tensor N×3×H×W: a device should refuse a bad
    model at activation, not at its first image.
    """
    path = Path(path)
    fmt = _parse_format(model_format)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise InferenceError(f"num_threads: expected an integer >= 1, got {num_threads!r}")
    if not path.is_file():
        raise InferenceError(
            f"{path}: model file not found (format {fmt.value}); check the path, or re-fetch the "
            "model from the registry"
        )
    predictor: _OpenVinoPredictor | _OnnxRuntimePredictor
    if fmt is ModelFormat.OPENVINO:
        predictor = _OpenVinoPredictor(path, num_threads)
    else:
        predictor = _OnnxRuntimePredictor(path, fmt, num_threads)
    logger.info(
        "loaded %s model %s (input %s, %d threads)",
        fmt.value,
        path,
        _describe_hw(predictor.input_hw),
        num_threads,
    )
    return predictor


def _parse_format(model_format: ModelFormat | str) -> ModelFormat:
    try:
        return ModelFormat(model_format)
    except ValueError as exc:
        choices = ", ".join(f.value for f in ModelFormat)
        raise InferenceError(
            f"model format {model_format!r} is not supported; choose one of: {choices}"
        ) from exc


def _describe_hw(hw: tuple[int | None, int | None]) -> str:
    return "×".join("?" if d is None else str(d) for d in hw)


def _static_dim(value: Any) -> int | None:
    """A dimension as an int, or None when it is symbolic/dynamic."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


class _BasePredictor:
    """Shared input checks: the images must match the model's H×W and have 3 channels."""

    format: ModelFormat
    path: Path
    input_hw: tuple[int | None, int | None]

    def _check_input_layout(self, shape: list[Any]) -> None:
        if len(shape) != 4:
            raise InferenceError(
                f"{self.path}: expected a model taking one N×3×H×W image tensor, its input has "
                f"shape {shape}; {_REEXPORT}"
            )
        channels = _static_dim(shape[1])
        if channels is not None and channels != 3:
            raise InferenceError(
                f"{self.path}: expected a model taking 3-channel RGB images (N×3×H×W), its input "
                f"has {channels} channels (shape {shape}); is this a channels-last or grey export?"
            )
        self.input_hw = (_static_dim(shape[2]), _static_dim(shape[3]))

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        try:
            batch = preprocess(images)
        except InferenceError as exc:
            raise InferenceError(f"{self.path}: {exc}") from exc
        height, width = batch.shape[2], batch.shape[3]
        want_h, want_w = self.input_hw
        if (want_h is not None and height != want_h) or (want_w is not None and width != want_w):
            raise InferenceError(
                f"{self.path}: model expects {_describe_hw(self.input_hw)}×3 images, got "
                f"{height}×{width}×3 (batch shape {images.shape}); resize to "
                f"{_describe_hw(self.input_hw)} before predict"
            )
        return batch

    def _check_output(self, probabilities: Any, n_images: int) -> np.ndarray:
        out = np.asarray(probabilities, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != n_images:
            raise InferenceError(
                f"{self.path}: expected N×C probabilities for {n_images} images, the model returned "
                f"shape {out.shape}; {_REEXPORT}"
            )
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(format={self.format.value!r}, path={str(self.path)!r})"


class _OnnxRuntimePredictor(_BasePredictor):
    """ONNX (FP32 or QDQ INT8) through ONNX Runtime's CPU provider; ``run`` is thread-safe."""

    def __init__(self, path: Path, fmt: ModelFormat, num_threads: int) -> None:
        import onnxruntime as ort

        self.format = fmt
        self.path = path
        if path.suffix.lower() in {".xml", ".bin"}:
            raise InferenceError(
                f"{path}: this looks like an OpenVINO IR file, not {fmt.value}; load it with "
                f"model_format='{ModelFormat.OPENVINO.value}' (the .xml, with its .bin beside it)"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ONNX Runtime logs "could not find external data" and similar at WARNING through its own
        # logger; we raise with the same information instead.
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions (Fail, InvalidGraph...)
            raise InferenceError(
                f"{path}: ONNX Runtime cannot load this file as {fmt.value} ({exc}); check that it is "
                "a complete ONNX export (any .onnx.data side file beside it) of the expected format"
            ) from exc
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise InferenceError(
                f"{path}: expected one image input and a probabilities output, found inputs "
                f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}; "
                f"{_REEXPORT}"
            )
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name
        if inputs[0].type != "tensor(float)":
            raise InferenceError(
                f"{path}: expected a float32 image input, found {inputs[0].type}; "
                f"{_REEXPORT}"
            )
        self._check_input_layout(list(inputs[0].shape))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (float32 N×C) for RGB ``uint8`` images N×H×W×3."""
        batch = self._prepare(images)
        try:
            (probabilities,) = self._session.run([self._output_name], {self._input_name: batch})
        except Exception as exc:  # onnxruntime's own exception types are not importable stably
            raise InferenceError(f"{self.path}: inference failed on batch {batch.shape}: {exc}") from exc
        return self._check_output(probabilities, batch.shape[0])

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name (an anomaly detector's map and score), float32."""
        batch = self._prepare(images)
        try:
            values = self._session.run(None, {self._input_name: batch})
        except Exception as exc:  # onnxruntime's own exception types are not importable stably
            raise InferenceError(f"{self.path}: inference failed on batch {batch.shape}: {exc}") from exc
        names = [o.name for o in self._session.get_outputs()]
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, values, strict=True)}


class _OpenVinoPredictor(_BasePredictor):
    """OpenVINO IR on the CPU plugin, FP32, latency-tuned; one infer request guarded by a lock."""

    def __init__(self, path: Path, num_threads: int) -> None:
        self.format = ModelFormat.OPENVINO
        self.path = path
        if path.suffix.lower() != ".xml":
            raise InferenceError(
                f"{path}: an OpenVINO model is the IR .xml file (with its .bin beside it), got a "
                f"{path.suffix or 'suffix-less'} file; pass the .xml, or load an .onnx file with "
                f"model_format='{ModelFormat.ONNX.value}'"
            )
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise InferenceError(
                f"{path}: the OpenVINO weights file {weights.name} is missing beside it; copy the "
                ".xml and .bin together"
            )
        import openvino as ov

        core = ov.Core()
        config = {
            "INFERENCE_NUM_THREADS": num_threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        try:
            model = core.read_model(str(path), str(weights))
        except Exception as exc:  # openvino raises RuntimeError subclasses with the parser's text
            raise InferenceError(
                f"{path}: OpenVINO cannot read this IR ({exc}); "
                f"{_REEXPORT}"
            ) from exc
        if len(model.inputs) != 1 or len(model.outputs) < 1:
            raise InferenceError(
                f"{path}: expected one image input and a probabilities output, found "
                f"{len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                f"{_REEXPORT}"
            )
        partial = model.inputs[0].get_partial_shape()
        if partial.rank.is_dynamic:
            raise InferenceError(
                f"{path}: the model's input rank is dynamic, expected N×3×H×W; re-export it with a "
                "fixed image size"
            )
        shape = [d.get_length() if d.is_static else None for d in partial]
        self._check_input_layout(shape)
        try:
            self._compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise InferenceError(f"{path}: OpenVINO cannot compile this model for CPU ({exc})") from exc
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (float32 N×C) for RGB ``uint8`` images N×H×W×3."""
        batch = self._prepare(images)
        try:
            with self._lock:
                result = self._request.infer({0: batch})
                probabilities = np.array(result[0], dtype=np.float32, copy=True)
        except Exception as exc:
            raise InferenceError(f"{self.path}: inference failed on batch {batch.shape}: {exc}") from exc
        return self._check_output(probabilities, batch.shape[0])

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name (an anomaly detector's map and score), float32."""
        batch = self._prepare(images)
        try:
            with self._lock:
                result = self._request.infer({0: batch})
                values = {}
                for index, port in enumerate(self._compiled.outputs):
                    value = np.array(result[index], dtype=np.float32, copy=True)
                    for name in port.get_names():  # a tensor may carry several names; the export's is one
                        values[name] = value
        except Exception as exc:
            raise InferenceError(f"{self.path}: inference failed on batch {batch.shape}: {exc}") from exc
        return values
