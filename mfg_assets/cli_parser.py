"""``mfgv``'s command line: every command, option, its bounds and its help, in one place.

Options a user misspells get a "did you mean" (``--good-clas`` -> ``--good-class``); every option
has help text (a test walks the parser); numbers are refused with their range before anything runs.
"""

import argparse
import difflib
import json
from collections.abc import Callable, Mapping

__all__ = ["SuggestingParser", "build_parser"]


class SuggestingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose "unrecognized arguments" error names the closest known option of
    any command (argparse lists the valid choices itself). ``allow_abbrev`` is off everywhere:
    ``--epoch`` must not quietly mean ``--epochs``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def _known_options(self) -> list[str]:
        options = [o for action in self._actions for o in action.option_strings]
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 - argparse has no public accessor
                for sub in action.choices.values():
                    options += [o for a in sub._actions for o in a.option_strings]  # noqa: SLF001
        return sorted(set(options))

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        if "unrecognized arguments:" in message:
            hints = []
            for word in message.split("unrecognized arguments:", 1)[1].split():
                if word.startswith("--"):
                    close = difflib.get_close_matches(word.split("=")[0], self._known_options(), n=1, cutoff=0.75)
                    if close:
                        hints.append(f"{word}: did you mean {close[0]}?")
            if hints:
                message += "; " + "; ".join(hints)
        super().error(message)


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


def build_parser(handlers: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """mfgv's parser; ``handlers`` maps each command (``onboard``, ``sample_line``, ...) to its function."""
    parser = SuggestingParser(prog="mfgv", description="mfg-vision: visual-inspection models for production lines")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show everything: debug output, library messages and warnings, Dagster's event stream")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=SuggestingParser)

    init = commands.add_parser("init", help="prepare MFG_HOME (Dagster home with telemetry off)")
    init.set_defaults(func=handlers["init"])

    sample = commands.add_parser("sample-line", help="write a generated sample line (folder per class)")
    sample.add_argument("out_dir", help="new (or empty) folder to write the images into")
    sample.add_argument("--seed", type=int, required=True, help="seed of every random draw (same seed, same images)")
    sample.add_argument("--images-per-class", type=int, default=60, help="images of each defect type")
    sample.add_argument("--good-images", type=int, default=None, help="images of good parts (default: as many)")
    sample.add_argument("--image-size", type=int, default=128, help="image side in pixels (default 128)")
    sample.add_argument("--colour", action="store_true", help="RGB images instead of greyscale")
    sample.add_argument(
        "--boxes", choices=["coco", "yolo", "voc"], default=None,
        help="write a line for object detection instead: defect boxes labelled in this format (for --task detect)",
    )
    sample.set_defaults(func=handlers["sample_line"])

    anomaly_sample = commands.add_parser(
        "sample-anomaly-line", help="write a generated sample line in the MVTec layout, with defect masks (--task anomaly)"
    )
    anomaly_sample.add_argument("out_dir", help="new (or empty) folder to write the MVTec layout into")
    anomaly_sample.add_argument("--seed", type=int, required=True, help="seed of every random draw (same seed, same images)")
    anomaly_sample.add_argument("--train-good", type=_bounded(int, 1, 100_000), default=60, help="good images under train/good")
    anomaly_sample.add_argument("--test-good", type=_bounded(int, 1, 100_000), default=30, help="good images under test/good")
    anomaly_sample.add_argument("--test-per-defect", type=_bounded(int, 1, 100_000), default=10, help="images of each defect type")
    anomaly_sample.add_argument("--image-size", type=_bounded(int, 32, 1024), default=128, help="image side in pixels (default 128)")
    anomaly_sample.add_argument("--free-pose", action="store_true",
                                help="parts at any angle and lighting, as on the classification sample line (default: fixtured)")
    anomaly_sample.add_argument("--look-alike", action="store_true",
                                help="one jig, one light, one finish: parts differ only by dust, noise and defects")
    anomaly_sample.add_argument("--shots-per-part", type=_bounded(int, 1, 20), default=1,
                                help="photograph each part this many times; metadata.csv names its part_id")
    anomaly_sample.set_defaults(func=handlers["sample_anomaly_line"])

    onboard = commands.add_parser(
        "onboard",
        help="register a variant from a dataset and train, validate, export, register it",
        allow_abbrev=False,
    )
    onboard.add_argument("data_dir", help="the dataset folder (see --format)")
    onboard.add_argument(
        "--task", default="classify",
        help="inspection task (resources.tasks): classify, anomaly or detect in this release; others are refused with why",
    )
    onboard.add_argument(
        "--format", default="folders", choices=["folders", "csv", "coco", "mvtec", "yolo", "voc"],
        help="how labels are given; mvtec: train/good, test/<type>, ground_truth/<type>/*_mask.png (--task anomaly); "
             "boxes (--task detect): coco (annotations.json + images/), yolo (labels/*.txt + data.yaml or classes.txt "
             "+ images/) or voc (Annotations/*.xml + JPEGImages/)",
    )
    onboard.add_argument("--line", required=True, help="production line name (letters, digits, - and _), e.g. line1")
    onboard.add_argument("--variant", required=True, help="product variant on that line, e.g. bracket-a")
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
    onboard.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                         help="where training runs: auto (a CUDA GPU when torch sees one, else the CPU; the default), "
                              "cpu or cuda (fails when there is none); recorded in lineage")
    onboard.add_argument("--min-images-per-class", type=_bounded(int, 1, 10**6), default=None,
                         help="annotation check: fewest images a class may have")
    onboard.add_argument("--task-settings", "--anomaly-settings", dest="anomaly_settings", type=_json_object, default=None,
                         metavar="JSON",
                         help='settings of the task\'s own model: --task anomaly e.g. \'{"feature_levels": [2, 3]}\'; '
                              '--task detect e.g. \'{"model": "yolo26n.yaml", "batch": 16}\' (model: a YOLO yaml of '
                              'ultralytics, or mobilenetv2-yolo26n for the bundled ImageNet body)')
    onboard.add_argument("--group-by", default=None, choices=["auto", "metadata", "phash", "none"],
                         help="what keeps one part's images in one split: metadata (part_id or capture_id column in "
                              "metadata.csv), phash (near-copies of one picture), none (identical files only); default "
                              "auto: metadata where every image has an id, else phash")
    onboard.add_argument("--no-good-class", action="store_true",
                         help="no class is the good parts: every class is a defect type (no false-reject or escape rates)")
    onboard.add_argument("--force", action="store_true",
                         help="train again even when the data and options match the latest registered version")
    onboard.add_argument("--release-without-defects", action="store_true",
                         help="--task anomaly: release a detector although no defective test image measured its escapes")
    onboard.set_defaults(func=handlers["onboard"])

    lineage = commands.add_parser("lineage", help="print a model version's lineage back to every image and label")
    lineage.add_argument("model_version", help="a registered version, e.g. line1-bracket-a-v1 (see mfgv models)")
    lineage.add_argument("--full", action="store_true",
                         help="also every image and label row, and every parameter in full (long: thousands of lines)")
    lineage.add_argument("--summary", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    lineage.set_defaults(func=handlers["lineage"])

    models = commands.add_parser("models", help="list registered model versions")
    models.add_argument("--line", default=None, help="only this line's versions")
    models.add_argument("--variant", default=None, help="only this variant's versions")
    models.set_defaults(func=handlers["models"])

    server = commands.add_parser("edge-server", help="run the edge sync server (HTTP) on MFG_HOME/edge")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    server.add_argument("--port", type=_bounded(int, 1, 65535), default=8700, help="TCP port (default 8700)")
    server.set_defaults(func=handlers["edge_server"])

    device = commands.add_parser("edge-device", help="edge-device add ID --line L: register a device, print its token")
    device.add_argument("action", choices=["add"], help="add: register a device and print its token once")
    device.add_argument("device_id", help="the device's name, e.g. cam-7")
    device.add_argument("--line", required=True, help="the line the device inspects")
    device.add_argument("--canary", action="store_true", help="the device receives canary deployments first")
    device.set_defaults(func=handlers["edge_device"])

    agent = commands.add_parser(
        "edge-agent",
        help="run an edge agent (flags: --device ID --server URL --camera-dir DIR --token T [--state-dir] [--once])",
        add_help=False,
    )
    agent.add_argument("agent_args", nargs=argparse.REMAINDER, help="the agent's own flags (mfgv edge-agent --help)")
    agent.set_defaults(func=handlers["edge_agent"])

    deploy = commands.add_parser("deploy", help="publish the registered model of a line/variant to its devices")
    deploy.add_argument("--line", required=True, help="the production line")
    deploy.add_argument("--variant", required=True, help="the product variant on that line")
    deploy.add_argument("--ring", default="canary", choices=["canary", "fleet"], help="canary devices first (default), or the whole fleet")
    deploy.add_argument("--format", default="onnx", choices=["onnx", "openvino", "onnx_int8"], help="which export the devices run (default onnx)")
    deploy.add_argument(
        "--accept-int8-shortfall",
        action="store_true",
        help="deploy onnx_int8 even though no INT8 model met the export's tolerance against FP32 (recorded in lineage)",
    )
    deploy.set_defaults(func=handlers["deploy"])

    promote = commands.add_parser(
        "promote", help="publish the line's live canary model to the fleet, in its format (what the edge sensor does)"
    )
    promote.add_argument("--line", required=True, help="the production line")
    promote.add_argument("--variant", required=True, help="the product variant on that line")
    promote.set_defaults(func=handlers["promote"])

    rollback = commands.add_parser("rollback", help="end a line's canary, or put its fleet back on an earlier version")
    rollback.add_argument("--line", required=True, help="the production line")
    rollback.add_argument("--to", default=None, help="model version to run (default: the previous one)")
    rollback.set_defaults(func=handlers["rollback"])

    batch = commands.add_parser("batch", help="list, withdraw or replace a variant's landing batches (recorded, never deleted)")
    batch.add_argument("action", choices=["list", "withdraw", "replace"], help="list the batches, withdraw one, or replace one with a fixed copy")
    batch.add_argument("--line", required=True, help="the production line")
    batch.add_argument("--variant", required=True, help="the product variant on that line")
    batch.add_argument("--batch", default=None, help="the batch to withdraw or replace (as `batch list` names it)")
    batch.add_argument("--from", dest="source", default=None, help="replace: folder with the fixed copy of the batch")
    batch.add_argument("--reason", default="withdrawn by hand", help="why, for the audit trail")
    batch.set_defaults(func=handlers["batch"])

    variant = commands.add_parser("variant", help="show a variant, or grow its taxonomy (versioned)")
    variant.add_argument("action", choices=["show", "add-class"], help="show the taxonomy, or add a class to it (a new version)")
    variant.add_argument("--line", required=True, help="the production line")
    variant.add_argument("--variant", required=True, help="the product variant on that line")
    variant.add_argument("--class", dest="class_name", default=None, help="add-class: the new class name")
    variant.set_defaults(func=handlers["variant"])

    parser.allow_abbrev = False  # '--epoch' must not quietly mean '--epochs'
    for sub in commands.choices.values():
        sub.allow_abbrev = False
    return parser
