"""Probe the default recipe on a folder-per-class dataset outside the graph: input shape and split grouping.

The platform's own pieces (its grouped stratified split, letterbox fit, trainer and deployable model
with test-time flips), without ingest, export or registry, so one question can be asked per run:

* ``--shapes square224 rect320x160``: the square letterbox the product uses, or a 2:1 landscape
  letterbox (portrait images turned a quarter first) with about the same pixel count, which keeps
  1.4x the resolution of wide crops (magnetic tile's are up to 2.6:1);
* ``--near-duplicate-distance 0``: near-duplicates are not kept on one side of the split (only
  identical hashes are), i.e. close to a random split, which leaks them between train and test;
* ``--members mobilenetv2_100 mobilenetv2_100@1 efficientnet_lite0``: several models trained on the same
  split (a backbone, and an offset added to the seed), and the figures of each and of every ensemble of
  them (mean class probabilities), all from one run, so the comparison is paired;
* ``--set balance=inverse`` (any ``TrainSettings`` field, repeatable): one recipe setting changed for every
  model, to compare with a run without it on the same seeds (training is deterministic on one kind of CPU);
* ``--escape-budgets 0.01 0.02 0.05``: the test rates of the same model at thresholds that let up to that
  share of the defective validation images pass (``mfgv onboard --escape-budget``), for the trade a plant
  could choose instead of zero escapes;
* ``--preprocess clahe``: local contrast equalised (CLAHE) before the letterbox, for faint defects;
* ``--loss focal``: the training loss down-weights images the model already gets right (focal loss,
  gamma 2, on the label-smoothed targets) instead of plain cross-entropy; epochs are still chosen by
  validation cross-entropy;
* ``--epoch-rules``: which epoch of one training run to keep. Every epoch's averaged weights are kept
  and the figures of the epoch each rule picks are reported: the product's lowest validation loss,
  the lowest validation false-reject rate at zero validation escapes (ties: lowest loss), the last.

Per seed and shape, one JSON line: test accuracy, the false-reject and escape rates on test at the
threshold that passes no defective validation image (placed as the product places it), test AUROC of
the defect score, and the lowest defect scores on validation (what sets the threshold). Not the
product's figures (those come from ``bench/onboard_benchmark.py``): image order and loading differ,
so on one split the same recipe lands some points apart.

    .venv/bin/python bench/input_shape_probe.py ../shared/datasets/magnetic_tile --good-class MT_Free --seeds 1 0
"""

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edge_sync.contract.imaging import fit_to_input  # noqa: E402
from resources.classify import trainer  # noqa: E402
from resources.classify.model import load_inference_model, to_float_nchw  # noqa: E402
from resources.models.train_settings import TrainSettings  # noqa: E402
from resources.data.images import perceptual_hash  # noqa: E402
from resources.data.splitting import SplitSpec, grouped_stratified_split  # noqa: E402
from resources.reporting.metrics import calibrate_threshold, decision_rates, threshold_setters  # noqa: E402

SHAPES = {"square224": (224, 224, False), "rect320x160": (320, 160, True)}  # width, height, turn portrait images


def dataset_items(root: Path) -> pd.DataFrame:
    """One row per distinct image (path, label = class folder, sha256, pHash); the JPEGs of each class folder."""
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.rglob("*.jpg")):
            rows.append({
                "path": str(path), "label": class_dir.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "phash": perceptual_hash(path),
            })
    if not rows:
        raise SystemExit(f"{root}: no class folders with .jpg images")
    return pd.DataFrame(rows).drop_duplicates("sha256").reset_index(drop=True)


def local_contrast(image: Image.Image) -> Image.Image:
    """CLAHE (OpenCV's defaults: clip limit 2, 8 x 8 tiles) of the image's grey levels, at its own resolution."""
    import cv2

    grey = np.asarray(image.convert("L"), np.uint8)
    return Image.fromarray(cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(grey))


def load(paths: list[str], width: int, height: int, turn_portrait: bool, preprocess: str = "none") -> np.ndarray:
    out = np.empty((len(paths), height, width, 3), np.uint8)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            image.load()
            if turn_portrait and image.height > image.width:
                image = image.transpose(Image.Transpose.ROTATE_90)
            out[index] = fit_to_input(local_contrast(image) if preprocess == "clahe" else image, width, height, "letterbox")
    return out


def probabilities(model: object, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.concatenate([model(to_float_nchw(images[i : i + 32])).numpy() for i in range(0, len(images), 32)])


def figures(val: np.ndarray, test: np.ndarray, labels: dict, good: int, val_paths: np.ndarray, root: Path) -> dict:
    """Test figures of class probabilities at the threshold that passes no defective validation image,
    calibrated and applied with the product's own functions (``resources.reporting.metrics``)."""
    val_score, test_score = 1.0 - val[:, good], 1.0 - test[:, good]
    val_defect, test_defect = labels["val"] != good, labels["test"] != good
    threshold = calibrate_threshold(val_score, val_defect).threshold
    rates = decision_rates(test_score, test_defect, threshold)
    good_scores, defect_scores = test_score[~test_defect], test_score[test_defect]
    setters = threshold_setters(val_score, val_defect)
    budgets = {}
    for budget in ESCAPE_BUDGETS:  # --escape-budgets: the same model at thresholds that let some validation defects pass
        at = decision_rates(test_score, test_defect, calibrate_threshold(val_score, val_defect, max_escape_rate=budget).threshold)
        budgets[str(budget)] = {"false_reject_rate": round(at["false_reject_rate"], 4), "escape_rate": round(at["escape_rate"], 4)}
    return {
        "test_accuracy": round(float((test.argmax(1) == labels["test"]).mean()), 4),
        "false_reject_rate": round(rates["false_reject_rate"], 4),
        "escape_rate": round(rates["escape_rate"], 4),
        "test_auroc": round(float((defect_scores[:, None] > good_scores[None, :]).mean()), 4),
        "val_lowest_defect_scores": [round(row["score"], 3) for row in setters],
        "val_lowest_defect_images": [str(Path(val_paths[row["index"]]).relative_to(root)) for row in setters],
        **({"at_escape_budget": budgets} if budgets else {}),
    }


OVERRIDES: dict[str, object] = {}  # --set KEY=VALUE: training settings changed for every member
LOSS = ["cross_entropy"]  # --loss
ESCAPE_BUDGETS: list[float] = []  # --escape-budgets: extra thresholds, each passing at most that share of validation defects


def use_focal_loss(gamma: float = 2.0) -> None:
    """Make the trainer's ``torch.nn.CrossEntropyLoss(label_smoothing=...)`` a focal loss (probe only)."""
    import torch

    class FocalLoss(torch.nn.Module):
        def __init__(self, label_smoothing: float = 0.0) -> None:
            super().__init__()
            self.label_smoothing = label_smoothing

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            log_p = torch.log_softmax(logits, dim=1)
            classes = logits.shape[1]
            q = torch.nn.functional.one_hot(target, classes).float() * (1 - self.label_smoothing) + self.label_smoothing / classes
            return (-(q * (1 - log_p.exp()) ** gamma * log_p).sum(dim=1)).mean()

    torch.nn.CrossEntropyLoss = FocalLoss


def member_settings(member: str, seed: int) -> TrainSettings:
    """``BACKBONE`` or ``BACKBONE@OFFSET``: the default recipe from that backbone, seeded ``seed + OFFSET``,
    with the ``--set`` overrides."""
    backbone, _, offset = member.partition("@")
    return TrainSettings(**{"backbone": backbone, "image_size": 224, **OVERRIDES, "seed": seed + int(offset or 0)})


def setting_override(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of a ``TrainSettings`` field, the value read as JSON when it parses (numbers, true)."""
    key, sep, value = text.partition("=")
    if not sep or key not in TrainSettings.model_fields:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE with KEY one of {sorted(TrainSettings.model_fields)}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


EPOCH_RULES = {
    "lowest_val_loss": lambda h: min(h, key=lambda r: (round(r.val_loss, 6), -r.val_accuracy)).epoch,
    "lowest_val_frr": lambda h: min(h, key=lambda r: (r.val_false_reject_rate, round(r.val_loss, 6))).epoch,
    "last": lambda h: h[-1].epoch,
}


def train_keeping_every_epoch(arrays: dict, labels: dict, classes: list[str], settings: TrainSettings, good_class: str):
    """Train once; return the result and each epoch's averaged weights (what the trainer evaluated on
    validation at the end of that epoch, caught where it calls ``_predict``)."""
    import copy

    states: list[dict] = []
    original = trainer._predict

    def keep(model, images, mean, std):
        if images is arrays["val"]:
            states.append(copy.deepcopy(model.state_dict()))
        return original(model, images, mean, std)

    trainer._predict = keep
    try:
        result = trainer.train_classifier(
            arrays["train"], labels["train"], arrays["val"], labels["val"], classes, settings, good_class=good_class
        )
    finally:
        trainer._predict = original
    return result, states


def check_kept_weights(checkpoint: bytes, state: dict) -> None:
    import io

    import torch

    saved = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)["state_dict"]
    kept = {k.removeprefix("module."): v for k, v in state.items() if k != "n_averaged"}
    if saved.keys() != kept.keys() or not all(torch.equal(saved[k], kept[k]) for k in saved):
        raise SystemExit("the weights kept for the product's epoch are not its checkpoint's: the probe is wrong")


def epoch_model(checkpoint: bytes, state: dict):
    """The deployable model (test-time flips and all) of ``checkpoint`` with another epoch's weights."""
    import io

    import torch

    from resources.models.model_init import checkpoint_bytes

    payload = torch.load(io.BytesIO(checkpoint), map_location="cpu", weights_only=True)
    payload["state_dict"] = {k.removeprefix("module."): v.contiguous() for k, v in state.items() if k != "n_averaged"}
    return load_inference_model(checkpoint_bytes(payload))


def run(items: pd.DataFrame, root: Path, seed: int, shape: str, good_class: str, distance: int, members: list[str],
        epoch_rules: bool = False, preprocess: str = "none") -> dict:
    classes = sorted(items["label"].unique())
    good = classes.index(good_class)
    split = grouped_stratified_split(items, SplitSpec(seed=seed, near_duplicate_max_distance=distance))
    parts = {name: split[split["split"] == name] for name in ("train", "val", "test")}
    labels = {name: np.array([classes.index(label) for label in part["label"]], np.int64) for name, part in parts.items()}
    width, height, turn = SHAPES[shape]
    arrays = {name: load(part["path"].tolist(), width, height, turn, preprocess) for name, part in parts.items()}
    val_paths = parts["val"]["path"].to_numpy()
    if epoch_rules:
        started = time.perf_counter()
        result, states = train_keeping_every_epoch(arrays, labels, classes, member_settings(members[0], seed), good_class)
        line = {"seed": seed, "shape": shape, "train_seconds": round(time.perf_counter() - started),
                "product_best_epoch": result.best_epoch,
                "val_frr_by_epoch": [round(r.val_false_reject_rate, 4) for r in result.history],
                "val_loss_by_epoch": [round(r.val_loss, 4) for r in result.history], "rules": {}}
        # The product's rule must pick the product's epoch, and the weights kept for it must be the checkpoint's.
        assert EPOCH_RULES["lowest_val_loss"](result.history) == result.best_epoch, "rule differs from selection_key"
        check_kept_weights(result.checkpoint, states[result.best_epoch - 1])
        for rule, pick in EPOCH_RULES.items():
            epoch = pick(result.history)
            model = epoch_model(result.checkpoint, states[epoch - 1])
            outputs = (probabilities(model, arrays["val"]), probabilities(model, arrays["test"]))
            line["rules"][rule] = {"epoch": epoch, **figures(*outputs, labels, good, val_paths, root)}
        return line
    outputs, seconds = [], []
    for member in members:
        started = time.perf_counter()
        result = trainer.train_classifier(
            arrays["train"], labels["train"], arrays["val"], labels["val"], classes, member_settings(member, seed),
            good_class=good_class,
        )
        seconds.append(round(time.perf_counter() - started))
        model = load_inference_model(result.checkpoint)
        outputs.append((probabilities(model, arrays["val"]), probabilities(model, arrays["test"])))
    line = {
        "seed": seed, "shape": shape, "near_duplicate_distance": distance, "settings_changed": OVERRIDES,
        "preprocess": preprocess, "loss": LOSS[0],
        **figures(*outputs[0], labels, good, val_paths, root),
        "train_seconds": seconds[0], "images": {name: len(part) for name, part in parts.items()},
    }
    if len(members) > 1:
        # Every member alone, and the mean probabilities of every subset of two or more members.
        line["members"] = members
        line["train_seconds"] = seconds
        line["subsets"] = {}
        for size in range(1, len(members) + 1):
            for subset in itertools.combinations(range(len(members)), size):
                val = np.mean([outputs[i][0] for i in subset], axis=0)
                test = np.mean([outputs[i][1] for i in subset], axis=0)
                key = "+".join(members[i] for i in subset)
                line["subsets"][key] = figures(val, test, labels, good, val_paths, root)
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="one folder per class of .jpg images")
    parser.add_argument("--good-class", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["square224"])
    parser.add_argument(
        "--members", nargs="+", default=["mobilenetv2_100"],
        help="BACKBONE or BACKBONE@SEED_OFFSET per model trained on the split; with two or more, the figures of "
        "each and of the mean probabilities of every subset (an ensemble)",
    )
    parser.add_argument("--near-duplicate-distance", type=int, default=SplitSpec().near_duplicate_max_distance)
    parser.add_argument("--set", type=setting_override, action="append", default=[], metavar="KEY=VALUE",
                        help="a training setting changed for every member, e.g. balance=inverse (repeatable)")
    parser.add_argument("--escape-budgets", type=float, nargs="+", default=[], metavar="RATE",
                        help="also report test rates at thresholds that let at most RATE of the defective validation "
                        "images pass (what `mfgv onboard --escape-budget RATE` would calibrate)")
    parser.add_argument("--loss", choices=["cross_entropy", "focal"], default="cross_entropy",
                        help="focal: the trainer's loss made a focal loss (gamma 2) for this run")
    parser.add_argument("--preprocess", choices=["none", "clahe"], default="none",
                        help="clahe: every image's local contrast equalised (CLAHE) before the letterbox")
    parser.add_argument("--epoch-rules", action="store_true",
                        help="train the first member once and report the epoch each selection rule keeps")
    args = parser.parse_args()
    OVERRIDES.update(dict(args.set))
    ESCAPE_BUDGETS.extend(args.escape_budgets)
    LOSS[0] = args.loss
    if args.loss == "focal":
        use_focal_loss()
    # The probe's arrays may be non-square; the trainer's shape check is for the product's square inputs.
    trainer._check_images = lambda *_args, **_kwargs: None
    items = dataset_items(args.data)
    for seed in args.seeds:
        for shape in args.shapes:
            line = run(items, args.data, seed, shape, args.good_class, args.near_duplicate_distance, args.members,
                       args.epoch_rules, args.preprocess)
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
