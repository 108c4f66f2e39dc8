"""``mfgv``: the platform's command line.

``mfgv onboard`` runs the Dagster job in-process against the instance under ``MFG_HOME/dagster``,
so its runs, materializations and checks show in the UI exactly as if launched from there.
Heavy libraries are only imported by the commands that need them, so ``mfgv --help`` is instant.
"""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from resources.errors import MfgVisionError
from resources.reporting.format import pct_with_interval
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


def _test_summary(report: dict) -> str:
    """One line of the test split's headline figures, as the report JSON has them."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    test = report["test"]
    parts = [f"test accuracy {pct(test.get('accuracy'))}"]
    for key, name in (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro", "PRO")):
        if key in test:
            parts.append(f"{name} {'n/a' if test[key] is None else format(test[key], '.3f')}")
    parts += [
        f"false-reject rate {pct_with_interval(test.get('false_reject_rate'), test.get('false_reject_rate_ci95'), 'n/a')}",
        f"escape rate {pct_with_interval(test.get('escape_rate'), test.get('escape_rate_ci95'), 'n/a')}",
    ]
    if report.get("threshold_rule"):
        parts.append(f"threshold rule {report['threshold_rule']}")
    return "test: " + ", ".join(parts)


def _split_summary(report: dict) -> list[str]:
    """How the data was split: by what images were grouped into parts, and what each split holds."""
    grouping = report.get("grouping") or {}
    if not grouping.get("splits"):
        return []
    held = ", ".join(
        f"{name} {row['images']} images ({row['groups']} groups, {row['effective_parts']:g} effective parts)"
        for name, row in grouping["splits"].items()
    )
    lines = [f"split grouped by {grouping['group_by']} ({grouping['reason']}): {held}"]
    if grouping.get("fallback"):
        lines.append(f"warning: {grouping['fallback']}")
    return lines


def _threshold_setters_summary(report: dict) -> list[str]:
    """Console lines naming the defective validation images that set the zero-escape threshold.

    On real data one or two of them can decide the false-reject rate (magnetic tile: a border sliver that
    costs three quarters of the good parts, BENCHMARKS.md), so they are printed where the user reads the
    result, not only in the HTML: each with what catching it costs, the first images to review.
    """
    rows = report.get("threshold_set_by") or []
    if not rows:
        return []
    lines = [
        "threshold set by the defective validation images the model scores lowest "
        "(catching each rejects this share of the good validation parts; review these first):"
    ]
    for row in rows:
        where = row.get("source_path") or row.get("landed_path") or row.get("rel_path") or f"validation image {row['index']}"
        lines.append(
            f"  {where} ({row.get('true', '?')}): score {row['score']:.3f}, "
            f"{100 * row['false_reject_rate_to_catch']:.2f} % of good parts ({row['good_at_or_above']})"
        )
    return lines


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
        min_images_per_class=args.min_images_per_class,
        augment_copies=args.augment_copies,
        anomaly_settings=args.anomaly_settings,
        release_without_defects=args.release_without_defects,
        group_by=args.group_by,
    )
    report = onboard(request, echo=print)
    print(json.dumps({k: report[k] for k in ("model_version", "dataset_version", "report_html")}, indent=2))
    for line in _split_summary(report):
        print(line)
    print(_test_summary(report))
    for line in _threshold_setters_summary(report):
        print(line)
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


def _json_object(text: str) -> dict:
    """An argparse type: a JSON object (the message says what was wrong)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at character {exc.pos}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"feature_levels\": [2, 3]}}', got {text!r}")
    return value


def _bounded(kind: type, low: float, high: float, *, low_open: bool = False):
    """An argparse type: a number of ``kind`` in [low, high] (or (low, high]), refused with the range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value != value or value > high or value < low or (low_open and value == low):
            bound = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {bound} and at most {high:g}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfgv", description="mfg-vision: visual-inspection models for production lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="prepare MFG_HOME (Dagster home with telemetry off)")
    init.set_defaults(func=_cmd_init)

    sample = commands.add_parser("sample-line", help="write a generated sample line (folder per class)")
    sample.add_argument("out_dir")
    sample.add_argument("--seed", type=int, required=True)
    sample.add_argument("--images-per-class", type=int, default=60, help="images of each defect type")
    sample.add_argument("--good-images", type=int, default=None, help="images of good parts (default: as many)")
    sample.add_argument("--image-size", type=int, default=128)
    sample.add_argument("--colour", action="store_true", help="RGB images instead of greyscale")
    sample.set_defaults(func=_cmd_sample_line)

    anomaly_sample = commands.add_parser(
        "sample-anomaly-line", help="write a generated sample line in the MVTec layout, with defect masks (--task anomaly)"
    )
    anomaly_sample.add_argument("out_dir")
    anomaly_sample.add_argument("--seed", type=int, required=True)
    anomaly_sample.add_argument("--train-good", type=_bounded(int, 1, 100_000), default=60, help="good images under train/good")
    anomaly_sample.add_argument("--test-good", type=_bounded(int, 1, 100_000), default=30, help="good images under test/good")
    anomaly_sample.add_argument("--test-per-defect", type=_bounded(int, 1, 100_000), default=10, help="images of each defect type")
    anomaly_sample.add_argument("--image-size", type=_bounded(int, 32, 1024), default=128)
    anomaly_sample.add_argument("--free-pose", action="store_true",
                                help="parts at any angle and lighting, as on the classification sample line (default: fixtured)")
    anomaly_sample.add_argument("--look-alike", action="store_true",
                                help="one jig, one light, one finish: parts differ only by dust, noise and defects")
    anomaly_sample.add_argument("--shots-per-part", type=_bounded(int, 1, 20), default=1,
                                help="photograph each part this many times; metadata.csv names its part_id")
    anomaly_sample.set_defaults(func=_cmd_sample_anomaly_line)

    onboard = commands.add_parser(
        "onboard",
        help="register a variant from a dataset and train, validate, export, register it",
        allow_abbrev=False,
    )
    onboard.add_argument("data_dir")
    onboard.add_argument(
        "--task", default="classify",
        help="inspection task (resources.tasks): classify or anomaly in this release; others are refused with why",
    )
    onboard.add_argument(
        "--format", default="folders", choices=["folders", "csv", "coco", "mvtec"],
        help="how labels are given; mvtec: train/good, test/<type>, ground_truth/<type>/*_mask.png (--task anomaly)",
    )
    onboard.add_argument("--line", required=True)
    onboard.add_argument("--variant", required=True)
    onboard.add_argument("--good-class", default=None, help="class of acceptable parts (enables FRR/escape rates)")
    onboard.add_argument("--report-json", default=None, help="write the validation report summary here")
    onboard.add_argument("--epochs", type=_bounded(int, 1, 1000), default=None,
                         help="training epochs (default 12 fine-tuning a backbone, 30 from scratch)")
    onboard.add_argument("--image-size", type=_bounded(int, 16, 1024), default=None,
                         help="model input side in pixels (default: from the data, 64..224)")
    onboard.add_argument("--augment-copies", type=_bounded(int, 0, 20), default=None,
                         help="offline augmented copies per training image (default 0)")
    onboard.add_argument("--backbone", default=None, help=(
        "bundled ImageNet backbone to fine-tune: mobilenetv2_100 (default), efficientnet_lite0, "
        "efficientnet_lite1, efficientnet_lite2; 'none' trains --arch from scratch; with --task anomaly, the "
        "backbone whose features the detector compares"))
    onboard.add_argument("--arch", default=None, help="timm architecture (implies --backbone none unless given)")
    onboard.add_argument("--pretrained-weights", default=None,
                         help="LOCAL weights file for --arch (default: the backbone's architecture), e.g. a WideResNet-50 "
                              "for --task anomaly; nothing is downloaded")
    onboard.add_argument("--init-from", default=None, metavar="MODEL_VERSION",
                         help="start from a registered classifier's weights (e.g. another variant's); with --task "
                              "anomaly, the detector takes that classifier's features")
    onboard.add_argument("--hpo-trials", type=_bounded(int, 1, 1000), default=None,
                         help="hyperparameter search: number of optuna trials")
    onboard.add_argument("--hpo-minutes", type=_bounded(float, 0.0, 7 * 24 * 60, low_open=True), default=None,
                         help="hyperparameter search: time limit in minutes")
    onboard.add_argument("--cv-folds", type=_bounded(int, 2, 20), default=None,
                         help="cross-validation: stratified, grouped k-fold over train + val")
    onboard.add_argument("--seed", type=_bounded(int, 0, 2**32 - 1), default=0, help="seed of split, augmentation and training")
    onboard.add_argument("--min-accuracy", type=_bounded(float, 0.0, 1.0), default=None,
                         help="release criterion: lowest test accuracy")
    onboard.add_argument("--max-test-escape-rate", type=_bounded(float, 0.0, 1.0), default=None,
                         help="release criterion: highest test escape rate")
    onboard.add_argument("--escape-budget", type=_bounded(float, 0.0, 0.5), default=None,
                         help="operating threshold: escape rate allowed on validation (default 0: pass no defective "
                              "validation image); a budget trades escapes for fewer false rejects")
    onboard.add_argument("--min-images-per-class", type=_bounded(int, 1, 10**6), default=None,
                         help="annotation check: fewest images a class may have")
    onboard.add_argument("--anomaly-settings", type=_json_object, default=None, metavar="JSON",
                         help='--task anomaly: detector settings, e.g. \'{"feature_levels": [2, 3]}\' (resources.anomaly.detector)')
    onboard.add_argument("--group-by", default=None, choices=["auto", "metadata", "phash", "none"],
                         help="what keeps one part's images in one split: metadata (part_id or capture_id column in "
                              "metadata.csv), phash (near-copies of one picture), none (identical files only); default "
                              "auto: metadata where every image has an id, else phash")
    onboard.add_argument("--release-without-defects", action="store_true",
                         help="--task anomaly: release a detector although no defective test image measured its escapes")
    onboard.set_defaults(func=_cmd_onboard)

    lineage = commands.add_parser("lineage", help="print a model version's lineage back to every image and label")
    lineage.add_argument("model_version")
    lineage.add_argument("--summary", action="store_true", help="omit the per-image rows")
    lineage.set_defaults(func=_cmd_lineage)

    models = commands.add_parser("models", help="list registered model versions")
    models.add_argument("--line", default=None)
    models.add_argument("--variant", default=None)
    models.set_defaults(func=_cmd_models)

    server = commands.add_parser("edge-server", help="run the edge sync server (HTTP) on MFG_HOME/edge")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8700)
    server.set_defaults(func=_cmd_edge_server)

    device = commands.add_parser("edge-device", help="edge-device add ID --line L: register a device, print its token")
    device.add_argument("action", choices=["add"])
    device.add_argument("device_id")
    device.add_argument("--line", required=True)
    device.add_argument("--canary", action="store_true", help="the device receives canary deployments first")
    device.set_defaults(func=_cmd_edge_device)

    agent = commands.add_parser(
        "edge-agent",
        help="run an edge agent (flags: --device ID --server URL --camera-dir DIR --token T [--state-dir] [--once])",
        add_help=False,
    )
    agent.add_argument("agent_args", nargs=argparse.REMAINDER)
    agent.set_defaults(func=_cmd_edge_agent)

    deploy = commands.add_parser("deploy", help="publish the registered model of a line/variant to its devices")
    deploy.add_argument("--line", required=True)
    deploy.add_argument("--variant", required=True)
    deploy.add_argument("--ring", default="canary", choices=["canary", "fleet"])
    deploy.add_argument("--format", default="onnx", choices=["onnx", "openvino", "onnx_int8"])
    deploy.add_argument(
        "--accept-int8-shortfall",
        action="store_true",
        help="deploy onnx_int8 even though no INT8 model met the export's tolerance against FP32 (recorded in lineage)",
    )
    deploy.set_defaults(func=_cmd_deploy)

    promote = commands.add_parser(
        "promote", help="publish the line's live canary model to the fleet, in its format (what the edge sensor does)"
    )
    promote.add_argument("--line", required=True)
    promote.add_argument("--variant", required=True)
    promote.set_defaults(func=_cmd_promote)

    rollback = commands.add_parser("rollback", help="end a line's canary, or put its fleet back on an earlier version")
    rollback.add_argument("--line", required=True)
    rollback.add_argument("--to", default=None, help="model version to run (default: the previous one)")
    rollback.set_defaults(func=_cmd_rollback)

    batch = commands.add_parser("batch", help="list, withdraw or replace a variant's landing batches (recorded, never deleted)")
    batch.add_argument("action", choices=["list", "withdraw", "replace"])
    batch.add_argument("--line", required=True)
    batch.add_argument("--variant", required=True)
    batch.add_argument("--batch", default=None, help="the batch to withdraw or replace (as `batch list` names it)")
    batch.add_argument("--from", dest="source", default=None, help="replace: folder with the fixed copy of the batch")
    batch.add_argument("--reason", default="withdrawn by hand", help="why, for the audit trail")
    batch.set_defaults(func=_cmd_batch)

    variant = commands.add_parser("variant", help="show a variant, or grow its taxonomy (versioned)")
    variant.add_argument("action", choices=["show", "add-class"])
    variant.add_argument("--line", required=True)
    variant.add_argument("--variant", required=True)
    variant.add_argument("--class", dest="class_name", default=None, help="add-class: the new class name")
    variant.set_defaults(func=_cmd_variant)

    parser.allow_abbrev = False  # '--epoch' must not quietly mean '--epochs'
    for sub in commands.choices.values():
        sub.allow_abbrev = False
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["edge-agent"]:  # the agent parses its own flags (edge_sync stays free of this CLI)
        apply_offline_switches()
        from mfg_assets.edge_commands import run_agent

        return run_agent(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    apply_offline_switches()
    from pydantic import ValidationError

    from edge_sync.errors import EdgeSyncError

    try:
        return args.func(args)
    except (MfgVisionError, EdgeSyncError, ValidationError) as exc:
        # The platform's and edge_sync's roots, and a setting out of bounds: messages for the user.
        # Anything else (a KeyError, a TypeError, a bare ValueError) is a bug and keeps its traceback.
        print(f"mfgv {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
