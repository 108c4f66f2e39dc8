"""``mfgv``: the platform's command line.

``mfgv onboard`` runs the Dagster job in-process against the instance under ``MFG_HOME/dagster``,
so its runs, materializations and checks show in the UI exactly as if launched from there.
Heavy libraries are only imported by the commands that need them, so ``mfgv --help`` is instant.
"""

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mfg_assets.cli_parser import build_parser
from resources.errors import MfgVisionError
from resources.settings import apply_offline_switches, dagster_home, mfg_home

__all__ = ["main"]

log = logging.getLogger("mfgv")


class CliError(MfgVisionError):
    """A user-facing error: printed without a traceback, exit code 2."""


def _cmd_init(args: argparse.Namespace) -> int:
    from mfg_assets.instance import prepare_home

    home = prepare_home()
    print(f"MFG_HOME={home}\nDAGSTER_HOME={dagster_home(home)}")
    return 0


def _cmd_sample_line(args: argparse.Namespace) -> int:
    if args.boxes is not None:
        return _sample_box_line(args)
    from resources.data.sample_line import generate_sample_line

    summary = generate_sample_line(
        Path(args.out_dir),
        seed=args.seed,
        images_per_class=args.images_per_class,
        good_images=args.good_images,
        image_size=args.image_size,
        colour=args.colour,
    )
    counts = ", ".join(f"{k}={v}" for k, v in summary.counts.items())
    print(f"wrote a sample line to {summary.out_dir} (seed {summary.seed}): {counts}")
    return 0


def _sample_box_line(args: argparse.Namespace) -> int:
    """``sample-line --boxes FORMAT``: the line's parts with defect boxes, labelled in FORMAT."""
    from resources.data.sample_boxes import write_box_line

    if args.colour:
        print("note: --colour does not apply to --boxes (the boxed line is rendered in colour)")
    summary = write_box_line(
        Path(args.out_dir),
        seed=args.seed,
        good_images=args.good_images if args.good_images is not None else args.images_per_class,
        images_per_class=args.images_per_class,
        image_size=args.image_size,
        fmt=args.boxes,
    )
    boxes = ", ".join(f"{k}={v}" for k, v in summary.boxes.items())
    print(
        f"wrote a sample line with boxes to {summary.out_dir} ({summary.fmt}, seed {args.seed}): {summary.images} images, "
        f"{summary.good_images} good; boxes {boxes}. Onboard it with: mfgv onboard {summary.out_dir} --task detect "
        f"--format {summary.fmt} --line LINE --variant VARIANT"
    )
    return 0


def _cmd_sample_anomaly_line(args: argparse.Namespace) -> int:
    from resources.data.sample_anomaly import generate_anomaly_line

    counts = generate_anomaly_line(
        Path(args.out_dir),
        seed=args.seed,
        train_good=args.train_good,
        test_good=args.test_good,
        test_per_defect=args.test_per_defect,
        image_size=args.image_size,
        fixtured=not args.free_pose,
        look_alike=args.look_alike,
        shots_per_part=args.shots_per_part,
    )
    shown = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"wrote a sample line in the MVTec layout to {args.out_dir} (seed {args.seed}): {shown}")
    return 0


def _cmd_onboard(args: argparse.Namespace) -> int:
    from mfg_assets.onboard import OnboardRequest, onboard

    request = OnboardRequest(
        data_dir=Path(args.data_dir),
        task=args.task,
        label_format=args.format,
        line=args.line,
        variant=args.variant,
        good_class=args.good_class,
        report_json=Path(args.report_json) if args.report_json else None,
        epochs=args.epochs,
        image_size=args.image_size,
        arch=args.arch,
        backbone=args.backbone,
        pretrained_weights=args.pretrained_weights,
        init_from=args.init_from,
        hpo_trials=args.hpo_trials,
        hpo_minutes=args.hpo_minutes,
        cv_folds=args.cv_folds,
        seed=args.seed,
        min_accuracy=args.min_accuracy,
        max_test_escape_rate=args.max_test_escape_rate,
        escape_budget=args.escape_budget,
        device=args.device,
        min_images_per_class=args.min_images_per_class,
        augment_copies=args.augment_copies,
        anomaly_settings=args.anomaly_settings,
        release_without_defects=args.release_without_defects,
        group_by=args.group_by,
        force=args.force,
        no_good_class=args.no_good_class,
    )
    report = onboard(request, echo=print)
    if report.get("unchanged"):
        print(report["message"])
        print(f"report: {report['report_html']}")
        return 0
    from mfg_assets.onboard_summary import summary_lines

    for line in summary_lines(report, Path(args.report_json).resolve() if args.report_json else None):
        print(line)
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from mfg_assets.lineage_view import render_lineage

    for line in render_lineage(args.model_version, full=args.full):
        print(line)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from resources.registry import ModelRegistry

    from mfg_assets.tables import models_table

    versions = ModelRegistry().list_versions(args.line, args.variant)
    if not versions:
        print(f"no model registered under {mfg_home()}")
        return 0
    print(models_table(versions))
    return 0


def _cmd_edge_server(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import run_server

    return run_server(args.host, args.port)


def _cmd_edge_device(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import add_device

    token, public_key = add_device(args.device_id, args.line, canary=args.canary)
    print(f"device {args.device_id} on line {args.line}{' (canary)' if args.canary else ''}")
    print(f"token (shown once; the server keeps only its hash): {token}")
    print(f"platform public key for the device: {public_key}")
    return 0


def _cmd_edge_agent(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import run_agent

    return run_agent(args.agent_args)


def _cmd_deploy(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import deploy

    deploy(args.line, args.variant, ring=args.ring, model_format=args.format, accept_int8_shortfall=args.accept_int8_shortfall)
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import promote

    promote(args.line, args.variant)
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from mfg_assets import data_commands

    if args.action == "list":
        print(data_commands.list_batches(args.line, args.variant))
        return 0
    if not args.batch:
        raise CliError(f"batch {args.action} needs --batch NAME (see `mfgv batch list --line {args.line} --variant {args.variant}`)")
    if args.action == "withdraw":
        print(data_commands.withdraw(args.line, args.variant, args.batch, args.reason))
        return 0
    if args.source is None:
        raise CliError("batch replace needs --from DIR: the fixed copy of the batch")
    print(data_commands.replace_batch(args.line, args.variant, args.batch, Path(args.source), args.reason))
    return 0


def _cmd_variant(args: argparse.Namespace) -> int:
    from mfg_assets import data_commands

    if args.action == "show":
        print(data_commands.show_variant(args.line, args.variant))
        return 0
    if not args.class_name:
        raise CliError("variant add-class needs --class NAME")
    print(data_commands.add_variant_class(args.line, args.variant, args.class_name))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from mfg_assets.edge_commands import rollback

    print(rollback(args.line, args.to))
    return 0


_COMMANDS = ("init", "sample_line", "sample_anomaly_line", "onboard", "lineage", "models", "edge_server", "edge_device", "edge_agent", "deploy", "promote", "rollback", "batch", "variant")


def _handlers() -> dict:
    """Each command's function, looked up when ``main`` runs (tests replace them)."""
    return {name: globals()[f"_cmd_{name}"] for name in _COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["edge-agent"]:  # the agent parses its own flags (edge_sync stays free of this CLI)
        apply_offline_switches()
        from mfg_assets.edge_commands import run_agent

        return run_agent(argv[1:])
    args = build_parser(_handlers()).parse_args(argv)
    from mfg_assets.console import configure_console_logging

    configure_console_logging(args.verbose)
    restore_interrupts = None
    if args.command in ("onboard", "deploy", "promote", "rollback"):  # commands that run Dagster jobs here
        from mfg_assets.console import interrupts_to_this_process_only

        restore_interrupts = interrupts_to_this_process_only()
    apply_offline_switches()
    from pydantic import ValidationError

    from edge_sync.errors import EdgeSyncError

    try:
        if args.command not in ("sample-line", "sample-anomaly-line"):
            from mfg_assets.instance import require_writable_home

            require_writable_home(mfg_home())
        return args.func(args)
    except (MfgVisionError, EdgeSyncError, ValidationError) as exc:
        # The platform's and edge_sync's roots, and a setting out of bounds: messages for the user.
        # Anything else (a KeyError, a TypeError, a bare ValueError) is a bug and keeps its traceback.
        print(f"mfgv {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mfgv {args.command}: interrupted. {_AFTER_INTERRUPT.get(args.command, _KEPT)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of the output (`| head`, a closed pager) stopped reading: not this command's failure
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        if restore_interrupts is not None:
            restore_interrupts()


_KEPT = "What had finished is kept, nothing half-written is; run the same command again to finish."
_AFTER_INTERRUPT = {
    "onboard": (
        "Kept: the landed data and every step that had finished (the run shows as failed in the UI); nothing "
        "half-written. Run the same command again: finished steps are reused, the rest runs."
    ),
    "edge-server": "The server stopped; devices retry and go on when it is back.",
}


if __name__ == "__main__":
    sys.exit(main())
