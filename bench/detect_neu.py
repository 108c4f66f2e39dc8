"""Detection on a real dataset as a new user runs it: `mfgv onboard --task detect` per detector.

For each detector (``--models``), a fresh MFG_HOME, the whole onboard timed (ingest, labels, split,
training, report, export with parity, registration), and from its report: test mAP50 / mAP50-95,
the validation mAP50 after each epoch against the training minutes so far, and the latency per
runtime. Run one detector at a time (2 cores): the script does.

    .venv/bin/python bench/detect_neu.py ../shared/datasets/neu_det --format voc \
        --models mobilenetv2-yolo26n yolo26n.yaml --epochs 12 --out /tmp/detect-bench
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_one(data: Path, fmt: str, model: str, epochs: int, seed: int, out: Path, image_size: int | None) -> dict:
    home = out / model.replace(".yaml", "").replace("/", "_")
    home.mkdir(parents=True, exist_ok=False)
    report = home / "report.json"
    command = [
        sys.executable, "-m", "mfg_assets.cli", "onboard", str(data), "--task", "detect", "--format", fmt,
        "--line", "bench", "--variant", "det", "--epochs", str(epochs), "--seed", str(seed),
        "--task-settings", json.dumps({"model": model}), "--report-json", str(report),
        "--min-accuracy", "0", "--max-test-escape-rate", "1",
        *(["--image-size", str(image_size)] if image_size else []),
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env={**__import__("os").environ, "MFG_HOME": str(home)}, capture_output=True, text=True)
    minutes = (time.monotonic() - started) / 60
    (home / "onboard.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        return {"model": model, "failed": done.stderr[-2000:], "onboard_minutes": round(minutes, 1)}
    summary = json.loads(report.read_text())
    full = json.loads(Path(summary["report_json_full"]).read_text())
    history = full["training"].get("history") or []
    elapsed, curve = 0.0, []
    for record in history:
        elapsed += float(record.get("seconds", 0.0))
        curve.append((int(record["epoch"]), round(elapsed / 60, 1), round(float(record.get("map50", float("nan"))), 3)))
    test = summary["test"]
    return {
        "model": model,
        "epochs": epochs,
        "image_size": full["training"]["image_size"],
        "train_minutes": round(float(full["training"]["train_seconds"]) / 60, 1),
        "onboard_minutes": round(minutes, 1),
        "test_map50": test.get("map50"),
        "test_map50_95": test.get("map50_95"),
        "test_images": test.get("n_images"),
        "best_epoch": full["training"].get("best_epoch"),
        "val_map50_by_epoch": curve,
        "latency_ms": summary.get("latency_ms"),
        "per_class_ap50": {k: v.get("ap50") for k, v in (test.get("per_class_ap") or {}).items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--format", default="voc", choices=["coco", "yolo", "voc"])
    parser.add_argument("--models", nargs="+", default=["mobilenetv2-yolo26n", "yolo26n.yaml"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the runs' homes and logs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for model in args.models:
        result = run_one(args.data.resolve(), args.format, model, args.epochs, args.seed, args.out, args.image_size)
        results.append(result)
        print(json.dumps(result), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
