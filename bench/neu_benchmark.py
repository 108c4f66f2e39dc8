"""NEU steel-surface benchmark: the real ``mfgv onboard`` path on real data, figures for BENCHMARKS.md.

Lays NEU-DET out as one folder per class (class = file-name prefix) in a scratch folder, onboards it
through Dagster with a fresh MFG_HOME (seeded, stratified 60/20/20 split), then measures per-image
latency (median, batch 1, 2 threads) of torch eager, ONNX Runtime FP32/INT8 and OpenVINO FP32 on the
test images, and the INT8 model's test accuracy.

    .venv/bin/python bench/neu_benchmark.py ../shared/datasets/neu_det --write BENCHMARKS.md
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NEU_CLASS = re.compile(r"^(?P<cls>.+?)_\d+\.jpg$")


def lay_out_as_folders(neu_dir: Path, out: Path) -> dict[str, int]:
    """Copy NEU into ``out/<class>/<file>`` (the data stays read-only where it is)."""
    counts: dict[str, int] = {}
    images = sorted(neu_dir.rglob("*.jpg"))
    if not images:
        raise SystemExit(f"{neu_dir}: no .jpg files; pass the neu_det folder (IMAGES/ and Validation_Images/)")
    for image in images:
        match = NEU_CLASS.match(image.name)
        if not match:
            raise SystemExit(f"{image}: name does not start with a class prefix like crazing_12.jpg")
        target = out / match["cls"] / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, target)
        counts[match["cls"]] = counts.get(match["cls"], 0) + 1
    return counts


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def latency_table(report: dict, home: Path, repeats: int) -> dict[str, float]:
    """Medians with more repeats than the asset's quick measurement."""
    from mfg_assets.datasets import load_split_images
    from mfg_assets.handles import DatasetVersion
    from resources.artifact_store import ArtifactStore
    from resources.classification_trainer import load_inference_model
    from resources.exporter import ExportFormat, measure_latency
    from resources.lineage import LineageStore
    from resources.registry import ModelRegistry

    version = ModelRegistry(home=str(home)).get(report["model_version"])
    store = ArtifactStore(root=str(home / "artifacts"))
    lineage = LineageStore(home=str(home))
    model = load_inference_model(store.path(version.artifacts["checkpoint"]))
    items = lineage.read_table("dataset_items", "dataset_id = ?", [version.dataset_version])
    classes = tuple(sorted(set(items["label"])))
    dataset = DatasetVersion(id=version.dataset_version, partition="", classes=classes, good_class=None, counts={}, split_spec={})
    size = version.parameters["image_size"]
    images, _, _ = load_split_images(lineage, store, dataset, "test", size)
    exported = {ExportFormat(fmt): Path(path) for fmt, path in report["exports"].items()}
    return measure_latency(model, exported, images[:16], repeats=repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("neu_dir", type=Path)
    parser.add_argument("--write", type=Path, default=None, help="append the figures to this Markdown file")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment-copies", type=int, default=0, help="offline augmented copies per image")
    parser.add_argument("--latency-repeats", type=int, default=100)
    parser.add_argument("--keep", type=Path, default=None, help="keep MFG_HOME here instead of a temporary folder")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="neu-bench-"))
    home = args.keep.resolve() if args.keep else scratch / "mfg-home"
    os.environ["MFG_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    from mfg_assets.onboard import OnboardRequest, onboard

    counts = lay_out_as_folders(args.neu_dir.resolve(), scratch / "neu")
    started = time.monotonic()
    report = onboard(
        OnboardRequest(
            data_dir=scratch / "neu",
            line="neu",
            variant="steel",
            epochs=args.epochs,
            image_size=args.image_size,
            arch=args.arch,
            seed=args.seed,
            augment_copies=args.augment_copies,
            min_accuracy=0.0,
            report_json=scratch / "report.json",
        ),
        echo=lambda message: print(message, flush=True),
    )
    wall = time.monotonic() - started
    latency = latency_table(report, home, args.latency_repeats)
    torch_ms = latency["torch"]
    result = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join([".venv/bin/python", "bench/neu_benchmark.py", *sys.argv[1:]]),
        "images": counts,
        "latency_repeats": args.latency_repeats,
        "augment_copies": args.augment_copies,
        "test_accuracy": report["test"]["accuracy"],
        "test_images": report["test"]["n_images"],
        "int8_test_accuracy": report["int8_test_accuracy"],
        "train_seconds": report["train_seconds"],
        "onboard_seconds": round(wall, 1),
        "latency_ms": latency,
        "speedup_vs_torch": {k: round(torch_ms / v, 2) for k, v in latency.items()},
        "parity_max_abs_diff": report["parity"]["max_abs_diff"],
        "false_reject_rate": report["test"]["false_reject_rate"],
        "escape_rate": report["test"]["escape_rate"],
        "model_version": report["model_version"],
        "dataset_version": report["dataset_version"],
        "training": _training_parameters(home, report["model_version"]),
    }
    print(json.dumps(result, indent=2))
    if args.write:
        write_markdown(args.write, result, report)
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _training_parameters(home: Path, version: str) -> dict:
    from resources.registry import ModelRegistry

    parameters = ModelRegistry(home=str(home)).get(version).parameters
    keep = ("arch", "image_size", "epochs", "batch_size", "learning_rate", "weight_decay", "label_smoothing", "seed")
    train = parameters.get("train", {})
    return {k: train.get(k, parameters.get(k)) for k in keep}


def write_markdown(path: Path, result: dict, report: dict) -> None:
    lat, speed = result["latency_ms"], result["speedup_vs_torch"]
    accuracy_loss = 100 * (result["test_accuracy"] - (result["int8_test_accuracy"] or 0.0))
    section = f"""
## NEU steel surface, 6-class classification ({result['date']})

- Machine: {result['machine']}
- Command: `{result['command']}`
- Data: NEU-DET, {sum(result['images'].values())} images, {len(result['images'])} classes; seeded stratified
  60/20/20 split grouped by near-duplicate pHash ({result['test_images']} test images); trained from scratch.
- Training settings: `{json.dumps(result['training'])}`; offline augmentation copies per image: {result['augment_copies']}, plus the trainer's online flips/shifts

| figure | value | target |
| --- | --- | --- |
| test accuracy | {100 * result['test_accuracy']:.2f} % | >= 99.5 % |
| training time | {result['train_seconds']:.0f} s | <= 600 s |
| whole onboard run (ingest to registry) | {result['onboard_seconds']:.0f} s | |
| INT8 (ORT, static QDQ) test accuracy | {100 * (result['int8_test_accuracy'] or 0):.2f} % ({accuracy_loss:+.2f} pt loss) | <= 0.5 pt loss |
| false-reject rate / escape rate | n/a: NEU has no good class, every class is a defect type | |
| parity, largest probability difference | {result['parity_max_abs_diff']:.2e} | <= {report['parity']['tolerance']:.0e} (the blocking check) |

Per-image latency, batch 1, 2 threads, median of {result['latency_repeats']} runs (ratios measured in this one run):

| runtime | ms / image | speed-up vs torch eager |
| --- | --- | --- |
""" + "\n".join(f"| {name} | {lat[name]:.2f} | {speed[name]:.2f}x |" for name in lat) + "\n"
    existing = path.read_text() if path.exists() else "# Benchmarks\n\nFigures from `bench/`; each section names its machine, date and command.\n"
    path.write_text(existing.rstrip() + "\n" + section)


if __name__ == "__main__":
    raise SystemExit(main())
