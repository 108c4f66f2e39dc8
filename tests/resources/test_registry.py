from pathlib import Path

import pytest

from resources.registry import ModelRegistry, ModelStatus, UnknownModelVersion


def _register(registry: ModelRegistry, checkpoint: str, variant: str = "a"):
    return registry.register(
        line="line1",
        variant=variant,
        task="classify",
        checkpoint_sha256=checkpoint,
        dataset_version="dataset:x",
        metrics={"test_accuracy": 0.99},
        parameters={"epochs": 1},
        artifacts={"checkpoint": "checkpoints/aa/x.pt"},
        code_version="abc",
    )


def test_versions_are_numbered_per_variant_and_idempotent_per_checkpoint(tmp_path: Path) -> None:
    registry = ModelRegistry(home=str(tmp_path))
    first = _register(registry, "c1")
    assert first.version == "line1-a-v1"
    assert first.status is ModelStatus.CANDIDATE
    assert _register(registry, "c1").version == "line1-a-v1"
    assert _register(registry, "c2").version == "line1-a-v2"
    assert _register(registry, "c3", variant="b").version == "line1-b-v1"
    assert [v.version for v in registry.list_versions("line1", "a")] == ["line1-a-v1", "line1-a-v2"]
    assert registry.get("line1-a-v2").metrics == {"test_accuracy": 0.99}


def test_unknown_version_names_the_latest(tmp_path: Path) -> None:
    registry = ModelRegistry(home=str(tmp_path))
    _register(registry, "c1")
    with pytest.raises(UnknownModelVersion, match="line1-a-v1"):
        registry.get("line1-a-v9")
