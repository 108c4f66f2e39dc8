"""The task seam: which tasks exist, which have an engine, and how a missing one is refused."""

import numpy as np
import pytest
from pydantic import ValidationError

from edge_sync.contract import Task
from resources.data.variants import VariantSpec
from resources.errors import MfgVisionError
from resources.anomaly.engine import AnomalyEngine
from resources.classify.engine import ClassifyEngine
from resources.tasks import UnsupportedTask, engine_for, supported_tasks


def test_classification_is_the_first_tenant() -> None:
    engine = engine_for("classify")
    assert isinstance(engine, ClassifyEngine) and engine.task is Task.CLASSIFY
    assert supported_tasks() == ("classify", "anomaly", "detect")
    assert engine.train_labels("good") is None and engine.default_input_size is None
    metrics = engine.metrics(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), ["good", "scratch"])
    assert set(engine.headline_keys) <= set(metrics) and metrics["accuracy"] == 1.0
    assert engine.stratify_key("scratch") == "scratch"
    assert engine.variant_problems(["good"], "good") and not engine.variant_problems(["good", "dent"], "good")


def test_anomaly_engine_trains_on_good_parts_and_scores_images() -> None:
    engine = engine_for("anomaly")
    assert isinstance(engine, AnomalyEngine) and engine.task is Task.ANOMALY
    assert engine.train_labels("good") == frozenset({"good"})
    assert engine.variant_problems(["good"], "good") == []  # good parts only: the threshold's good-only rule
    assert "--good-class" in engine.variant_problems(["good", "crack"], None)[0]
    metrics = engine.metrics(np.array([0, 0, 1, 2]), np.array([0.1, 0.2, 0.9, 0.15]), ["good", "crack", "dent"], "good")
    assert metrics["image_auroc"] == pytest.approx(0.75)
    assert metrics["per_type"]["crack"]["image_auroc"] == 1.0 and metrics["per_type"]["dent"]["image_auroc"] == 0.5
    assert (metrics["n_good"], metrics["n_defect"]) == (2, 2)


def test_a_planned_task_and_an_unknown_one_are_refused_with_why() -> None:
    with pytest.raises(UnsupportedTask, match="'segment' has no engine in this release .*supported now: classify, anomaly, detect"):
        engine_for("segment")
    with pytest.raises(UnsupportedTask, match="'count' is unknown; the platform's tasks are classify, anomaly"):
        engine_for("count")
    assert issubclass(UnsupportedTask, MfgVisionError)


def test_a_variant_of_a_task_without_engine_cannot_be_registered() -> None:
    with pytest.raises(ValidationError, match="has no engine in this release"):
        VariantSpec(line="line1", variant="a", task="segment", classes=("good", "dent"))
    with pytest.raises(ValidationError, match="a classifier needs at least two"):
        VariantSpec(line="line1", variant="a", task="classify", classes=("good",))
    assert VariantSpec(line="line1", variant="a", classes=("good", "dent")).task == "classify"
