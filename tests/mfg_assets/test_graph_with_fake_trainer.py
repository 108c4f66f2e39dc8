"""The downstream assets run behind the abstract ``Trainer`` resource: a small fake trainer in, a
validated, exported, registered model out, with no training at all.

This is what a new task's trainer plugs into, and it keeps the graph's plumbing under test at the
cost of an export instead of a training run.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mfg_assets.definitions import defs
from mfg_assets.jobs import CLASSIFY_ASSETS
from mfg_assets.onboard import OnboardRequest, _run_config, land_batch
from mfg_assets.partitions import line_variant_partitions
from resources.models.train_settings import EpochRecord, TrainResult, TrainSettings
from resources.data.variants import VariantSpec, partition_key, save_variant
from resources.classify.engine import ClassifyEngine
from resources.engines import Engines
from resources.registry import ModelRegistry
from resources.tasks import TaskEngine
from resources.trainers import Trainer


class FakeTrainer(Trainer):
    """Builds the recipe's architecture with untrained weights and reports one made-up epoch."""

    def train(
        self,
        train_images: np.ndarray,
        train_labels: np.ndarray,
        val_images: np.ndarray,
        val_labels: np.ndarray,
        classes: Sequence[str],
        settings: TrainSettings,
        on_epoch: Callable[[EpochRecord], None] | None = None,
        good_class: str | None = None,
        require_learning: bool = True,
    ) -> TrainResult:
        import timm
        import torch

        from resources.models.model_init import checkpoint_bytes

        torch.manual_seed(settings.seed)
        model = timm.create_model(settings.timm_arch(), pretrained=False, num_classes=len(classes))
        record = EpochRecord(
            epoch=1, train_loss=1.0, val_loss=1.0, val_accuracy=0.5, val_balanced_accuracy=0.5,
            val_false_reject_rate=None if good_class is None else 0.5, learning_rate=settings.learning_rate, seconds=0.01,
        )
        if on_epoch is not None:
            on_epoch(record)
        init = {"source": "scratch", "fake": True}
        checkpoint = checkpoint_bytes({
            "state_dict": model.state_dict(), "arch": settings.timm_arch(), "classes": list(classes),
            "image_size": settings.image_size, "resize": settings.resize, "mean": (0.5, 0.5, 0.5),
            "std": (0.25, 0.25, 0.25), "settings": settings.model_dump(mode="json"), "init": init,
        })
        return TrainResult(checkpoint=checkpoint, history=[record], best_epoch=1, train_seconds=0.01, init=init)

    def predict(self, checkpoint: bytes, images: np.ndarray) -> np.ndarray:
        from resources.classify.model import load_inference_model, predict_proba

        return predict_proba(load_inference_model(checkpoint), images)


class FakeTrainerEngines(Engines):
    """The ``engines`` resource with the classification engine's trainer replaced by :class:`FakeTrainer`."""

    def engine(self, task: str) -> TaskEngine:
        engine = super().engine(task)
        return ClassifyEngine(trainer=FakeTrainer()) if isinstance(engine, ClassifyEngine) else engine


def land_tiny_variant(mfg_home: Path, tiny_line: Path) -> str:
    """Register line1/bracket-a with the tiny line's classes (good class ``good``), land the tiny line as
    its batch, and return its partition key."""
    spec = VariantSpec(line="line1", variant="bracket-a", classes=("dent", "good", "missing_hole", "scratch", "stain"), good_class="good")
    save_variant(spec, mfg_home)
    land_batch(tiny_line, mfg_home / "landing" / "line1" / "bracket-a")
    return partition_key("line1", "bracket-a")


def run_with_fake_trainer(instance: dg.DagsterInstance, key: str, tiny_line: Path) -> dg.ExecuteInProcessResult:
    """Materialise the classification assets of partition ``key`` with the fake trainer bound, on the
    onboard options of a 32 px resnet10t, one epoch, no release limits."""
    request = OnboardRequest(
        data_dir=tiny_line, line="line1", variant="bracket-a", good_class="good", image_size=32, epochs=1,
        backbone="none", arch="resnet10t", min_accuracy=0.0, max_test_escape_rate=1.0, augment_copies=0, seed=7,
    )
    instance.add_dynamic_partitions(line_variant_partitions.name, [key])
    assets = [a for a in defs.assets if a.key.to_user_string() in CLASSIFY_ASSETS]
    resources = {**defs.resources, "engines": FakeTrainerEngines()}
    return dg.materialize(assets, resources=resources, instance=instance, partition_key=key, run_config=dg.RunConfig(ops=_run_config(request).ops))  # Dagster's console logger: an ephemeral job has no progress line


def test_the_graph_validates_exports_and_registers_whatever_trainer_is_bound(mfg_home: Path, tiny_line: Path) -> None:
    key = land_tiny_variant(mfg_home, tiny_line)
    with dg.instance_for_test() as instance:
        result = run_with_fake_trainer(instance, key, tiny_line)

    assert result.success
    version = ModelRegistry().get("line1-bracket-a-v1")
    assert version.task == "classify"
    trained = result.output_for_node("trained_model")
    assert trained.init == {"source": "scratch", "fake": True} and trained.arch == "resnet10t"
    # One owner for the seed: the split's seed (mfgv onboard --seed) reaches every seeded step.
    assert result.output_for_node("augmented_set").seed == 7 and trained.settings["seed"] == 7
    exported = result.output_for_node("exported_model")
    assert exported.parity_passed and set(exported.files) == {"onnx", "openvino", "onnx_int8"}
    from resources.artifact_store import ArtifactStore

    manifest = json.loads((ArtifactStore().path(exported.package) / "manifest.json").read_text())
    assert manifest["files"] == exported.files and "selftest.npz" in manifest["sha256"]
    assert manifest["sha256"] == exported.file_sha256 and manifest["model_id"] == trained.id
    # Whether INT8 met its tolerance travels with the package and the registry (deploy refuses it otherwise)
    assert manifest["int8"]["within_tolerance"] == exported.int8["within_tolerance"]
    assert version.metrics["int8_within_tolerance"] == exported.int8["within_tolerance"]
    # ... and what INT8 costs on test against the validated model, with the limit deploy holds it to
    fp32_accuracy = result.output_for_node("validation_report").accuracy
    assert exported.int8["test_accuracy_drop"] == pytest.approx(fp32_accuracy - exported.int8_test_accuracy, abs=1e-6)
    assert exported.int8["max_test_accuracy_drop"] == 0.005
    # The report names the defective validation images that set the threshold, by their landed path
    report = json.loads(ArtifactStore().read_bytes(result.output_for_node("validation_report").json_artifact))
    set_by = report["threshold_set_by"]
    assert len(set_by) == 3 and all(row["true"] != "good" and "/" in row["rel_path"] for row in set_by)
    assert [row["score"] for row in set_by] == sorted(row["score"] for row in set_by)
    if report["threshold"]["max_escape_rate"] == 0:
        assert set_by[0]["false_reject_rate_to_catch"] == report["threshold"]["false_reject_rate"]


class _Upstream(dg.IOManager):
    """Hands the deployment asset the given upstream handles (no storage) and keeps what it returns."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values

    def load_input(self, context: dg.InputContext) -> object:
        return self.values[context.asset_key.to_user_string()]

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        self.values[context.asset_key.to_user_string()] = obj


def test_deploy_refuses_an_unasked_int8_shortfall_an_unpaired_report_and_a_promotion_of_what_no_canary_ran(
    mfg_home: Path, tiny_line: Path
) -> None:
    from mfg_assets.deployment import deployment
    from resources.lineage import LineageStore

    key = land_tiny_variant(mfg_home, tiny_line)
    with dg.instance_for_test() as instance:
        built = run_with_fake_trainer(instance, key, tiny_line)
        assert built.success
        exported = built.output_for_node("exported_model")
        # As the export records it when no INT8 try met the tolerance (the closest is kept)
        short = exported.model_copy(update={"int8": {
            **exported.int8, "within_tolerance": False, "holdout_disagreement": 0.04, "max_disagreement": 0.005,
        }})
        upstream = {name: built.output_for_node(name) for name in ("registered_model", "validation_report", "dataset_version")}

        def deploy(
            registered: object = None, report: object = None, dataset: object = None, exported: object = None,
            **config: object,
        ) -> dg.ExecuteInProcessResult:
            handles = {
                **upstream, "exported_model": exported or short,
                "registered_model": registered or upstream["registered_model"],
                "validation_report": report or upstream["validation_report"],
                "dataset_version": dataset or upstream["dataset_version"],
            }
            return dg.materialize(
                list(defs.assets), selection=[deployment.key],
                resources={**defs.resources, "io_manager": _Upstream(handles)},
                instance=instance, partition_key=key, raise_on_error=False,
                run_config={"ops": {"deployment": {"config": {"model_format": "onnx_int8", **config}}}},
            )

        def failure(result: dg.ExecuteInProcessResult) -> str:
            assert not result.success
            return result.get_step_failure_events()[0].step_failure_data.error.message

        refused = failure(deploy(ring="canary", canary_devices=["dev1"]))
        assert "decides differently from FP32 on 4.00 %" in refused and "--accept-int8-shortfall" in refused
        # an INT8 model that met the search's tolerance but loses test accuracy beyond the limit is refused too
        lossy = exported.model_copy(update={"int8": {**exported.int8, "test_accuracy_drop": 0.03}})
        refused = failure(deploy(ring="canary", canary_devices=["dev1"], exported=lossy))
        assert "loses 3.00 pt of test accuracy against FP32, more than the export's 0.50 pt" in refused
        canary_run = deploy(ring="canary", canary_devices=["dev1"], accept_int8_shortfall=True)
        assert canary_run.success, failure(canary_run)
        canary = canary_run.output_for_node("deployment").deployment_id
        # A later run refused by its release check leaves a newer report beside the registered model: the
        # model goes out with the report it was registered with (kept by id), never with the newer one
        refused_later = upstream["validation_report"].model_copy(update={"id": "report:a-later-run", "threshold": 0.999})
        relabelled = upstream["dataset_version"].model_copy(update={"id": "dataset:a-later-run", "good_class": "dent"})
        paired = deploy(
            report=refused_later, dataset=relabelled, ring="canary", canary_devices=["dev1"], accept_int8_shortfall=True
        )
        assert paired.success, failure(paired)
        from edge_sync.contract import DeploymentManifest
        from resources.edge import EdgeSync

        live = EdgeSync().server_state().deployments("line1")["canary"]
        published = DeploymentManifest.model_validate_json(live.manifest_json)
        assert published.threshold == upstream["validation_report"].threshold != 0.999
        assert (published.dataset_version, published.good_class) == (upstream["dataset_version"].id, "good")
        canary = paired.output_for_node("deployment").deployment_id
        # ... and a registered model whose report was never kept (made before handles were) is refused
        older = upstream["registered_model"].model_copy(update={"report_id": "report:an-older-run"})
        unpaired = failure(deploy(registered=older, ring="fleet", accept_int8_shortfall=True))
        assert "registered with report:an-older-run, which line1.bracket-a no longer has" in unpaired
        assert "mfgv rollback" in unpaired
        # Promotion publishes only what the live canary ran: not a model registered since, not a gone canary
        version = upstream["registered_model"].version
        newer = upstream["registered_model"].model_copy(update={"version": f"{version}9"})
        stale = failure(deploy(registered=newer, ring="fleet", accept_int8_shortfall=True, promote_canary=canary))
        assert f"canary {canary} ran {version} but the variant's registered model is now {version}9" in stale
        gone = failure(deploy(ring="fleet", accept_int8_shortfall=True, promote_canary="line1-a-v1-canary-20261201T000000"))
        assert f"is no longer live on its line (it now has canary {canary})" in gone
        promoted = deploy(ring="fleet", accept_int8_shortfall=True, promote_canary=canary)
        assert promoted.success, failure(promoted)
        record = promoted.output_for_node("deployment")
        assert (record.model_version, record.ring, record.model_format) == (version, "fleet", "onnx_int8")

    rows = LineageStore().read_table("lineage", "output_id = ?", [f"deployment:{record.deployment_id}"])
    assert json.loads(rows["parameters"].iloc[0])["int8_shortfall_accepted"] is True  # the decision, in the audit trail
    # ... and in the deployments table, which a canary's promotion to the fleet carries it from
    [row] = LineageStore().read_table("deployments", "deployment_id = ?", [canary]).to_dict("records")
    assert row["int8_shortfall_accepted"]
