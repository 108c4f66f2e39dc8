"""``mfgv``: the platform's command line.

``mfgv onboard`` runs the Dagster job in-process against the instance under ``MFG_HOME/dagster``,
so its runs, materializations and checks show in the UI exactly as if launched from there.
Heavy libraries are only imported by the commands that need them, so ``mfgv --help`` is instant.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from resources.settings import apply_offline_switches, dagster_home, mfg_home

__all__ = ["main"]

log = logging.getLogger("mfgv")


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def _cmd_init(args: argparse.Namespace) -> int:
    from mfg_assets.instance import prepare_home

    home = prepare_home()
    print(f"MFG_HOME={home}\nDAGSTER_HOME={dagster_home(home)}")
    return 0


def _cmd_sample_line(args: argparse.Namespace) -> int:
    from mfg_assets.sample_line import generate_sample_line

    summary = generate_sample_line(
        Path(args.out_dir),
        seed=args.seed,
        images_per_class=args.images_per_class,
        image_size=args.image_size,
        colour=args.colour,
    )
    counts = ", ".join(f"{k}={v}" for k, v in summary.counts.items())
    print(f"wrote a sample line to {summary.out_dir} (seed {summary.seed}): {counts}")
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
        pretrained_weights=args.pretrained_weights,
        seed=args.seed,
        min_accuracy=args.min_accuracy,
        max_test_escape_rate=args.max_test_escape_rate,
        min_images_per_class=args.min_images_per_class,
        augment_copies=args.augment_copies,
    )
    report = onboard(request, echo=print)
    print(json.dumps({k: report[k] for k in ("model_version", "dataset_version", "report_html")}, indent=2))
    if args.report_json:
        print(f"report JSON: {Path(args.report_json).resolve()}")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from mfg_assets.lineage_view import render_lineage

    for line in render_lineage(args.model_version, show_items=not args.summary):
        print(line)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from resources.registry import ModelRegistry

    versions = ModelRegistry().list_versions(args.line, args.variant)
    if not versions:
        print(f"no model registered under {mfg_home()}")
        return 0
    for v in versions:
        accuracy = v.metrics.get("test_accuracy")
        print(f"{v.version}\t{v.status.value}\t{v.task}\taccuracy={accuracy}\t{v.dataset_version}\t{v.registered_at}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfgv", description="mfg-vision: visual-inspection models for production lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="prepare MFG_HOME (Dagster home with telemetry off)")
    init.set_defaults(func=_cmd_init)

    sample = commands.add_parser("sample-line", help="write a generated sample line (folder per class)")
    sample.add_argument("out_dir")
    sample.add_argument("--seed", type=int, required=True)
    sample.add_argument("--images-per-class", type=int, default=60)
    sample.add_argument("--image-size", type=int, default=128)
    sample.add_argument("--colour", action="store_true", help="RGB images instead of greyscale")
    sample.set_defaults(func=_cmd_sample_line)

    onboard = commands.add_parser("onboard", help="register a variant from a dataset and train, validate, export, register it")
    onboard.add_argument("data_dir")
    onboard.add_argument("--task", default="classify", choices=["classify"])
    onboard.add_argument("--format", default="folders", choices=["folders", "csv", "coco"])
    onboard.add_argument("--line", required=True)
    onboard.add_argument("--variant", required=True)
    onboard.add_argument("--good-class", default=None, help="class of acceptable parts (enables FRR/escape rates)")
    onboard.add_argument("--report-json", default=None, help="write the validation report summary here")
    onboard.add_argument("--epochs", type=int, default=None, help="training epochs (default: the trainer's)")
    onboard.add_argument("--image-size", type=int, default=None, help="training/inference size in pixels")
    onboard.add_argument(
        "--augment-copies", type=int, default=None, help="augmented copies per training image (default 2)"
    )
    onboard.add_argument("--arch", default=None, help="timm architecture (default: the trainer's)")
    onboard.add_argument("--pretrained-weights", default=None, help="LOCAL weights file; nothing is downloaded")
    onboard.add_argument("--seed", type=int, default=0, help="seed of split, augmentation and training")
    onboard.add_argument("--min-accuracy", type=float, default=None, help="release criterion: lowest test accuracy")
    onboard.add_argument(
        "--max-test-escape-rate", type=float, default=None, help="release criterion: highest test escape rate"
    )
    onboard.add_argument(
        "--min-images-per-class", type=int, default=None, help="annotation check: fewest images a class may have"
    )
    onboard.set_defaults(func=_cmd_onboard)

    lineage = commands.add_parser("lineage", help="print a model version's lineage back to every image and label")
    lineage.add_argument("model_version")
    lineage.add_argument("--summary", action="store_true", help="omit the per-image rows")
    lineage.set_defaults(func=_cmd_lineage)

    models = commands.add_parser("models", help="list registered model versions")
    models.add_argument("--line", default=None)
    models.add_argument("--variant", default=None)
    models.set_defaults(func=_cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_offline_switches()
    try:
        return args.func(args)
    except CliError as exc:
        print(f"mfgv {args.command}: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, LookupError) as exc:
        print(f"mfgv {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
