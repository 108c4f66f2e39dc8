"""The detector's three feature sources: a bundled backbone, a local weights file, a registered classifier."""

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pydantic import ValidationError

from edge_sync.inference import ModelFormat
from resources.anomaly.detector import AnomalyError, AnomalySettings, check_backbone, fit_detector, load_detector, score_images
from resources.anomaly.export import check_detector_parity, export_detector
from resources.anomaly.feature_source import feature_source_hashes
from resources.artifact_store import sha256_file
from tests.resources.anomaly.test_detector import SIZE, _surfaces


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's local weights file for a ResNet-style arch (stands in for a WideResNet-50 on disk),
    with its ImageNet head and a ``state_dict`` wrapper as many training scripts save it."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / "resnet18_plant.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _file_settings(path: Path, **extra) -> AnomalySettings:
    return AnomalySettings(
        backbone="none", arch="resnet18", pretrained_weights=str(path), image_size=SIZE, feature_levels=(2, 3),
        max_bank=200, map_sigma=2.0, **extra,
    )


def test_a_local_weights_file_gives_the_features_and_its_hash_goes_to_lineage(resnet_file: Path, tmp_path: Path) -> None:
    fit = fit_detector(_surfaces(6, seed=0), _file_settings(resnet_file))
    assert fit.backbone["source"] == "weights_file" and fit.backbone["sha256"] == sha256_file(resnet_file)
    assert feature_source_hashes(fit.backbone) == {f"weights:{resnet_file}": sha256_file(resnet_file)}
    net = load_detector(fit.checkpoint)
    assert net.settings.backbone_label() == "resnet18-file"
    saved = torch.load(resnet_file, weights_only=True)["state_dict"]
    torch.testing.assert_close(net.body.features.layer2[0].conv1.weight, saved["layer2.0.conv1.weight"])
    assert net.body.channels == [128, 256] and not hasattr(net.body.features, "layer4")  # truncated after layer3
    resnet_file.rename(tmp_path / "moved.pth")  # the checkpoint carries the weights: the file is no longer needed
    try:
        images = np.concatenate([_surfaces(3, seed=1), _surfaces(3, seed=2, blemish=True)])
        np.testing.assert_array_equal(score_images(load_detector(fit.checkpoint), images)[1], score_images(net, images)[1])
        # a ResNet body exports to both runtimes as the bundled backbones do
        onnx_path, xml_path = export_detector(net, SIZE, tmp_path / "d.onnx", tmp_path / "d.xml")
        results = check_detector_parity(net, {ModelFormat.ONNX: onnx_path, ModelFormat.OPENVINO: xml_path}, images)
        assert all(r.passed for r in results), results
    finally:
        (tmp_path / "moved.pth").rename(resnet_file)


def test_a_registered_classifier_gives_its_body_and_its_normalisation(tmp_path: Path) -> None:
    torch.manual_seed(1)
    classifier = timm.create_model("mobilenetv2_100", pretrained=False, num_classes=3)
    checkpoint = tmp_path / "classifier.pt"
    mean, std = [100.0, 110.0, 120.0], [50.0, 51.0, 52.0]
    torch.save(
        {"state_dict": classifier.state_dict(), "arch": "mobilenetv2_100", "classes": ["good", "pit", "scratch"],
         "mean": mean, "std": std},
        checkpoint,
    )
    settings = AnomalySettings(
        backbone="none", arch="mobilenetv2_100", init_checkpoint=str(checkpoint), image_size=SIZE,
        feature_levels=(2, 3), max_bank=100,
    )
    provenance = check_backbone(settings)
    assert provenance["source"] == "registered_model" and provenance["classes"] == ["good", "pit", "scratch"]
    assert feature_source_hashes(provenance) == {"checkpoint:init_from": sha256_file(checkpoint)}
    net = load_detector(fit_detector(_surfaces(2, seed=0), settings).checkpoint)
    assert net.mean.flatten().tolist() == mean and net.std.flatten().tolist() == std
    torch.testing.assert_close(net.body.features.conv_stem.weight, classifier.conv_stem.weight)


def test_bad_feature_sources_are_refused_with_the_option_and_the_fix(resnet_file: Path, tmp_path: Path) -> None:
    with pytest.raises(AnomalyError, match="does not exist; it must be a local file"):
        check_backbone(_file_settings(tmp_path / "missing.pth"))
    foreign = tmp_path / "mobilenet.pth"
    torch.save(timm.create_model("mobilenetv2_100", pretrained=False).state_dict(), foreign)
    with pytest.raises(AnomalyError, match="another architecture: pass the matching --arch"):
        check_backbone(_file_settings(foreign))
    (tmp_path / "garbage.pth").write_bytes(b"not torch")
    with pytest.raises(AnomalyError, match="could not be read as torch weights"):
        check_backbone(_file_settings(tmp_path / "garbage.pth"))
    with pytest.raises(ValidationError, match="needs learned features"):
        AnomalySettings(backbone="none")
    with pytest.raises(ValidationError, match="without a weights file"):
        AnomalySettings(arch="wide_resnet50_2")
    with pytest.raises(ValidationError, match="not both"):
        AnomalySettings(backbone="none", arch="resnet18", pretrained_weights="a.pth", init_checkpoint="b.pt")
    with pytest.raises(ValidationError, match="pass --arch"):
        AnomalySettings(backbone="none", pretrained_weights=str(resnet_file))


class _EarlierBody(torch.nn.Module):
    """The detector's body as written before it used timm's FeatureListNet (stem, bn1, truncated blocks)."""

    def __init__(self, model: torch.nn.Module, levels: tuple[int, ...]) -> None:
        super().__init__()
        info = list(model.feature_info)
        self.block_indices = [int(info[level]["module"].split(".")[1]) for level in levels]
        self.channels = [int(info[level]["num_chs"]) for level in levels]
        self.conv_stem, self.bn1 = model.conv_stem, model.bn1
        self.blocks = torch.nn.Sequential(*list(model.blocks)[: max(self.block_indices) + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, outputs = self.bn1(self.conv_stem(x)), []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.block_indices:
                outputs.append(x)
        return outputs


def test_a_checkpoint_in_the_earlier_body_layout_still_loads() -> None:
    """A detector registered before the body used timm's FeatureListNet loads and scores as it did."""
    import io

    from resources.anomaly.network import PatchCoreNet
    from resources.models.backbones import load_backbone

    settings = AnomalySettings(image_size=SIZE, feature_levels=(2, 3), max_bank=50)
    fit = fit_detector(_surfaces(2, seed=0), settings)
    payload = torch.load(io.BytesIO(fit.checkpoint), weights_only=True)
    model, _ = load_backbone("mobilenetv2_100", num_classes=0)
    current = load_detector(fit.checkpoint)
    earlier = PatchCoreNet(
        _EarlierBody(model.eval(), settings.feature_levels), current.mean.flatten().tolist(), current.std.flatten().tolist(),
        settings.neighbourhood, settings.map_sigma, memory_bank=current.memory_bank, top_share=settings.top_share,
    ).eval()
    assert any(key.startswith("body.blocks.") for key in earlier.state_dict())
    buffer = io.BytesIO()
    torch.save({**payload, "state_dict": earlier.state_dict()}, buffer)
    images = _surfaces(2, seed=3, blemish=True)
    with torch.inference_mode():
        _, expected = earlier(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    np.testing.assert_allclose(score_images(load_detector(buffer.getvalue()), images)[1], expected.numpy(), rtol=1e-6)
