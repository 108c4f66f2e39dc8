"""Would a second score lower the false-reject rate at zero escapes? Measured on splits the graph made.

Reads the split of an ``MFG_HOME`` where ``mfgv onboard`` ran (its ``dataset_items`` table and artifact
store), refits what it needs on that split's good training images and prints, per score, test AUROC
and the test false-reject and escape rates at the threshold that lets no validation defect pass.
Every added score is z-normalised by the good validation images, then summed with its weight.

    # after `mfgv onboard --task anomaly --format mvtec` into HOME (one per seed):
    .venv/bin/python bench/score_combinations.py anomaly HOME0 HOME1 HOME2
    # after `mfgv onboard --good-class GOOD` (classification) into HOME:
    .venv/bin/python bench/score_combinations.py classify --good-class MT_Free HOME0 HOME1 HOME2

``anomaly``: PatchCore on each bundled backbone, a Gaussian (Ledoit-Wolf, Mahalanobis) on the image's
pooled stage features, and their combinations. ``classify``: the registered classifier's defect score
(1 - P(good), test-time flips as deployed) with a PatchCore fitted on the split's good training images.
"""

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SIZE = 224


def _split(home: Path) -> tuple[dict, object]:
    from resources.artifact_store import ArtifactStore
    from resources.lineage import LineageStore

    items = LineageStore(home=str(home)).read_table("dataset_items").sort_values(["split", "sha256"]).reset_index(drop=True)
    if items["dataset_id"].nunique() != 1:
        raise SystemExit(f"{home}: holds {items['dataset_id'].nunique()} dataset versions; use a home with one onboard")
    parts = {name: items[items["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    return parts, ArtifactStore(root=str(home / "artifacts"))


def _pixels(rows, store, size: int = SIZE, resize: str = "letterbox") -> np.ndarray:
    from resources.data.images import load_rgb_batch

    return load_rgb_batch([store.path(r) for r in rows["artifact"]], size, resize)


def _patchcore(train: np.ndarray, backbone: str, seed: int):
    from resources.anomaly.detector import AnomalySettings, fit_detector, load_detector

    return load_detector(fit_detector(train, AnomalySettings(backbone=backbone, seed=seed)).checkpoint)


def _pooled(net, pixels: np.ndarray) -> np.ndarray:
    """Mean of each chosen stage's feature map, concatenated: one vector per image."""
    import torch

    from resources.classify.model import to_float_nchw

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(pixels), 16):
            x = (to_float_nchw(pixels[start : start + 16]) - net.mean) / net.std
            chunks.append(torch.cat([f.mean(dim=(2, 3)) for f in net.body(x)], 1).numpy())
    return np.concatenate(chunks)


def _gaussian(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    from sklearn.covariance import LedoitWolf

    mean = train.mean(axis=0)
    precision = LedoitWolf().fit(train - mean).precision_
    return [np.sqrt(np.einsum("ij,jk,ik->i", x - mean, precision, x - mean)) for x in others]


def anomaly_scores(home: Path, seed: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    from resources.anomaly.detector import score_images

    parts, store = _split(home)
    pixels = {name: _pixels(rows, store) for name, rows in parts.items()}
    scores = {}
    for backbone in ("mobilenetv2_100", "efficientnet_lite0"):
        net = _patchcore(pixels["train"], backbone, seed)
        scores[f"patchcore {backbone}"] = tuple(score_images(net, pixels[n], keep_maps=False)[1] for n in ("val", "test"))
        scores[f"gaussian {backbone}"] = tuple(_gaussian(*(_pooled(net, pixels[n]) for n in ("train", "val", "test"))))
    return scores, _defective(parts["val"], "good"), _defective(parts["test"], "good")


def classify_scores(home: Path, seed: int, good_class: str) -> tuple[dict, np.ndarray, np.ndarray]:
    from resources.anomaly.detector import score_images
    from resources.classify.model import load_inference_model, predict_proba

    parts, store = _split(home)
    checkpoints = sorted((home / "artifacts" / "checkpoints").rglob("*.pt"), key=lambda p: p.stat().st_mtime)
    if not checkpoints:
        raise SystemExit(f"{home}: no classifier checkpoint under artifacts/checkpoints; onboard a classifier there first")
    model = load_inference_model(checkpoints[-1])
    good = model.classes.index(good_class)
    scores = {"classifier": tuple(
        np.log(np.clip(1.0 - predict_proba(model, _pixels(parts[n], store, model.image_size, model.resize))[:, good], 1e-6, 1.0))
        for n in ("val", "test")
    )}
    train_good = parts["train"][parts["train"]["label"] == good_class]
    net = _patchcore(_pixels(train_good, store), "mobilenetv2_100", seed)
    scores["patchcore"] = tuple(score_images(net, _pixels(parts[n], store), keep_maps=False)[1] for n in ("val", "test"))
    return scores, _defective(parts["val"], good_class), _defective(parts["test"], good_class)


def _defective(rows, good_class: str) -> np.ndarray:
    return (rows["label"] != good_class).to_numpy()


def combine(scores: dict, weights: dict[str, float], val_defective: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sum of the scores, each z-normalised by the good validation images."""
    total_val, total_test = 0.0, 0.0
    for name, weight in weights.items():
        val, test = scores[name]
        good = val[~val_defective]
        total_val = total_val + weight * (val - good.mean()) / good.std()
        total_test = total_test + weight * (test - good.mean()) / good.std()
    return total_val, total_test


def rates(val: np.ndarray, val_defective: np.ndarray, test: np.ndarray, test_defective: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    from resources.reporting.metrics import calibrate_threshold, decision_rates

    threshold = calibrate_threshold(val, val_defective).threshold
    decided = decision_rates(test, test_defective, threshold)
    return {"auroc": float(roc_auc_score(test_defective, test)), "frr": decided["false_reject_rate"], "escape": decided["escape_rate"]}


COMBINATIONS = {
    "anomaly": {
        "PatchCore MobileNetV2 (default)": {"patchcore mobilenetv2_100": 1.0},
        "PatchCore EfficientNet-Lite0": {"patchcore efficientnet_lite0": 1.0},
        "both PatchCores": {"patchcore mobilenetv2_100": 1.0, "patchcore efficientnet_lite0": 1.0},
        "Gaussian MobileNetV2": {"gaussian mobilenetv2_100": 1.0},
        "PatchCore + Gaussian, MobileNetV2": {"patchcore mobilenetv2_100": 1.0, "gaussian mobilenetv2_100": 1.0},
        "both PatchCores + both Gaussians": {"patchcore mobilenetv2_100": 1.0, "patchcore efficientnet_lite0": 1.0,
                                             "gaussian mobilenetv2_100": 1.0, "gaussian efficientnet_lite0": 1.0},
    },
    "classify": {
        "classifier alone (what ships)": {"classifier": 1.0},
        "PatchCore alone": {"patchcore": 1.0},
        "classifier + 0.25 x PatchCore": {"classifier": 1.0, "patchcore": 0.25},
        "classifier + 0.5 x PatchCore": {"classifier": 1.0, "patchcore": 0.5},
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", choices=sorted(COMBINATIONS))
    parser.add_argument("homes", type=Path, nargs="+", help="one MFG_HOME per seed, each after one mfgv onboard")
    parser.add_argument("--good-class", default=None, help="classify: the good class")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="the onboard seeds (default 0, 1, ...)")
    args = parser.parse_args()
    if args.task == "classify" and not args.good_class:
        parser.error("classify needs --good-class")
    seeds = args.seeds or list(range(len(args.homes)))
    results: dict[str, list[dict[str, float]]] = {name: [] for name in COMBINATIONS[args.task]}
    for home, seed in zip(args.homes, seeds, strict=True):
        if args.task == "anomaly":
            scores, val_defective, test_defective = anomaly_scores(home.resolve(), seed)
        else:
            scores, val_defective, test_defective = classify_scores(home.resolve(), seed, args.good_class)
        for name, weights in COMBINATIONS[args.task].items():
            val, test = combine(scores, weights, val_defective)
            results[name].append(rates(val, val_defective, test, test_defective))
    print("| score | test AUROC by seed | median | FRR at threshold by seed | median FRR | test escapes by seed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, runs in results.items():
        auroc = " / ".join(f"{r['auroc']:.3f}" for r in runs)
        frr = " / ".join(f"{100 * r['frr']:.2f}" for r in runs)
        escape = " / ".join(f"{100 * r['escape']:.2f}" for r in runs)
        print(f"| {name} | {auroc} | {statistics.median(r['auroc'] for r in runs):.3f} | {frr} % | "
              f"{100 * statistics.median(r['frr'] for r in runs):.2f} % | {escape} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
