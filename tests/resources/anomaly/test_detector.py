"""The detector on generated parts: a textured good surface, and the same with a blemish."""

import numpy as np
import pytest
import torch

from resources.anomaly.detector import AnomalyError, AnomalySettings, fit_detector, load_detector, score_images
from resources.anomaly.network import gaussian_kernel_1d

SIZE = 64


def _surfaces(n: int, seed: int, blemish: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    images = []
    for _ in range(n):
        phase = rng.uniform(0, 2 * np.pi)
        grey = 120 + 40 * np.sin(x / 3.0 + phase) + rng.normal(0, 6, (SIZE, SIZE))
        if blemish:
            cy, cx = rng.integers(16, 48, size=2)
            grey[(y - cy) ** 2 + (x - cx) ** 2 < 25] = 20  # a dark pit
        images.append(np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2))
    return np.stack(images)


@pytest.fixture(scope="module")
def fitted() -> tuple:
    # strides 8 and 16: an 8x8 patch grid at 64 px (the default 16 and 32 would leave 4x4)
    settings = AnomalySettings(image_size=SIZE, feature_levels=(2, 3), coreset_ratio=0.5, max_bank=300, map_sigma=2.0, seed=3)
    return settings, fit_detector(_surfaces(12, seed=0), settings)


def test_a_blemish_scores_above_every_good_part_and_the_map_points_at_it(fitted: tuple) -> None:
    settings, fit = fitted
    assert fit.n_images == 12 and fit.n_patches == 12 * 8 * 8 and fit.bank_size == 300  # half, capped
    assert fit.backbone["name"] == "mobilenetv2_100" and len(fit.backbone["sha256"]) == 64
    net = load_detector(fit.checkpoint)
    good_maps, good = score_images(net, _surfaces(8, seed=1))
    bad_maps, bad = score_images(net, _surfaces(8, seed=2, blemish=True))
    assert good_maps.shape == (8, SIZE, SIZE)
    assert bad.min() > good.max()
    top = np.sort(bad_maps.reshape(8, -1), axis=1)[:, ::-1][:, : round(0.05 * SIZE * SIZE)]
    np.testing.assert_allclose(bad, top.mean(axis=1), rtol=1e-5)  # mean of the highest 5 % of the map
    assert (bad_maps.reshape(8, -1).argmax(axis=1) != 0).all()


def test_the_checkpoint_round_trip_scores_the_same_and_keeps_the_settings(fitted: tuple) -> None:
    settings, fit = fitted
    images = _surfaces(3, seed=4, blemish=True)
    first = load_detector(fit.checkpoint)
    second = load_detector(fit.checkpoint)
    assert first.settings == settings and first.memory_bank.shape == (300, 128)
    np.testing.assert_array_equal(score_images(first, images)[1], score_images(second, images)[1])
    assert score_images(first, images, keep_maps=False)[0] is None


def test_fitting_is_deterministic_for_a_seed() -> None:
    settings = AnomalySettings(image_size=SIZE, max_bank=50, seed=1)
    images = _surfaces(2, seed=0)
    assert fit_detector(images, settings).checkpoint == fit_detector(images, settings).checkpoint


def test_bad_input_is_refused_with_what_to_do(fitted: tuple) -> None:
    settings, fit = fitted
    with pytest.raises(AnomalyError, match="no good training images"):
        fit_detector(np.zeros((0, SIZE, SIZE, 3), np.uint8), settings)
    with pytest.raises(AnomalyError, match="load them with that size"):
        fit_detector(np.zeros((2, 32, 32, 3), np.uint8), settings)
    with pytest.raises(AnomalyError, match="backbone"):
        fit_detector(_surfaces(1, 0), AnomalySettings(image_size=SIZE, backbone="resnet_from_the_internet"))
    with pytest.raises(AnomalyError, match="feature levels"):
        fit_detector(_surfaces(1, 0), AnomalySettings(image_size=SIZE, feature_levels=(3, 2)))
    with pytest.raises(AnomalyError, match="cannot be read"):
        load_detector(b"not a checkpoint")
    with pytest.raises(AnomalyError, match="not a PatchCore checkpoint"):
        buffer = __import__("io").BytesIO()
        torch.save({"kind": "classifier"}, buffer)
        load_detector(buffer.getvalue())


def test_the_smoothing_kernel_is_a_normalised_gaussian() -> None:
    kernel = gaussian_kernel_1d(4.0)
    assert kernel.numel() == 33 and float(kernel.sum()) == pytest.approx(1.0)
    assert int(kernel.argmax()) == 16
    with pytest.raises(ValueError):
        gaussian_kernel_1d(0.0)


def test_a_defect_hidden_among_the_good_training_images_is_listed_first_and_flagged() -> None:
    images = np.concatenate([_surfaces(15, seed=0), _surfaces(1, seed=5, blemish=True)])
    fit = fit_detector(images, AnomalySettings(image_size=SIZE, coreset_ratio=0.5, max_bank=400))
    first = fit.suspicious_training_images[0]
    assert first["index"] == 15 and first["flagged"]
    assert not any(entry["flagged"] for entry in fit.suspicious_training_images[1:])
    assert "leave-own-out" in fit.contamination_check
    alone = fit_detector(_surfaces(1, seed=0), AnomalySettings(image_size=SIZE, max_bank=50))
    assert alone.suspicious_training_images == [] and alone.contamination_check.startswith("not run")
