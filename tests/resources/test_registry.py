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


def _register_one(args: tuple[str, int]) -> str:
    home, n = args
    from resources.registry import ModelRegistry

    version = ModelRegistry(home=home).register(
        line="line1", variant="a", task="classify", checkpoint_sha256=f"{n:064x}", dataset_version="dataset:x",
        metrics={}, parameters={}, artifacts={}, code_version="test",
    )
    return version.version


def test_concurrent_registrations_get_distinct_consecutive_numbers(tmp_path) -> None:
    """Processes registering at once (two onboard runs, a retrain and a sensor) never share a number."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Not multiprocessing.Pool: its __exit__ terminates the workers with SIGTERM, and a worker that
    # imported dagster (which handles SIGTERM in Python) while blocked on the task queue never ran the
    # handler: the test hung for good once in a fresh-clone run. The executor ends its workers in order.
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        versions = list(pool.map(_register_one, [(str(tmp_path), n) for n in range(8)]))
    assert sorted(versions, key=lambda v: int(v.rsplit("v", 1)[1])) == [f"line1-a-v{i}" for i in range(1, 9)]
