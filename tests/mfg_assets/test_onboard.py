"""Onboarding refuses datasets it cannot train on, before any run, and says what to do."""

import hashlib
import shutil
from pathlib import Path

import pytest

from mfg_assets.cli import main
from mfg_assets.onboard import OnboardError, OnboardRequest, discover_classes, onboard


def _request(data_dir: Path, **overrides) -> OnboardRequest:
    return OnboardRequest(data_dir=data_dir, line="line1", variant="a", **overrides)


def test_one_class_dataset_is_refused(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    data = tmp_path / "one"
    shutil.copytree(tiny_line / "good", data / "good")
    with pytest.raises(OnboardError, match="at least two classes"):
        onboard(_request(data))


def test_empty_class_folder_is_named(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    data = tmp_path / "empty"
    shutil.copytree(tiny_line, data)
    (data / "crack").mkdir()
    with pytest.raises(OnboardError, match=r"crack/ hold no images"):
        onboard(_request(data))


def test_unknown_good_class_lists_the_classes(mfg_home: Path, tiny_line: Path) -> None:
    with pytest.raises(OnboardError, match="choose one of dent, good, missing_hole, scratch, stain"):
        onboard(_request(tiny_line, good_class="ok"))


def test_missing_folder_and_bad_names_exit_2_with_a_message(mfg_home: Path, tmp_path: Path, capsys) -> None:
    assert main(["onboard", str(tmp_path / "nope"), "--line", "l1", "--variant", "a"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["onboard", str(tmp_path), "--line", "line 1", "--variant", "a"]) == 2
    assert "line name 'line 1' is not valid" in capsys.readouterr().err


def test_classes_come_from_a_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,label\na.png,ok\nb.png,nok\n")
    assert discover_classes(tmp_path, "csv") == ("nok", "ok")


# ---- options refused before anything is landed or registered -------------------------------------


def _nothing_landed_or_registered(home: Path) -> None:
    from resources.registry import ModelRegistry

    assert not (home / "landing").exists() or not any((home / "landing").rglob("_READY"))
    assert not (home / "variants").exists() or not any((home / "variants").iterdir())
    assert ModelRegistry().list_versions() == []


def test_unknown_backbone_is_refused_with_the_choices(mfg_home: Path, tiny_line: Path) -> None:
    with pytest.raises(OnboardError, match="backbone 'resnet50_in1k' is not in the catalogue; choose one of efficientnet_lite0"):
        onboard(_request(tiny_line, backbone="resnet50_in1k"))
    _nothing_landed_or_registered(mfg_home)


def test_missing_corrupt_and_foreign_weights_files_are_refused(mfg_home: Path, tiny_line: Path, tmp_path: Path) -> None:
    import timm
    import torch

    with pytest.raises(OnboardError, match=r"--pretrained-weights .*nope.pth' does not exist.*nothing is downloaded"):
        onboard(_request(tiny_line, pretrained_weights=str(tmp_path / "nope.pth")))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(OnboardError, match="corrupt.pth' could not be read as torch weights"):
        onboard(_request(tiny_line, pretrained_weights=str(corrupt)))
    foreign = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), foreign)
    with pytest.raises(OnboardError, match="another architecture: pass the matching --arch"):
        onboard(_request(tiny_line, pretrained_weights=str(foreign), arch="mobilenetv2_100"))
    _nothing_landed_or_registered(mfg_home)


def test_init_from_a_version_that_does_not_exist_is_refused(mfg_home: Path, tiny_line: Path) -> None:
    with pytest.raises(OnboardError, match="--init-from line9-x-v3: no such registered model version.*mfgv models"):
        onboard(_request(tiny_line, init_from="line9-x-v3"))
    _nothing_landed_or_registered(mfg_home)


def test_more_folds_than_a_class_can_fill_is_refused(mfg_home: Path, tiny_line: Path) -> None:
    # 12 images a class: about 9 in train + val, too few for 10 folds
    with pytest.raises(OnboardError, match=r"--cv-folds 10: too few images.*use --cv-folds 9 or fewer"):
        onboard(_request(tiny_line, cv_folds=10))
    _nothing_landed_or_registered(mfg_home)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--hpo-minutes", "0"], "--hpo-minutes: 0 is out of range: must be more than 0"),
        (["--hpo-trials", "0"], "--hpo-trials: 0 is out of range: must be at least 1"),
        (["--cv-folds", "1"], "--cv-folds: 1 is out of range: must be at least 2"),
        (["--epochs", "0"], "--epochs: 0 is out of range"),
        (["--image-size", "8"], "--image-size: 8 is out of range"),
        (["--epoch", "3"], "unrecognized arguments: --epoch"),
        (["--escape-budget", "0.7"], "--escape-budget: 0.7 is out of range: must be at least 0 and at most 0.5"),
    ],
)
def test_bad_numbers_and_abbreviations_exit_2_before_any_work(
    mfg_home: Path, tiny_line: Path, capsys, flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["onboard", str(tiny_line), "--line", "l1", "--variant", "a", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    _nothing_landed_or_registered(mfg_home)


def _register(checkpoint: dict, task: str = "classify") -> str:
    """Register a checkpoint file as a model version, as registered_model would."""
    import io

    import torch

    from resources.artifact_store import ArtifactStore
    from resources.registry import ModelRegistry

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    artifact = ArtifactStore().put_bytes(buffer.getvalue(), kind="checkpoints", suffix=".pt")
    return ModelRegistry().register(
        line="line0", variant="other", task=task, checkpoint_sha256=artifact.sha256, dataset_version="dataset:x",
        metrics={}, parameters={}, artifacts={"checkpoint": artifact.relpath}, code_version="test",
    ).version


def test_init_from_a_model_with_other_input_channels_or_task_is_refused(mfg_home: Path, tiny_line: Path) -> None:
    import timm

    grey = timm.create_model("resnet10t", pretrained=False, num_classes=2, in_chans=1)
    version = _register({"state_dict": grey.state_dict(), "arch": "resnet10t", "classes": ["a", "b"],
                         "mean": [0.0], "std": [1.0], "image_size": 64, "settings": {}})
    with pytest.raises(OnboardError, match=f"--init-from {version}: the model takes 1-channel input.*take 3"):
        onboard(_request(tiny_line, init_from=version))
    with pytest.raises(OnboardError, match="--pretrained-weights and --init-from both given"):
        onboard(_request(tiny_line, init_from=version, pretrained_weights="w.pth"))


def test_run_summaries_name_the_cause_not_dagsters_wrapper() -> None:
    from types import SimpleNamespace

    from mfg_assets.run_outcome import root_cause as _root_cause

    def error(cls_name: str, message: str, cause=None):
        return SimpleNamespace(cls_name=cls_name, message=message, cause=cause)

    raw = error("ValueError", "ValueError: shapes (3,) and (4,) differ\n")
    wrapped = error("DagsterExecutionStepExecutionError", 'Error occurred while executing op "x":', raw)
    assert _root_cause(wrapped) == "ValueError: shapes (3,) and (4,) differ"
    friendly = error("Failure", "--init-from v9: no such registered model version; see `mfgv models`", raw)
    assert _root_cause(error("DagsterExecutionStepExecutionError", "Error occurred", friendly)).startswith("--init-from v9")
    # as Dagster really serialises them: the class's module path first, which a user cannot act on
    dagster_failure = error("Failure", "dagster._core.definitions.events.Failure: training did not learn: ...", raw)
    assert _root_cause(error("DagsterExecutionStepExecutionError", "Error", dagster_failure)) == "training did not learn: ..."
    inner = error("TrainingDidNotLearn", "resources.classify.trainer.TrainingDidNotLearn: balanced accuracy 0.267\n")
    assert _root_cause(error("DagsterExecutionStepExecutionError", "Error", inner)) == "TrainingDidNotLearn: balanced accuracy 0.267"


def test_escape_budget_sets_the_calibration_target_and_is_typed(tmp_path: Path) -> None:
    from mfg_assets.onboard import OnboardRequest, _run_config
    from mfg_assets.validation import ValidationConfig

    ops = _run_config(OnboardRequest(data_dir=tmp_path, line="l1", variant="a", escape_budget=0.02)).ops
    assert isinstance(ops["validation_report"], ValidationConfig) and ops["validation_report"].max_escape_rate == 0.02
    plain = _run_config(OnboardRequest(data_dir=tmp_path, line="l1", variant="a"))
    assert plain.ops["validation_report"].model_dump(exclude_unset=True) == {}


def test_onboard_configures_every_asset_it_has_options_for_and_saves_only_what_it_set(tmp_path: Path) -> None:
    """The command line is the whole choice: no asset of an onboard run may fall back to an earlier
    onboard's saved options (mfg_assets.saved_options), and the saved file holds only the options set."""
    from mfg_assets.onboard import OnboardRequest, _chosen_options, _run_config
    from mfg_assets.run_configs import ONBOARD_CONFIGS

    run_config = _run_config(OnboardRequest(data_dir=tmp_path, line="l1", variant="a", seed=3, epochs=2))
    assert set(run_config.ops) == set(ONBOARD_CONFIGS)
    assert _chosen_options(run_config) == {
        "ops": {"dataset_version": {"config": {"seed": 3}}, "hyperparameter_search": {"config": {"epochs": 2}}}
    }


def test_a_task_without_an_engine_exits_2_before_anything_lands(mfg_home: Path, tiny_line: Path, capsys) -> None:
    assert main(["onboard", str(tiny_line), "--line", "l1", "--variant", "a", "--task", "segment"]) == 2
    assert "task 'segment' has no engine in this release (it is planned); supported now: classify" in capsys.readouterr().err
    _nothing_landed_or_registered(mfg_home)


def test_threshold_images_of_this_onboards_batch_get_their_path_in_the_users_folder(tmp_path: Path) -> None:
    from mfg_assets.onboard import _with_source_path

    (tmp_path / "MT_Break" / "Imgs").mkdir(parents=True)
    (tmp_path / "MT_Break" / "Imgs" / "x.jpg").write_bytes(b"jpg")
    landing = tmp_path / "landing"
    row = {"index": 3, "rel_path": "onboard-abc/MT_Break/Imgs/x.jpg", "sha256": hashlib.sha256(b"jpg").hexdigest()}
    got = _with_source_path(row, tmp_path, landing / "onboard-abc")
    assert got["source_path"] == str(tmp_path.resolve() / "MT_Break/Imgs/x.jpg")
    assert "source_path" not in _with_source_path({"index": 3}, tmp_path, landing / "onboard-abc")


def test_threshold_images_of_an_earlier_batch_get_the_folder_it_was_onboarded_from(tmp_path: Path) -> None:
    """An earlier onboard's marker names its folder; while the file there still holds the image, that
    is the one to review, else the landed copy; a batch from elsewhere (a camera drop) has only its copy."""
    from mfg_assets.onboard import _with_source_path, land_batch
    from resources.landing import landed_source

    first = tmp_path / "first"
    (first / "MT_Break").mkdir(parents=True)
    (first / "MT_Break" / "x.jpg").write_bytes(b"jpg")
    landing = tmp_path / "landing"
    earlier = land_batch(first, landing)
    assert landed_source(earlier) == first.resolve()
    row = {"index": 1, "rel_path": f"{earlier.name}/MT_Break/x.jpg", "sha256": hashlib.sha256(b"jpg").hexdigest()}
    now = landing / "onboard-now"
    assert _with_source_path(row, tmp_path / "second", now)["source_path"] == str(first.resolve() / "MT_Break/x.jpg")
    (first / "MT_Break" / "x.jpg").write_bytes(b"another day's image under the same name")
    renamed = _with_source_path(row, tmp_path / "second", now)
    assert "source_path" not in renamed and renamed["landed_path"] == str(earlier / "MT_Break/x.jpg")
    (first / "MT_Break" / "x.jpg").unlink()  # the plant tidied its folder since
    assert _with_source_path(row, tmp_path / "second", now)["landed_path"] == str(earlier / "MT_Break/x.jpg")
    (earlier / "_READY").write_text("")  # dropped by a camera, not onboarded: no source named
    assert landed_source(earlier) is None
    assert _with_source_path(row, tmp_path / "second", now)["landed_path"] == str(earlier / "MT_Break/x.jpg")
    gone = {"index": 2, "rel_path": "onboard-gone/a.jpg"}
    assert _with_source_path(gone, tmp_path, now) == gone


@pytest.mark.parametrize("rel_path", ["b//etc/passwd", "/etc/passwd", "../x/a.jpg", "b/../../x.jpg", "b/", "b"])
def test_a_rel_path_that_leaves_its_batch_names_no_file(tmp_path: Path, rel_path: str) -> None:
    from mfg_assets.onboard import _with_source_path

    row = {"index": 0, "rel_path": rel_path}
    assert _with_source_path(row, tmp_path, tmp_path / "landing" / "b") == row
