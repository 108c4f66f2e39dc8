"""Magnetic-tile benchmark: good-vs-defect figures (false-reject and escape rates) on real data.

NEU has no class of good parts, so its report has no FRR/escape figures. The magnetic-tile set has
952 defect-free crops (``MT_Free``) and five defect types; this lays its JPEGs out as one folder per
class (the same-name PNG masks are left out), onboards them through Dagster with ``MT_Free`` as the
good class and writes test accuracy, FRR, escape rate and the calibrated threshold to BENCHMARKS.md.

    .venv/bin/python bench/magnetic_tile_benchmark.py ../shared/datasets/magnetic_tile --write BENCHMARKS.md
"""

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from neu_benchmark import machine  # noqa: E402


def lay_out(source: Path, out: Path) -> dict[str, int]:
    counts = {}
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir() and p.name.startswith("MT_")):
        images = sorted(class_dir.rglob("*.jpg"))
        for image in images:
            target = out / class_dir.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target)
        counts[class_dir.name] = len(images)
    if not counts:
        raise SystemExit(f"{source}: no MT_* class folders; pass the magnetic_tile folder")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="mt-bench-"))
    os.environ["MFG_HOME"] = str(scratch / "home")
    os.environ.pop("DAGSTER_HOME", None)
    from mfg_assets.onboard import OnboardRequest, onboard

    counts = lay_out(args.dataset.resolve(), scratch / "data")
    report = onboard(
        OnboardRequest(
            data_dir=scratch / "data", line="tiles", variant="magnetic", good_class="MT_Free",
            epochs=args.epochs, image_size=args.image_size, augment_copies=0, min_accuracy=0.0,
            max_test_escape_rate=1.0,
        ),
        echo=lambda message: print(message, flush=True),
    )
    test = report["test"]
    result = {
        "date": dt.date.today().isoformat(), "machine": machine(),
        "command": " ".join([".venv/bin/python", "bench/magnetic_tile_benchmark.py", *sys.argv[1:]]),
        "images": counts, "test_images": test["n_images"], "test_accuracy": test["accuracy"],
        "false_reject_rate": test["false_reject_rate"], "escape_rate": test["escape_rate"],
        "threshold": report["threshold"], "calibration": report["threshold_calibration"],
        "train_seconds": report["train_seconds"], "int8_test_accuracy": report["int8_test_accuracy"],
    }
    print(json.dumps(result, indent=2))
    if args.write:
        calibration = result["calibration"]
        section = f"""
## Magnetic tile, good vs 5 defect types ({result['date']})

- Machine: {result['machine']}
- Command: `{result['command']}`
- Data: {sum(counts.values())} crops ({', '.join(f'{k} {v}' for k, v in counts.items())}); good class `MT_Free`;
  seeded stratified 60/20/20 split grouped by near-duplicate pHash ({result['test_images']} test images);
  trained from scratch with the default recipe (resnet10t, 128 px, 30 epochs), no offline augmentation copies.

| figure | value |
| --- | --- |
| test accuracy (6 classes) | {100 * result['test_accuracy']:.2f} % |
| threshold calibrated on validation (zero escapes there) | {result['threshold']:.4f} (validation FRR {100 * calibration['false_reject_rate']:.2f} %) |
| test false-reject rate (good tiles rejected) | {100 * result['false_reject_rate']:.2f} % |
| test escape rate (defective tiles passed) | {100 * result['escape_rate']:.2f} % |
| INT8 test accuracy | {100 * (result['int8_test_accuracy'] or 0):.2f} % |
| training time | {result['train_seconds']:.0f} s |
"""
        args.write.write_text(args.write.read_text().rstrip() + "\n" + section)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
