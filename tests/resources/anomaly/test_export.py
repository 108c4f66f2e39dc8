"""Export → load → predict round trip of the whole detector graph, on ONNX Runtime and OpenVINO."""

from pathlib import Path

import numpy as np
import pytest

from edge_sync.inference import ModelFormat
from resources.anomaly.detector import AnomalySettings, fit_detector, load_detector, score_images
from resources.anomaly.export import check_detector_parity, export_detector, require_detector_parity
from resources.classify.exporter import ExportError
from tests.resources.anomaly.test_detector import SIZE, _surfaces


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    settings = AnomalySettings(image_size=SIZE, max_bank=300, map_sigma=2.0)
    net = load_detector(fit_detector(_surfaces(6, seed=0), settings).checkpoint)
    folder = tmp_path_factory.mktemp("detector")
    onnx_path, xml_path = export_detector(net, SIZE, folder / "detector.onnx", folder / "detector.xml")
    return net, {ModelFormat.ONNX: onnx_path, ModelFormat.OPENVINO: xml_path}


def test_both_runtimes_reproduce_torch_maps_scores_and_decisions(exported: tuple) -> None:
    net, files = exported
    images = np.concatenate([_surfaces(4, seed=1), _surfaces(4, seed=2, blemish=True)])
    _, scores = score_images(net, images)
    threshold = float((scores[:4].max() + scores[4:].min()) / 2)
    results = check_detector_parity(net, files, images, threshold=threshold)
    assert [r.format for r in results] == ["onnx", "openvino"]
    for result in results:
        assert result.passed, result
        assert result.decisions_differing == 0 and result.ms_per_image > 0
    require_detector_parity(results)


def test_parity_fails_for_a_detector_with_another_memory_bank(exported: tuple) -> None:
    net, files = exported
    other = load_detector(fit_detector(_surfaces(6, seed=9), AnomalySettings(image_size=SIZE, max_bank=300, map_sigma=2.0)).checkpoint)
    results = check_detector_parity(other, files, _surfaces(4, seed=2, blemish=True))
    assert not any(r.passed for r in results)
    with pytest.raises(ExportError, match="onnx: largest difference .*; openvino: .*do not deploy it"):
        require_detector_parity(results)


def test_an_unfitted_detector_is_not_exported(tmp_path: Path, exported: tuple) -> None:
    net, _ = exported
    empty = load_detector(fit_detector(_surfaces(1, seed=0), AnomalySettings(image_size=SIZE, max_bank=5)).checkpoint)
    empty.set_memory_bank(empty.memory_bank[:0])
    with pytest.raises(ExportError, match="memory bank is empty"):
        export_detector(empty, SIZE, tmp_path / "d.onnx", tmp_path / "d.xml")
