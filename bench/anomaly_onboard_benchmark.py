"""`mfgv onboard --task anomaly --format mvtec` on a dataset in the MVTec AD layout, as a new user
would run it, once per seed, each in a fresh MFG_HOME.

Magnetic tile is laid out as MVTec first (``--layout magnetic_tile``: ``bench/layouts``); any
MVTec-layout folder is used as is (``--layout mvtec``). The graph re-splits the good images itself
(a seeded 60/20/20 split grouped by near-duplicates) and sends every defect image to validation or
test, so the threshold is calibrated on validation and every figure is measured on test once. Per
run and as medians: image AUROC, pixel AUROC, PRO, false-reject and escape rates at the calibrated
threshold and its rule, fit and whole-onboard seconds, the onboard process's peak RSS, ms/image.

    .venv/bin/python bench/anomaly_onboard_benchmark.py ../shared/datasets/magnetic_tile --layout magnetic_tile \\
        --seeds 0 1 2 --write BENCHMARKS.md
"""

import argparse
import datetime as dt
import json
import shlex
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from layouts import append_markdown, lay_out_magnetic_tile_mvtec, machine  # noqa: E402
from onboard_benchmark import run_onboard  # noqa: E402

KEYS = ("image_auroc", "pixel_auroc", "pro", "false_reject_rate", "escape_rate", "fit_seconds", "onboard_seconds", "peak_rss_mb")


def run_once(data: Path, seed: int, extra: list[str], scratch: Path, home: Path | None) -> dict:
    home, report_path = home or scratch / f"home-{seed}", scratch / f"report-{seed}.json"
    command = [
        "/usr/bin/time", "-f", "peak_rss_kb=%M", str(REPO / ".venv" / "bin" / "mfgv"), "onboard", str(data),
        "--task", "anomaly", "--format", "mvtec", "--line", "bench", "--variant", f"seed{seed}", "--seed", str(seed),
        "--report-json", str(report_path), "--min-accuracy", "0", "--max-test-escape-rate", "1", "--force", *extra,
    ]
    done, wall = run_onboard(command, home, scratch / f"log-{seed}.txt", seed)
    peak_kb = next(int(line.split("=")[1]) for line in done.stderr.splitlines() if line.startswith("peak_rss_kb="))
    report = json.loads(report_path.read_text())
    test = report["test"]
    run = {
        "seed": seed,
        **{key: test[key] for key in ("image_auroc", "pixel_auroc", "pro", "false_reject_rate", "escape_rate")},
        "threshold_rule": report["threshold_rule"],
        "test_good": test["n_images"] - sum(t["n"] for t in test["per_type"].values()),
        "test_defect": sum(t["n"] for t in test["per_type"].values()),
        "per_type_auroc": {name: row["image_auroc"] for name, row in test["per_type"].items()},
        "fit_seconds": report["train_seconds"],
        "onboard_seconds": round(wall, 1),
        "peak_rss_mb": round(peak_kb / 1024),
        "latency_ms": report["latency_ms"],
        "settings": report["training"]["settings"],
        "init": report["training"].get("init") or {},
        "grouping": {k: (report.get("grouping") or {}).get(k) for k in ("group_by", "largest_group", "splits")},
    }
    print(json.dumps({k: v for k, v in run.items() if k not in ("settings", "init")}), flush=True)
    return run


def _f(value: float | None, pct: bool = False) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %" if pct else f"{value:.3f}"


def markdown(title: str, result: dict) -> str:
    runs, med = result["runs"], result["median"]
    rows = [
        f"| {r['seed']} | {_f(r['image_auroc'])} | {_f(r['pixel_auroc'])} | {_f(r['pro'])} | {_f(r['false_reject_rate'], True)} | "
        f"{_f(r['escape_rate'], True)} | {r['threshold_rule']} | {r['fit_seconds']:.0f} | {r['onboard_seconds']:.0f} | "
        f"{r['peak_rss_mb']} | {r['latency_ms']['torch']:.1f} / {r['latency_ms']['onnx']:.1f} / {r['latency_ms']['openvino']:.1f} |"
        for r in runs
    ]
    rows.append(
        f"| **median** | **{_f(med['image_auroc'])}** | **{_f(med['pixel_auroc'])}** | **{_f(med['pro'])}** | "
        f"**{_f(med['false_reject_rate'], True)}** | **{_f(med['escape_rate'], True)}** | | **{med['fit_seconds']:.0f}** | "
        f"**{med['onboard_seconds']:.0f}** | **{med['peak_rss_mb']:.0f}** | |"
    )
    first = runs[0]
    settings = first["settings"]
    init = first["init"]
    features = {
        "weights_file": f"{settings['arch']} from the local file {init.get('file')}",
        "registered_model": f"the body of the registered classifier {settings['arch']} (checkpoint sha256 {str(init.get('checkpoint_sha256'))[:12]}…)",
    }.get(init.get("source"), settings["backbone"])
    return f"""
## {title} ({result['date']})

- Machine: {result['machine']}
- Command: `{result['command']}`
- Data: {result['n_images']} images ({', '.join(f'{k} {v}' for k, v in result['images'].items())}); the graph's seeded
  60/20/20 split of the good images grouped by near-duplicate pHash, every defect image to validation or test
  ({first['test_good']} good and {first['test_defect']} defective test images).
- Detector: `mfgv onboard --task anomaly` defaults{(' plus `' + ' '.join(result['extra']) + '`') if result['extra'] else ''}:
  PatchCore on {features} stages {settings['feature_levels']} at {settings['image_size']} px ({settings['resize']}).
  FRR and escape rate on test at the threshold calibrated on validation (rule per run).

| seed | image AUROC | pixel AUROC | PRO | FRR at threshold | escape rate | rule | fit s | whole onboard s | peak RSS MB | ms/image torch / ONNX / OpenVINO |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--layout", choices=["mvtec", "magnetic_tile"], default="mvtec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--title", default=None, help="section title in BENCHMARKS.md")
    parser.add_argument("--write", type=Path, default=None, help="append the figures to this Markdown file")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    parser.add_argument("--home", type=Path, default=None,
                        help="one MFG_HOME for every seed (e.g. where the classifier for --init-from is registered); "
                             "default: a fresh one per seed")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # flags for mfgv onboard, after --

    scratch = Path(tempfile.mkdtemp(prefix="anomaly-onboard-bench-"))
    try:
        data = args.dataset.resolve()
        if args.layout == "magnetic_tile":
            data = scratch / "data"
            lay_out_magnetic_tile_mvtec(args.dataset.resolve(), data, seed=0)
        images: dict[str, int] = {}
        for path in sorted(p for p in data.rglob("*") if p.is_file() and "ground_truth" not in p.parts):
            key = "good" if path.parent.name == "good" else path.parent.name
            images[key] = images.get(key, 0) + 1
        runs = [run_once(data, seed, extra, scratch, args.home.resolve() if args.home else None) for seed in args.seeds]
        result = {
            "date": dt.date.today().isoformat(),
            "machine": machine(),
            "command": shlex.join([".venv/bin/python", "bench/anomaly_onboard_benchmark.py", *sys.argv[1:]]),
            "images": images,
            "n_images": sum(images.values()),
            "extra": extra,
            "runs": runs,
            "median": {k: statistics.median(r[k] for r in runs if r[k] is not None) if any(r[k] is not None for r in runs) else None for k in KEYS},
        }
        print(json.dumps(result["median"], indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        if args.write:
            title = args.title or f"{args.dataset.name}: anomaly detection through `mfgv onboard`"
            append_markdown(args.write, markdown(title, result))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
