"""The CLI turns the platform's own errors into messages and lets bugs keep their tracebacks."""

from pathlib import Path

import pytest

import mfg_assets.cli as cli
from edge_sync.contract import InvalidName
from resources.errors import MfgVisionError
from resources.registry import UnknownModelVersion


def _raising(exc: BaseException):
    def command(args) -> int:
        raise exc

    return command


@pytest.mark.parametrize(
    "exc",
    [UnknownModelVersion("line1-a-v9 is not registered; run mfgv models"), InvalidName("line '-x' is not a valid name")],
)
def test_platform_and_edge_errors_are_messages_with_exit_code_2(
    exc: Exception, mfg_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_cmd_models", _raising(exc))
    assert cli.main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mfgv models: ") and str(exc) in err and "Traceback" not in err


@pytest.mark.parametrize("bug", [KeyError("row"), ValueError("unpacking went wrong"), TypeError("None is not iterable")])
def test_a_bug_keeps_its_traceback(bug: Exception, mfg_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "_cmd_models", _raising(bug))
    with pytest.raises(type(bug)):
        cli.main(["models"])


def test_every_platform_error_class_has_the_root() -> None:
    from mfg_assets.onboard import OnboardError
    from mfg_assets.onboard_checks import PreflightError
    from resources.data.sample_line import SampleLineError
    from resources.classify.backbones import BackboneError
    from resources.classify.trainer import TrainingDidNotLearn
    from resources.classify.cross_validation import CrossValidationError
    from resources.edge import RollbackRefused
    from resources.classify.exporter import ExportError
    from resources.data.images import ImageRejected
    from resources.data.labels import LabelImportError
    from resources.lineage import LineageNotFound
    from resources.classify.model_init import WeightsError
    from resources.data.variants import UnknownVariant

    for error in (
        OnboardError, PreflightError, SampleLineError, BackboneError, TrainingDidNotLearn, CrossValidationError,
        RollbackRefused, ExportError, ImageRejected, LabelImportError, LineageNotFound, WeightsError, UnknownVariant,
        UnknownModelVersion, cli.CliError,
    ):
        assert issubclass(error, MfgVisionError), error


def test_onboard_output_names_the_images_that_set_the_threshold() -> None:
    report = {
        "threshold_set_by": [
            {"index": 7, "score": 0.0636, "good_at_or_above": 146, "false_reject_rate_to_catch": 0.7644,
             "rel_path": "onboard-1/MT_Break/exp6_num_105927.jpg", "true": "MT_Break"},
            {"index": 9, "score": 0.41, "good_at_or_above": 2, "false_reject_rate_to_catch": 0.0105, "true": "MT_Uneven"},
        ]
    }
    lines = cli._threshold_setters_summary(report)
    assert len(lines) == 3 and "review these first" in lines[0]
    assert lines[1] == "  onboard-1/MT_Break/exp6_num_105927.jpg (MT_Break): score 0.064, 76.44 % of good parts (146)"
    assert lines[2].startswith("  validation image 9 (MT_Uneven): score 0.410, 1.05 %")
    report["threshold_set_by"][0]["landed_path"] = "/home/.mfg/landing/l/v/onboard-1/MT_Break/exp6_num_105927.jpg"
    assert cli._threshold_setters_summary(report)[1].startswith("  /home/.mfg/landing/l/v/onboard-1/MT_Break/")
    report["threshold_set_by"][0]["source_path"] = "/plant/tiles/MT_Break/exp6_num_105927.jpg"
    assert cli._threshold_setters_summary(report)[1].startswith("  /plant/tiles/MT_Break/exp6_num_105927.jpg (MT_Break)")
    assert cli._threshold_setters_summary({"threshold_set_by": []}) == []
    assert cli._threshold_setters_summary({}) == []  # anomaly reports and reports without a good class


def test_onboard_output_gives_each_test_rate_with_its_interval() -> None:
    report = {"test": {"accuracy": 0.9880, "false_reject_rate": 0.0, "false_reject_rate_ci95": [0.0, 0.0303],
                       "escape_rate": 0.0213, "escape_rate_ci95": [0.0005, 0.1129]}}
    line = cli._test_summary(report)
    assert "false-reject rate 0.00 % (95 % CI 0.00–3.03 %)" in line
    assert "escape rate 2.13 % (95 % CI 0.05–11.29 %)" in line
    no_good_class = cli._test_summary({"test": {"accuracy": 0.5, "false_reject_rate": None, "escape_rate": None}})
    assert "false-reject rate n/a, escape rate n/a" in no_good_class
