"""Onboard a real folder-per-class dataset with `mfgv onboard`, as a new user would, once per seed.

The dataset is laid out as one folder per class in a scratch folder (NEU: class = file-name
prefix; magnetic tile: the JPEGs of each MT_* folder, masks left out; folders: used as is), and
each seed runs `mfgv onboard` in a fresh MFG_HOME with the default recipe plus any flags given
after `--`. The seed changes the split, the initial head and the sampling, so the spread over
seeds is the honest error bar. Per run and as medians: test accuracy, false-reject and escape
rates at the calibrated threshold, INT8 accuracy, training and whole-onboard seconds.

    .venv/bin/python bench/onboard_benchmark.py ../shared/datasets/magnetic_tile --layout magnetic_tile \\
        --good-class MT_Free --seeds 0 1 2 --write BENCHMARKS.md
    .venv/bin/python bench/onboard_benchmark.py ../shared/datasets/neu_det --layout neu --seeds 0 1 2 --write BENCHMARKS.md
    .venv/bin/python bench/onboard_benchmark.py DATA --good-class good --seeds 0 -- --hpo-minutes 30 --cv-folds 5
"""

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from layouts import append_markdown, lay_out_magnetic_tile, lay_out_neu, machine  # noqa: E402

LAYOUTS = {"folders": None, "neu": lay_out_neu, "magnetic_tile": lay_out_magnetic_tile}


def run_onboard(command: list[str], home: Path, log: Path, seed: int) -> tuple[subprocess.CompletedProcess, float]:
    """Run an `mfgv onboard` command line with ``MFG_HOME=home`` (no inherited DAGSTER_HOME), keep its
    output in ``log``, stop the benchmark if it failed; returns the process and its wall seconds."""
    env = {**os.environ, "MFG_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"seed {seed}: mfgv onboard exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done, wall


def run_once(data: Path, seed: int, good_class: str | None, extra: list[str], scratch: Path) -> dict:
    home = scratch / f"home-{seed}"
    report_path = scratch / f"report-{seed}.json"
    command = [
        str(REPO / ".venv" / "bin" / "mfgv"), "onboard", str(data), "--line", "bench", "--variant", f"seed{seed}",
        "--seed", str(seed), "--report-json", str(report_path), "--min-accuracy", "0", "--max-test-escape-rate", "1", "--force",
        *(["--good-class", good_class] if good_class else []), *extra,
    ]
    _done, wall = run_onboard(command, home, scratch / f"log-{seed}.txt", seed)
    report = json.loads(report_path.read_text())
    test = report["test"]
    run = {
        "seed": seed,
        "test_accuracy": test["accuracy"],
        "false_reject_rate": test["false_reject_rate"],
        "escape_rate": test["escape_rate"],
        "int8_test_accuracy": report["int8_test_accuracy"],
        "int8_drop_pt": (
            None
            if report.get("int8_test_accuracy") is None
            else round(100 * (report["test"]["accuracy"] - report["int8_test_accuracy"]), 2)
        ),
        "train_seconds": report["train_seconds"],
        "onboard_seconds": round(wall, 1),
        "test_images": test["n_images"],
        "image_size": report["training"]["image_size"],
        "backbone": (report.get("backbone") or {}).get("name", report["training"]["arch"]),
        "epochs": report["training"]["settings"]["epochs"],
        "latency_ms": report["latency_ms"],
        "int8_float_convs": (report.get("int8") or {}).get("float_convs"),
        "recall": {name: row["recall"] for name, row in test["per_class"].items()},
        "grouping": {k: (report.get("grouping") or {}).get(k) for k in ("group_by", "largest_group", "splits")},
    }
    if "cv" in report:
        run["cv"] = {k: report["cv"][k] for k in ("folds", "accuracy_mean", "accuracy_std", "false_reject_rate_mean")}
    if "hpo" in report:
        run["hpo"] = {k: report["hpo"][k] for k in ("best_params", "best_value", "seconds")}
        run["hpo"]["n_trials"] = len(report["hpo"]["trials"])
    print(json.dumps(run), flush=True)
    return run


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _pt(value: float | None) -> str:
    return "n/a" if value is None else f"-{value:.2f} pt" if value >= 0 else f"+{-value:.2f} pt"


def _int(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown(title: str, result: dict) -> str:
    runs = result["runs"]
    head = (
        "| seed | test accuracy | FRR at threshold | escape rate | INT8 accuracy (drop vs FP32) | INT8 float convs "
        "| ms/image ONNX / INT8 | training s | whole onboard s |"
    )
    rows = [
        f"| {r['seed']} | {_pct(r['test_accuracy'])} | {_pct(r['false_reject_rate'])} | {_pct(r['escape_rate'])} | "
        f"{_pct(r['int8_test_accuracy'])} ({_pt(r['int8_drop_pt'])}) | {_int(r.get('int8_float_convs'))} | "
        f"{_ms(r['latency_ms'].get('onnx'))} / {_ms(r['latency_ms'].get('onnx_int8'))} | "
        f"{r['train_seconds']:.0f} | {r['onboard_seconds']:.0f} |"
        for r in runs
    ]
    med = result["median"]
    rows.append(
        f"| **median** | **{_pct(med['test_accuracy'])}** | **{_pct(med['false_reject_rate'])}** | "
        f"**{_pct(med['escape_rate'])}** | **{_pct(med['int8_test_accuracy'])} ({_pt(med['int8_drop_pt'])})** | | | "
        f"**{med['train_seconds']:.0f}** | "
        f"**{med['onboard_seconds']:.0f}** |"
    )
    first = runs[0]
    return f"""
## {title} ({result['date']})

- Machine: {result['machine']}
- Command: `{result['command']}`
- Data: {result['n_images']} images ({', '.join(f'{k} {v}' for k, v in result['images'].items())}){'; good class `' + result['good_class'] + '`' if result['good_class'] else ''};
  seeded stratified 60/20/20 split, each part's images in one split (grouped by {first['grouping'].get('group_by') or 'near-duplicate pHash'}; {first['test_images']} test images), one split per seed.
- Recipe: `mfgv onboard` defaults{(' plus `' + ' '.join(result['extra']) + '`') if result['extra'] else ''}: {first['backbone']} at {first['image_size']} px
  (chosen from the data), {first['epochs']} epochs. FRR and escape rate at the threshold calibrated on validation (zero escapes there).

{head}
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
""" + "\n".join(rows) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="folders")
    parser.add_argument("--good-class", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--title", default=None, help="section title in BENCHMARKS.md")
    parser.add_argument("--write", type=Path, default=None, help="append the figures to this Markdown file")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (homes, logs, reports) and print it")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1 :]  # flags for mfgv onboard, after --

    scratch = Path(tempfile.mkdtemp(prefix="onboard-bench-"))
    data = scratch / "data"
    lay_out = LAYOUTS[args.layout]
    if lay_out is None:
        data = args.dataset.resolve()
        images = {p.name: sum(1 for f in p.rglob("*") if f.is_file()) for p in sorted(data.iterdir()) if p.is_dir()}
    else:
        images = lay_out(args.dataset.resolve(), data)
    runs = [run_once(data, seed, args.good_class, args.extra, scratch) for seed in args.seeds]
    keys = ("test_accuracy", "false_reject_rate", "escape_rate", "int8_test_accuracy", "int8_drop_pt", "train_seconds", "onboard_seconds")
    result = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "command": shlex.join([".venv/bin/python", "bench/onboard_benchmark.py", *sys.argv[1:]]),
        "images": images,
        "n_images": sum(images.values()),
        "good_class": args.good_class,
        "extra": args.extra,
        "runs": runs,
        "median": {key: _median(runs, key) for key in keys},
    }
    print(json.dumps(result["median"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.write:
        title = args.title or f"{args.dataset.name} through `mfgv onboard`"
        append_markdown(args.write, markdown(title, result))
    if args.keep:
        print(f"kept {scratch}", flush=True)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
