"""Fit the PatchCore detector on a dataset in the MVTec AD layout and measure it, once per seed.

Magnetic tile is laid out as MVTec first (``--layout magnetic_tile``: a seeded 60 % of ``MT_Free`` to
``train/good``, the rest to ``test/good``, every defect tile to ``test/<class>`` with its mask); any
MVTec-layout folder is used as is (``--layout mvtec``). Per seed: fit seconds and the process's peak
RSS after fitting, image AUROC, pixel AUROC and PRO on the test set, the false-reject rate at zero
escapes on the test set itself (the best any threshold can do), and the same at a threshold
calibrated on a seeded half of the test set (zero escapes there) measured on the other half.

    .venv/bin/python bench/anomaly_benchmark.py ../shared/datasets/magnetic_tile --layout magnetic_tile --seeds 0 1 2
    .venv/bin/python bench/anomaly_benchmark.py DATA --layout mvtec --seeds 0 -- --backbone efficientnet_lite0
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from layouts import lay_out_magnetic_tile_mvtec, machine  # noqa: E402


def _load(paths: list[Path], size: int, resize: str) -> np.ndarray:
    from resources.data.images import load_rgb_batch

    return load_rgb_batch(paths, size, resize)


def _training_images(paths: list[Path], count: int | None, size: int, resize: str) -> np.ndarray:
    """The good training images; with ``count`` above their number, mirrored copies fill up to it
    (to measure memory and time at a training-set size the dataset does not have)."""
    images = _load(paths, size, resize)
    if count is None or count <= len(images):
        return images[:count] if count else images
    extra = [images[i % len(images), :, ::-1] if (i // len(images)) % 2 == 0 else images[i % len(images), ::-1]
             for i in range(count - len(images))]
    return np.concatenate([images, np.stack(extra)])


def _latency(net, images: np.ndarray, scratch: Path) -> dict:
    """ms per image in torch, ONNX Runtime and OpenVINO, measured one after another on the same images."""
    from edge_sync.inference import ModelFormat
    from resources.anomaly.detector import score_images
    from resources.anomaly.export import check_detector_parity, export_detector, require_detector_parity

    onnx_path, xml_path = export_detector(net, net.settings.image_size, scratch / "d.onnx", scratch / "d.xml")
    score_images(net, images[:8], batch_size=8)  # warm-up
    started = time.perf_counter()
    for start in range(0, len(images), 8):
        score_images(net, images[start : start + 8], batch_size=8)
    torch_ms = 1000 * (time.perf_counter() - started) / len(images)
    parity = check_detector_parity(net, {ModelFormat.ONNX: onnx_path, ModelFormat.OPENVINO: xml_path}, images)
    require_detector_parity(parity)  # a figure of an export that is not the model would be meaningless
    return {"torch_ms": torch_ms, **{f"{p.format}_ms": p.ms_per_image for p in parity},
            "parity": [p.as_dict() for p in parity]}


def measure(root: Path, seed: int, settings_json: str, train_count: int | None = None) -> dict:
    """One fit and evaluation, in this process (run in a child so peak RSS is this run's alone)."""
    from PIL import Image

    from resources.anomaly.detector import AnomalySettings, fit_detector, load_detector, score_images
    from resources.anomaly.layout import content_region, fit_mask, read_mvtec_layout
    from resources.anomaly.metrics import image_auroc, pixel_auroc, pro_score
    from resources.reporting.metrics import calibrate_threshold, decision_rates

    settings = AnomalySettings.model_validate({**json.loads(settings_json), "seed": seed})
    layout = read_mvtec_layout(root)
    train = _training_images(layout.train_good, train_count, settings.image_size, settings.resize)
    fit = fit_detector(train, settings)
    del train
    peak_fit_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    net = load_detector(fit.checkpoint)
    images = _load([item.path for item in layout.test], settings.image_size, settings.resize)
    started = time.perf_counter()
    maps, scores = score_images(net, images)
    score_seconds = time.perf_counter() - started
    masks = np.zeros(maps.shape, dtype=bool)
    valid = np.zeros(maps.shape, dtype=bool)
    for index, item in enumerate(layout.test):
        with Image.open(item.path) as opened:
            size = opened.size
        valid[index] = content_region(size[0], size[1], settings.image_size, settings.resize)
        if item.mask is not None:
            masks[index] = fit_mask(item.mask, size, settings.image_size, settings.resize)
    is_defect = np.array([item.is_defect for item in layout.test])
    oracle = decision_rates(scores, is_defect, float(scores[is_defect].min()))
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(scores), dtype=bool)
    for kind in (True, False):
        members = np.flatnonzero(is_defect == kind)
        in_val[rng.choice(members, size=len(members) // 2, replace=False)] = True
    calibration = calibrate_threshold(scores[in_val], is_defect[in_val], max_escape_rate=0.0)
    held_out = decision_rates(scores[~in_val], is_defect[~in_val], calibration.threshold)
    with tempfile.TemporaryDirectory(prefix="anomaly-export-") as scratch:
        latency = _latency(net, images[:32], Path(scratch))
    return {
        "seed": seed,
        "n_train": fit.n_images,
        "n_test_good": int((~is_defect).sum()),
        "n_test_defect": int(is_defect.sum()),
        "bank": fit.bank_size,
        "patches": fit.n_patches,
        "fit_s": fit.fit_seconds,
        "peak_rss_mb_after_fit": peak_fit_mb,
        "score_ms_per_image": 1000 * score_seconds / len(images),
        "image_auroc": image_auroc(scores, is_defect),
        "pixel_auroc": pixel_auroc(maps, masks, valid),
        "pro": pro_score(maps, masks, valid),
        "frr_at_zero_test_escapes": oracle["false_reject_rate"],
        "half_calibrated_frr": held_out["false_reject_rate"],
        "half_calibrated_escape_rate": held_out["escape_rate"],
        "flagged_training_images": sum(entry["flagged"] for entry in fit.suspicious_training_images),
        **latency,
        "settings": settings.model_dump(mode="json"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--layout", choices=["mvtec", "magnetic_tile"], default="mvtec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", default="{}", help="AnomalySettings fields as JSON, e.g. '{\"image_size\": 256}'")
    parser.add_argument("--json", type=Path, help="also write the runs as JSON here")
    parser.add_argument("--train-images", type=int, help="fit on this many training images (mirrored copies fill up)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.data, args.seeds[0], args.settings, args.train_images)))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="anomaly-bench-") as scratch:
        for seed in args.seeds:
            root = args.data
            if args.layout == "magnetic_tile":
                root = Path(scratch) / f"mvtec-{seed}"
                lay_out_magnetic_tile_mvtec(args.data, root, seed)
            done = subprocess.run(
                [sys.executable, __file__, str(root), "--child", "--seeds", str(seed), "--settings", args.settings,
                 *(["--train-images", str(args.train_images)] if args.train_images else [])],
                capture_output=True, text=True,
            )
            if done.returncode != 0:
                raise SystemExit(f"seed {seed} failed:\n{done.stderr[-4000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(json.dumps({k: v for k, v in run.items() if k not in ("settings", "parity")}), flush=True)
    keys = ["image_auroc", "pixel_auroc", "pro", "frr_at_zero_test_escapes", "half_calibrated_frr", "fit_s",
            "peak_rss_mb_after_fit", "torch_ms", "onnx_ms", "openvino_ms"]
    print(f"machine: {machine()}")
    print("median " + ", ".join(f"{k} {statistics.median(r[k] for r in runs):.4g}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
