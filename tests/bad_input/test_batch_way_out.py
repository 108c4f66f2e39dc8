"""Bad-input corpus, a way out of every refusal: a batch that fails a blocking check is replaced or
withdrawn, and a taxonomy grows, so one bad batch (or one bad device label) never blocks a variant.

Runs the real ``raw_images`` and ``annotations`` assets through Dagster and the real ``mfgv``
commands (in process), on small hand-made batches.
"""

import shutil
from pathlib import Path

import dagster as dg
import pytest

from mfg_assets.annotations import annotations
from mfg_assets.cli import main
from mfg_assets.ingest import raw_images
from resources.data.variants import VariantSpec, load_variant, save_variant, variant_history
from resources.lineage import LineageStore
from tests.mfg_assets.test_ingest_and_annotations import _batch, _good_image, _materialize

WHERE = ["--line", "line1", "--variant", "a"]


@pytest.fixture
def variant(mfg_home: Path) -> VariantSpec:
    spec = VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good")
    save_variant(spec, mfg_home)
    return spec


def _ready(batch: Path) -> Path:
    (batch / "_READY").write_text("")
    return batch


def _with_csv(batch: Path, rows: list[str]) -> Path:
    lines = ["path,label"] + [f"{p.relative_to(batch).as_posix()},{p.parent.name}" for p in sorted(batch.rglob("*.png"))]
    (batch / "labels.csv").write_text("\n".join(lines + rows) + "\n")
    return batch


def _failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.description
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    }


def test_a_batch_failing_a_check_is_replaced_and_the_variant_goes_on(
    mfg_home: Path, variant: VariantSpec, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _ready(_batch(mfg_home, "b1"))
    bad = _ready(_with_csv(_batch(mfg_home, "b2", seed=1), ["good/missing.png,good"]))
    with dg.instance_for_test() as instance:
        first = _materialize(instance, [raw_images, annotations])
        failed = _failed_checks(first)
        assert "every_image_labelled" in failed
        # the refusal names the batch and a command that works
        assert "b2" in failed["every_image_labelled"]
        assert "mfgv batch replace --line line1 --variant a --batch b2 --from FIXED_DIR" in failed["every_image_labelled"]

        fixed = tmp_path / "b2-fixed"  # the same images, the orphan row taken out of labels.csv
        shutil.copytree(bad, fixed, ignore=shutil.ignore_patterns("_READY", "labels.csv"))
        _with_csv(fixed, [])
        assert main(["batch", "replace", *WHERE, "--batch", "b2", "--from", str(fixed), "--reason", "orphan row"]) == 0
        assert "withdrew b2" in capsys.readouterr().out

        again = _materialize(instance, [raw_images, annotations])
        assert again.success, _failed_checks(again)
        assert _failed_checks(again) == {}
        handle = again.output_for_node("raw_images")
        assert "b2" not in handle.batches and "b1" in handle.batches and len(handle.batches) == 2

    # nothing was deleted: the withdrawn batch's rows and files are still there, and the event says why
    lineage = LineageStore()
    assert (lineage.read_table("images")["batch"] == "b2").sum() == 12 and bad.exists()
    assert main(["batch", "list", *WHERE]) == 0
    listing = capsys.readouterr().out
    assert "replaced" in listing and "orphan row" in listing and "current" in listing
    assert lineage.read_table("lineage", "asset = ?", ["batch_withdrawal"])["output_id"].tolist() == ["withdrawal:line1.a/b2"]


def test_a_withdrawn_batch_is_refused_twice_and_unknown_batches_are_named(
    mfg_home: Path, variant: VariantSpec, capsys: pytest.CaptureFixture
) -> None:
    _ready(_batch(mfg_home, "b1"))
    _ready(_batch(mfg_home, "b2", seed=1))
    with dg.instance_for_test() as instance:
        assert _materialize(instance, [raw_images]).success
    assert main(["batch", "withdraw", *WHERE, "--batch", "b2", "--reason", "wrong product"]) == 0
    assert main(["batch", "withdraw", *WHERE, "--batch", "b2", "--reason", "again"]) == 2
    assert "withdrawn already" in capsys.readouterr().err
    assert main(["batch", "withdraw", *WHERE, "--batch", "b9"]) == 2
    assert "no ingested batch 'b9'; its batches are: b1, b2" in capsys.readouterr().err
    assert main(["batch", "withdraw", *WHERE, "--batch", "b1", "--reason", "old"]) == 0
    with dg.instance_for_test() as instance:
        result = _materialize(instance, [raw_images])
    assert not result.success
    assert any("every ingested batch is withdrawn" in str(e.event_specific_data) for e in result.all_events if e.is_failure)


def test_an_unknown_class_is_added_to_the_taxonomy_and_the_check_passes(
    mfg_home: Path, variant: VariantSpec, capsys: pytest.CaptureFixture
) -> None:
    batch = _batch(mfg_home, "b1")
    for i in range(6):
        _good_image(batch / "dent" / f"d{i}.png", 900 + i)
    _ready(batch)
    with dg.instance_for_test() as instance:
        first = _materialize(instance, [raw_images, annotations])
        failed = _failed_checks(first)
        assert "mfgv variant add-class --line line1 --variant a --class dent" in failed["labels_in_taxonomy"]
        assert main(["variant", "add-class", *WHERE, "--class", "dent"]) == 0
        assert "taxonomy version 2: good, bad, dent" in capsys.readouterr().out
        again = _materialize(instance, [raw_images, annotations])
        assert again.success and _failed_checks(again) == {}
    grown = load_variant("line1", "a", mfg_home)
    assert grown.classes == ("good", "bad", "dent") and grown.version == 2
    assert [v["version"] for v in variant_history("line1", "a", mfg_home)] == [1, 2]
    assert main(["variant", "add-class", *WHERE, "--class", "dent"]) == 2
    assert "already has class 'dent'" in capsys.readouterr().err
    assert main(["variant", "add-class", *WHERE, "--class", "../x"]) == 2


def test_abbreviated_options_are_refused(mfg_home: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["onboard", "data", "--line", "l", "--variant", "v", "--epoch", "3"])
    assert exit_info.value.code == 2 and "--epoch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["batch", "list", "--lin", "l", "--variant", "v"])
