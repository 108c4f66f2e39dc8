"""timm classifier training on tiny synthetic images: learns, round-trips, is reproducible."""

import io
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from resources.classify.trainer import (
    EpochRecord,
    TrainingDidNotLearn,
    TrainResult,
    TrainSettings,
    balanced_sampling_weights,
    did_not_learn,
    frr_at_zero_escapes,
    load_inference_model,
    predict_proba,
    train_classifier,
)
from resources.models.model_init import WeightsError

SIZE = 32
CLASSES = ("dark", "bright")
# timm's smallest CNN from scratch; the bundled backbones are tested in test_backbones.py.
TINY = TrainSettings(
    backbone="none",
    arch="test_resnet",
    image_size=SIZE,
    epochs=2,
    batch_size=16,
    learning_rate=1e-2,
    weight_decay=0.0,
    seed=0,
    label_smoothing=0.0,
    online_augmentation=True,
)


def tiny(**changes: object) -> TrainSettings:
    """TINY with some fields changed, validated (``model_copy(update=...)`` would skip validation)."""
    return TrainSettings.model_validate({**TINY.model_dump(), **changes})


def squares(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Grey noisy backgrounds with a dark (class 0) or bright (class 1) square at a random place."""
    rng = np.random.default_rng(seed)
    images = rng.normal(120, 15, size=(count, SIZE, SIZE, 3)).clip(0, 255).astype(np.uint8)
    labels = np.arange(count, dtype=np.int64) % 2
    for i, label in enumerate(labels):
        y, x = rng.integers(0, SIZE - 14, size=2)
        images[i, y : y + 14, x : x + 14] = 230 if label else 15
    return images, labels


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    train_images, train_labels = squares(64, seed=1)
    val_images, val_labels = squares(32, seed=2)
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "val_images": val_images,
        "val_labels": val_labels,
    }


@pytest.fixture(scope="module")
def trained(data: dict[str, np.ndarray]) -> tuple[TrainResult, list[EpochRecord]]:
    """One training run shared by the tests that only read its result (training is the slow part)."""
    seen: list[EpochRecord] = []
    result = train_classifier(
        data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES, TINY, seen.append
    )
    return result, seen


def test_learns_better_than_chance(trained: tuple[TrainResult, list[EpochRecord]]) -> None:
    result, _ = trained
    assert result.history[result.best_epoch - 1].val_accuracy > 0.75
    assert result.train_seconds > 0


def test_on_epoch_is_called_once_per_epoch(trained: tuple[TrainResult, list[EpochRecord]]) -> None:
    result, seen = trained
    assert [r.epoch for r in seen] == [1, 2]
    assert seen == result.history
    assert all(r.seconds > 0 and np.isfinite(r.train_loss) and np.isfinite(r.val_loss) for r in seen)


def test_checkpoint_round_trips_with_identical_predictions(
    trained: tuple[TrainResult, list[EpochRecord]], data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    result, _ = trained
    from_bytes = load_inference_model(result.checkpoint)
    path = tmp_path / "model.pt"
    path.write_bytes(result.checkpoint)
    from_file = load_inference_model(path)
    first = predict_proba(from_bytes, data["val_images"])
    second = predict_proba(from_file, data["val_images"], batch_size=5)
    assert first.shape == (32, 2) and first.dtype == np.float32
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)
    np.testing.assert_allclose(first.sum(axis=1), 1.0, atol=1e-5)
    assert from_bytes.classes == list(CLASSES) and from_bytes.image_size == SIZE
    # The best epoch's weights are what was saved: its validation accuracy is reproduced exactly.
    accuracy = float((first.argmax(1) == data["val_labels"]).mean())
    assert accuracy == pytest.approx(result.history[result.best_epoch - 1].val_accuracy)


def test_inference_module_takes_raw_pixels(
    trained: tuple[TrainResult, list[EpochRecord]], data: dict[str, np.ndarray]
) -> None:
    """The exported module normalises inside: float 0..255 NCHW in, probabilities out."""
    import torch

    result, _ = trained
    model = load_inference_model(result.checkpoint)
    pixels = torch.from_numpy(data["val_images"][:4]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        probabilities = model(pixels)
    np.testing.assert_allclose(probabilities.numpy(), predict_proba(model, data["val_images"][:4]), atol=1e-6)


def test_same_seed_gives_identical_weights(data: dict[str, np.ndarray]) -> None:
    import torch

    settings = tiny(epochs=1)
    args = (data["train_images"][:32], data["train_labels"][:32], data["val_images"][:8], data["val_labels"][:8])
    first = torch.load(io.BytesIO(train_classifier(*args, CLASSES, settings).checkpoint), weights_only=True)
    second = torch.load(io.BytesIO(train_classifier(*args, CLASSES, settings).checkpoint), weights_only=True)
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key


def test_missing_pretrained_file_says_it_must_be_local(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-weights.pth"
    settings = tiny(pretrained_weights=str(missing))
    with pytest.raises(WeightsError, match="--pretrained-weights .*no-such-weights.pth.*local file"):
        train_classifier(
            data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES, settings
        )


def test_corrupt_pretrained_file_is_named(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    corrupt = tmp_path / "weights.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="weights.pth.*could not be read as torch weights"):
        train_classifier(
            data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES,
            tiny(pretrained_weights=str(corrupt)),
        )


def test_weights_of_another_architecture_are_refused(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    import timm
    import torch

    weights = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict(), weights)
    with pytest.raises(WeightsError, match="another architecture: pass the matching --arch"):
        train_classifier(
            data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES,
            tiny(pretrained_weights=str(weights), arch="resnet10t"),
        )


def test_pretrained_weights_load_without_the_head(data: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Weights from a model with another class count load everything but the classifier head, and
    training starts from them (frozen stages keep them exactly)."""
    import timm
    import torch

    source = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    weights = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.state_dict()}, weights)
    # random weights stand in for the file, so training is the from-scratch kind: no weights' average
    settings = tiny(pretrained_weights=str(weights), frozen_stages=1, ema_decay=0.0)
    result = train_classifier(
        data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES, settings
    )
    assert result.init["source"] == "weights_file"
    assert len(result.init["sha256"]) == 64
    state = torch.load(io.BytesIO(result.checkpoint), weights_only=True)["state_dict"]
    stem = next(k for k in state if k.endswith(".weight") and state[k].ndim == 4)
    assert torch.equal(state[stem], source.state_dict()[stem])  # frozen stem: exactly the file's weights
    assert predict_proba(load_inference_model(result.checkpoint), data["val_images"][:2]).shape == (2, 2)


def test_a_model_that_learns_nothing_is_refused(data: dict[str, np.ndarray]) -> None:
    """Labels that do not depend on the images: validation stays at chance and training says so."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(64, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.arange(64) % 2
    with pytest.raises(TrainingDidNotLearn, match="did not learn.*at chance.*Try: check that the labels are right"):
        train_classifier(noise[:48], labels[:48], noise[48:], labels[48:], CLASSES, tiny(epochs=1, learning_rate=1e-5))


def test_did_not_learn_needs_both_chance_accuracy_and_a_stuck_loss() -> None:
    assert did_not_learn(0.52, 0.69, 2)
    assert not did_not_learn(0.70, 0.69, 2)  # accuracy got clear of chance
    assert not did_not_learn(0.52, 0.40, 2)  # the loss moved: it is learning, slowly
    assert did_not_learn(0.18, 1.70, 6) and not did_not_learn(0.40, 1.70, 6)


def test_balanced_sampling_weights() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    sqrt = balanced_sampling_weights(labels, ["good", "crack"], "sqrt")
    inverse = balanced_sampling_weights(labels, ["good", "crack"], "inverse")
    uniform = balanced_sampling_weights(labels, ["good", "crack"], "none")
    for weights in (sqrt, inverse, uniform):
        assert weights.sum() == pytest.approx(1.0)
    share = lambda w: float(w[labels == 1].sum())  # noqa: E731
    assert share(uniform) == pytest.approx(0.10)
    assert share(inverse) == pytest.approx(0.50)
    assert share(sqrt) == pytest.approx(np.sqrt(10) / (np.sqrt(10) + np.sqrt(90)))  # 0.25


def test_frr_at_zero_escapes() -> None:
    # good = class 0; defect score = 1 - P(good)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.7, 0.3], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1, 1])
    # the weakest defect scores 0.3: good images scoring >= 0.3 are rejected (one of three)
    assert frr_at_zero_escapes(probs, labels, 0) == pytest.approx(1 / 3)
    assert frr_at_zero_escapes(probs[:3], labels[:3], 0) is None  # no defects: undefined, not 0


def test_per_epoch_frr_agrees_with_the_reports_threshold_calibration() -> None:
    """The trainer's cheap per-epoch figure is the report's rule (zero escapes, lowest FRR) exactly."""
    from resources.reporting.metrics import calibrate_threshold

    rng = np.random.default_rng(4)
    for _ in range(20):
        labels = rng.integers(0, 3, 60)
        probs = rng.dirichlet(np.ones(3), 60)
        if (labels == 0).all() or (labels != 0).all():
            continue
        expected = calibrate_threshold(1 - probs[:, 0], labels != 0, max_escape_rate=0.0).false_reject_rate
        assert frr_at_zero_escapes(probs, labels, 0) == pytest.approx(expected)


def test_class_without_training_images_is_rejected(data: dict[str, np.ndarray]) -> None:
    only_dark = data["train_labels"] == 0
    with pytest.raises(ValueError, match="no images of class.*bright"):
        train_classifier(
            data["train_images"][only_dark], data["train_labels"][only_dark], data["val_images"], data["val_labels"],
            CLASSES, TINY,
        )


def test_images_at_the_wrong_size_are_rejected(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="settings.image_size=48"):
        train_classifier(
            data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES,
            tiny(image_size=48),
        )


def test_unknown_arch_is_rejected(data: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="not a timm model"):
        train_classifier(
            data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES,
            tiny(arch="resnet_does_not_exist"),
        )


def test_settings_are_frozen_bounded_and_closed() -> None:
    with pytest.raises(ValidationError):
        TrainSettings(epochs=0)
    with pytest.raises(ValidationError):
        TrainSettings(learning_rate=-1.0)
    with pytest.raises(ValidationError):
        TrainSettings(optimiser="sgd")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TINY.epochs = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="not both"):
        TrainSettings(pretrained_weights="a.pth", init_checkpoint="b.pt")
    assert all(field.description for field in TrainSettings.model_fields.values())
    assert TrainSettings().pretrained_weights is None


def test_recipe_defaults_follow_the_start() -> None:
    fine_tune = TrainSettings()
    scratch = TrainSettings(backbone="none")
    assert fine_tune.init_source() == "backbone" and fine_tune.timm_arch() == "mobilenetv2_100"
    assert fine_tune.test_time_flips
    assert (fine_tune.epochs, fine_tune.learning_rate, fine_tune.frozen_stages) == (12, 1e-3, 2)
    assert scratch.init_source() == "scratch" and scratch.timm_arch() == "resnet10t"
    assert (scratch.epochs, scratch.learning_rate, scratch.frozen_stages) == (30, 3e-3, 0)
    assert TrainSettings(epochs=5).epochs == 5  # an explicit value wins


def test_not_a_checkpoint_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_inference_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="could not be read"):
        load_inference_model(b"not a checkpoint")


def test_test_time_flips_average_the_four_views(trained: tuple[TrainResult, list[EpochRecord]], data) -> None:
    """The deployed module (flips on by default) returns the mean of the plain model over the image and
    its horizontal, vertical and double flips: that one graph is what is validated and exported."""
    import torch

    result, _ = trained
    model = load_inference_model(result.checkpoint)
    assert model.flips is True
    pixels = torch.from_numpy(data["val_images"][:3]).permute(0, 3, 1, 2).float()
    model.flips = False
    with torch.inference_mode():
        views = [model(pixels), model(pixels.flip(3)), model(pixels.flip(2)), model(pixels.flip(2).flip(3))]
        model.flips = True
        averaged = model(pixels)
    np.testing.assert_allclose(averaged.numpy(), torch.stack(views).mean(0).numpy(), atol=1e-6)
    assert not np.allclose(views[0].numpy(), averaged.numpy(), atol=1e-4)  # the flips do change the answer


def test_the_weights_average_reaches_back_about_three_epochs_at_most() -> None:
    from resources.classify.trainer import ema_decay_for

    assert ema_decay_for(0.98, 24, 12) == 0.98  # magnetic tile's 24-25 steps an epoch: the benchmarked decay
    assert ema_decay_for(0.98, 33, 12) == 0.98  # NEU
    assert ema_decay_for(0.98, 8, 12) == 1 - 1 / 24  # a small set: 24 steps of memory, not 50
    assert ema_decay_for(0.98, 8, 2) == 1 - 4 / 16  # a short run: a quarter of its 16 steps
    assert ema_decay_for(0.98, 1, 1) == 0.0  # one step: that step's weights
    assert ema_decay_for(0.0, 25, 12) == 0.0  # off stays off


def test_the_weights_average_is_a_fine_tuning_default() -> None:
    assert TrainSettings().ema_decay == 0.98  # a bundled backbone: measured (BENCHMARKS.md)
    assert TrainSettings(backbone="none").ema_decay == 0.0  # from scratch: not measured, off
    assert TrainSettings(backbone="none", ema_decay=0.9).ema_decay == 0.9


def test_training_with_the_weights_average_learns(data: dict[str, np.ndarray]) -> None:
    result = train_classifier(
        data["train_images"], data["train_labels"], data["val_images"], data["val_labels"], CLASSES, tiny(ema_decay=0.98)
    )
    assert result.learned and max(r.val_accuracy for r in result.history) > 1.5 / len(CLASSES)
