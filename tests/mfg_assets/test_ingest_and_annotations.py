"""raw_images and annotations through Dagster on small, hand-made batches, bad input included."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mfg_assets.annotations import annotations
from mfg_assets.ingest import raw_images
from resources.artifact_store import ArtifactStore
from resources.landing import LandingZone
from resources.lineage import LineageStore
from resources.data.variants import VariantSpec, save_variant
from tests.bad_images import TOO_LARGE_MAX_PIXELS, write_bad_images

PARTITION = "line1.a"


def _good_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 20), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _batch(home: Path, name: str, per_class: int = 6, seed: int = 0) -> Path:
    batch = home / "landing" / "line1" / "a" / name
    for i in range(per_class):
        _good_image(batch / "good" / f"g{i}.png", seed * 1000 + i)
        _good_image(batch / "bad" / f"b{i}.png", seed * 1000 + 500 + i)
    return batch


def _resources() -> dict:
    return {"landing": LandingZone(), "artifact_store": ArtifactStore(), "lineage": LineageStore()}


def _materialize(instance: dg.DagsterInstance, assets: list, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    if PARTITION not in instance.get_dynamic_partitions("line_variant"):
        instance.add_dynamic_partitions("line_variant", [PARTITION])
    return dg.materialize(
        assets,
        partition_key=PARTITION,
        instance=instance,
        resources=_resources(),
        run_config=run_config or {},
        raise_on_error=False,
    )


@pytest.fixture
def variant(mfg_home: Path) -> VariantSpec:
    spec = VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good")
    save_variant(spec, mfg_home)
    return spec


def test_bad_files_are_quarantined_with_reasons_and_good_ones_go_on(mfg_home: Path, variant: VariantSpec) -> None:
    batch = _batch(mfg_home, "b1")
    expected = write_bad_images(batch / "bad")
    (batch / "_READY").write_text("")
    config = {"ops": {"raw_images": {"config": {"max_pixels": TOO_LARGE_MAX_PIXELS}}}}
    with dg.instance_for_test() as instance:
        result = _materialize(instance, [raw_images], config)
        assert result.success
        handle = result.output_for_node("raw_images")
        assert handle.n_images == 12
        quarantine = LineageStore().read_table("quarantine")
        reasons = dict(zip(quarantine["rel_path"], quarantine["reason"], strict=True))
        assert reasons == {f"bad/{name}": reason for name, reason in expected.items()}
        for row in quarantine.itertuples():
            assert row.rel_path.split("/")[-1] in row.detail  # the message names the file
            assert Path(row.quarantined_to).exists()
        assert handle.n_quarantined == len(expected)

        # A second batch extends the variant's data; the first one's rows are kept.
        _batch(mfg_home, "b2", per_class=2, seed=1)
        (mfg_home / "landing" / "line1" / "a" / "b2" / "_READY").write_text("")
        again = _materialize(instance, [raw_images], config)
        assert again.success
        images = LineageStore().read_table("images", "partition = ?", [PARTITION])
        assert sorted(set(images["batch"])) == ["b1", "b2"]
        assert again.output_for_node("raw_images").n_images == 16


def test_a_batch_without_any_usable_image_fails_clearly(mfg_home: Path, variant: VariantSpec) -> None:
    batch = mfg_home / "landing" / "line1" / "a" / "b1"
    write_bad_images(batch / "good")
    (batch / "_READY").write_text("")
    config = {"ops": {"raw_images": {"config": {"max_pixels": TOO_LARGE_MAX_PIXELS}}}}
    with dg.instance_for_test() as instance:
        result = _materialize(instance, [raw_images], config)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        assert "no usable image" in failure.step_failure_data.error.message


def test_label_problems_fail_the_blocking_checks_and_name_the_files(mfg_home: Path, variant: VariantSpec) -> None:
    batch = _batch(mfg_home, "b1")
    rows = ["path,label,reviewer"]
    for i in range(6):
        rows.append(f"good/g{i}.png,good,alice")
        rows.append(f"good/g{i}.png,{'good' if i < 3 else 'bad'},bob")
        rows.append(f"bad/b{i}.png,bad,alice")
    rows.append("bad/b0.png,scrach,bob")  # unknown class
    rows.append("good/missing.png,good,alice")  # a label for an image that does not exist
    (batch / "labels.csv").write_text("\n".join(rows) + "\n")
    (batch / "_READY").write_text("")
    with dg.instance_for_test() as instance:
        config = {"ops": {"annotations": {"config": {"min_images_per_class": 2}}}}
        result = _materialize(instance, [raw_images, annotations], config)
        assert not result.success  # blocking checks failed
        evaluations = {
            e.event_specific_data.check_name: e.event_specific_data
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        }
        assert not evaluations["labels_in_taxonomy"].passed
        assert "scrach" in evaluations["labels_in_taxonomy"].description
        assert not evaluations["every_image_labelled"].passed
        assert "good/missing.png" in evaluations["every_image_labelled"].description
        assert not evaluations["reviewer_agreement"].passed
        assert evaluations["min_images_per_class"].passed
