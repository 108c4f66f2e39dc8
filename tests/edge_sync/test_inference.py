"""The device runtime: export → load → predict round trips for every format, and its refusals.

A tiny from-scratch resnet10t at 32 px is exported once per module (about 5 s with the INT8 file);
nothing touches the network.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.deployable import deployable_model, smooth_images

from edge_sync.inference import (
    InferenceError,
    ModelFormat,
    Predictor,
    load_predictor,
    preprocess,
)

SIZE = 32
N_CLASSES = 3
REPO = Path(__file__).resolve().parents[2]


def _deployable(seed: int):
    return deployable_model(seed, N_CLASSES)


def _images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return smooth_images(n, size, seed)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from resources.classify.exporter import export_onnx, export_openvino, quantize_onnx_int8

    folder = tmp_path_factory.mktemp("inference")
    model = _deployable(seed=0)
    onnx_path = export_onnx(model, SIZE, folder / "model.onnx")
    paths = {
        ModelFormat.ONNX: onnx_path,
        ModelFormat.OPENVINO: export_openvino(onnx_path, folder / "model.xml"),
        ModelFormat.ONNX_INT8: quantize_onnx_int8(
            onnx_path, _images(32, seed=7), folder / "model_int8.onnx"
        ),
    }
    return model, paths


def _torch_probabilities(model, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(preprocess(images))).numpy()


# ---------------------------------------------------------------------------- preprocess


def test_preprocess_is_layout_only_no_normalisation() -> None:
    images = _images(2)
    batch = preprocess(images)
    assert batch.dtype == np.float32
    assert batch.shape == (2, 3, SIZE, SIZE)
    assert batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch[1, 2], images[1, :, :, 2].astype(np.float32))


@pytest.mark.parametrize(
    ("images", "fragment"),
    [
        (np.zeros((1, SIZE, SIZE, 3), np.float32), "uint8"),
        (np.zeros((SIZE, SIZE, 3), np.uint8), "images[None]"),
        (np.zeros((1, SIZE, SIZE, 4), np.uint8), "3 RGB channels"),
        (np.zeros((1, 3, SIZE, SIZE), np.uint8), "channels-last"),
        ([[0, 1]], "numpy"),
    ],
)
def test_preprocess_rejects_what_the_model_cannot_take(images, fragment: str) -> None:
    with pytest.raises(InferenceError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        preprocess(images)


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("fmt", list(ModelFormat))
def test_round_trip_predicts_probabilities_like_torch(exported, fmt: ModelFormat) -> None:
    model, paths = exported
    images = _images(6, seed=3)
    predictor = load_predictor(paths[fmt], fmt.value, num_threads=1)  # the string form works too

    assert isinstance(predictor, Predictor)
    assert predictor.format is fmt
    probabilities = predictor.predict(images)
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (6, N_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-3)
    reference = _torch_probabilities(model, images)
    # FP32 runtimes reproduce torch (see resources.classify.exporter for the measured tolerance); INT8 only
    # approximates it.
    atol = 5e-2 if fmt is ModelFormat.ONNX_INT8 else 1e-4
    np.testing.assert_allclose(probabilities, reference, atol=atol)
    # Dynamic batch: one image at a time gives the same numbers as the batch.
    np.testing.assert_allclose(predictor.predict(images[:1]), probabilities[:1], atol=1e-5)


@pytest.mark.parametrize("fmt", list(ModelFormat))
def test_wrong_image_size_names_file_and_size(exported, fmt: ModelFormat) -> None:
    _, paths = exported
    predictor = load_predictor(paths[fmt], fmt)
    with pytest.raises(InferenceError) as caught:
        predictor.predict(_images(2, size=48))
    message = str(caught.value)
    assert str(paths[fmt]) in message
    assert "48×48" in message and f"resize to {SIZE}×{SIZE}" in message


@pytest.mark.parametrize(
    "shape", [(1, SIZE, SIZE, 1), (1, 3, SIZE, SIZE)], ids=["grey", "channels-first"]
)
@pytest.mark.parametrize("fmt", [ModelFormat.ONNX, ModelFormat.OPENVINO])
def test_wrong_channel_layout_names_file(exported, fmt: ModelFormat, shape: tuple[int, ...]) -> None:
    _, paths = exported
    predictor = load_predictor(paths[fmt], fmt)
    with pytest.raises(InferenceError, match="3 RGB channels last") as caught:
        predictor.predict(np.zeros(shape, np.uint8))
    assert str(paths[fmt]) in str(caught.value)


# ---------------------------------------------------------------------------- refusals at load


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(InferenceError, match="not found") as caught:
        load_predictor(missing, ModelFormat.ONNX)
    assert str(missing) in str(caught.value)


def test_unknown_format_lists_choices(exported) -> None:
    _, paths = exported
    with pytest.raises(InferenceError, match="onnx, openvino, onnx_int8"):
        load_predictor(paths[ModelFormat.ONNX], "tflite")


def test_openvino_ir_loaded_as_onnx_is_refused(exported) -> None:
    _, paths = exported
    with pytest.raises(InferenceError, match="model_format='openvino'"):
        load_predictor(paths[ModelFormat.OPENVINO], ModelFormat.ONNX)


def test_onnx_loaded_as_openvino_is_refused(exported) -> None:
    _, paths = exported
    with pytest.raises(InferenceError, match=r"\.xml"):
        load_predictor(paths[ModelFormat.ONNX], ModelFormat.OPENVINO)


def test_openvino_without_its_bin_is_refused(exported, tmp_path: Path) -> None:
    _, paths = exported
    lone = tmp_path / "model.xml"
    lone.write_bytes(paths[ModelFormat.OPENVINO].read_bytes())
    with pytest.raises(InferenceError, match=r"model\.bin is missing"):
        load_predictor(lone, ModelFormat.OPENVINO)


def test_corrupt_onnx_file_is_refused_with_its_name(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(InferenceError) as caught:
        load_predictor(broken, ModelFormat.ONNX)
    assert str(broken) in str(caught.value)


def test_bad_thread_count_is_refused(exported) -> None:
    _, paths = exported
    with pytest.raises(InferenceError, match="num_threads"):
        load_predictor(paths[ModelFormat.ONNX], ModelFormat.ONNX, num_threads=0)


def test_module_imports_nothing_from_the_platform() -> None:
    """A device installs edge_sync alone: importing the runtime must not pull in Dagster or the platform."""
    code = (
        "import json, sys; import edge_sync.inference; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert not loaded & {"dagster", "mfg_assets", "resources", "sensors", "torch", "openvino"}
