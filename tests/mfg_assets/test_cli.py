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
    from resources.models.backbones import BackboneError
    from resources.classify.trainer import TrainingDidNotLearn
    from resources.classify.cross_validation import CrossValidationError
    from resources.edge import RollbackRefused
    from resources.classify.exporter import ExportError
    from resources.data.images import ImageRejected
    from resources.data.labels import LabelImportError
    from resources.lineage import LineageNotFound
    from resources.models.model_init import WeightsError
    from resources.data.variants import UnknownVariant

    for error in (
        OnboardError, PreflightError, SampleLineError, BackboneError, TrainingDidNotLearn, CrossValidationError,
        RollbackRefused, ExportError, ImageRejected, LabelImportError, LineageNotFound, WeightsError, UnknownVariant,
        UnknownModelVersion, cli.CliError,
    ):
        assert issubclass(error, MfgVisionError), error


def test_every_option_of_every_command_has_help_text() -> None:
    import argparse

    from mfg_assets.cli import _handlers
    from mfg_assets.cli_parser import build_parser

    parser = build_parser(_handlers())
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    missing = [
        f"{name} {action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions  # noqa: SLF001
        if not isinstance(action, argparse._HelpAction) and not action.help  # noqa: SLF001
    ]
    assert missing == []


def test_a_misspelled_option_gets_a_did_you_mean(capsys) -> None:
    import pytest

    from mfg_assets.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["onboard", "data", "--line", "l1", "--variant", "v1", "--good-clas", "good"])
    assert exit_info.value.code == 2
    assert "--good-clas: did you mean --good-class?" in capsys.readouterr().err


def test_a_reader_that_stops_reading_is_not_an_error(mfg_home, monkeypatch) -> None:
    """`mfgv lineage VERSION | head` closes the pipe early: no BrokenPipeError traceback, exit 0."""
    def writes_into_a_closed_pipe(args) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_models", writes_into_a_closed_pipe)
    monkeypatch.setattr(cli.os, "dup2", lambda *a: None)  # pytest's captured stdout stays as it is
    assert cli.main(["models"]) == 0
