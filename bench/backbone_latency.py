"""Per-image latency of the bundled backbones in torch, ONNX Runtime, OpenVINO and INT8, in one run.

Each catalogued backbone is loaded with a 6-class head, wrapped as the trainer deploys it
(normalisation and softmax inside) but with one forward pass: the default deployed graph averages
the image and its three flips, about four times this (the onboard benchmarks time that graph), exported with the platform's exporter (ONNX, OpenVINO FP32,
static QDQ INT8 calibrated on 32 generated sample-line images) and timed at batch 1 with 2 threads
by ``resources.classify.parity.measure_latency`` (median of the repeats). ``--int8-float-convs 8 16``
also times INT8 models whose first 8 or 16 convolutions stay in float, as the export's INT8 precision
search (``resources.classify.int8_precision``) keeps them for low-contrast data. Ratios are within one run, all
runtimes one after another on the same machine. Accuracy is not measured here (untrained heads):
the INT8 accuracy loss comes from the onboard benchmarks, which export the trained models.

    .venv/bin/python bench/backbone_latency.py --size 224 --repeats 100 --write BENCHMARKS.md
"""

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from layouts import append_markdown, machine  # noqa: E402


def calibration_images(size: int, folder: Path):
    import numpy as np

    from resources.data.sample_line import generate_sample_line
    from resources.data.images import load_rgb

    generate_sample_line(folder, seed=11, images_per_class=8, image_size=max(64, size))
    files = sorted(folder.rglob("*.png"))
    return np.stack([load_rgb(f, size, "letterbox") for f in files])


def measure(name: str, size: int, images, repeats: int, out: Path, float_convs: list[int]) -> dict:
    from resources.models.backbones import get_spec, load_backbone
    from resources.classify.model import _inference_module_class
    from resources.classify.exporter import ExportFormat, export_onnx, export_openvino, quantize_onnx_int8
    from resources.classify.parity import measure_latency

    spec = get_spec(name)
    net, _ = load_backbone(name, num_classes=6)
    model = _inference_module_class()(net, [255 * m for m in spec.mean], [255 * s for s in spec.std]).eval()
    onnx_path = export_onnx(model, size, out / f"{name}.onnx")
    exported = {
        ExportFormat.ONNX: onnx_path,
        ExportFormat.OPENVINO: export_openvino(onnx_path, out / name / "model.xml"),
        ExportFormat.ONNX_INT8: quantize_onnx_int8(onnx_path, images, out / f"{name}_int8.onnx"),
    }
    latency = measure_latency(model, exported, images[:16], repeats=repeats)
    for k in float_convs:
        partly = quantize_onnx_int8(onnx_path, images, out / f"{name}_int8_float{k}.onnx", float_convs=k)
        latency[f"onnx_int8_float{k}"] = measure_latency(
            model, {ExportFormat.ONNX_INT8: partly}, images[:16], repeats=repeats
        )["onnx_int8"]
    params = sum(p.numel() for p in net.parameters())
    return {"backbone": name, "size": size, "params_m": round(params / 1e6, 2), "latency_ms": latency}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--backbones", nargs="+", default=None)
    parser.add_argument("--write", type=Path, default=None)
    parser.add_argument("--int8-float-convs", type=int, nargs="*", default=[], help="also time INT8 with these many leading convolutions in float")
    args = parser.parse_args()
    from resources.models.backbones import backbone_names

    with tempfile.TemporaryDirectory(prefix="backbone-latency-") as tmp:
        images = calibration_images(args.size, Path(tmp) / "line")
        rows = [measure(name, args.size, images, args.repeats, Path(tmp), args.int8_float_convs) for name in (args.backbones or backbone_names())]
    result = {
        "date": dt.date.today().isoformat(),
        "machine": machine(),
        "command": " ".join([".venv/bin/python", "bench/backbone_latency.py", *sys.argv[1:]]),
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    if args.write:
        lines = [
            f"\n## Bundled backbones: per-image latency by runtime ({result['date']})\n",
            f"- Machine: {result['machine']}",
            f"- Command: `{result['command']}`",
            f"- Batch 1, 2 threads, {args.size} px, median of {args.repeats} runs; every runtime of a row measured in the "
            "same run, one after another. INT8: ONNX Runtime static QDQ, per-channel weights.\n",
            "| backbone | params (M) | torch ms | ONNX Runtime ms | OpenVINO ms | INT8 ms | ONNX / torch | OpenVINO / torch | INT8 / torch |"
            + "".join(f" INT8, {k} float convs: ms (vs ONNX) |" for k in args.int8_float_convs),
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + " --- |" * len(args.int8_float_convs),
        ]
        for row in rows:
            lat = row["latency_ms"]
            t = lat["torch"]
            lines.append(
                f"| {row['backbone']} | {row['params_m']} | {t:.2f} | {lat['onnx']:.2f} | {lat['openvino']:.2f} | "
                f"{lat['onnx_int8']:.2f} | {t / lat['onnx']:.2f}x faster | {t / lat['openvino']:.2f}x faster | "
                f"{t / lat['onnx_int8']:.2f}x faster |"
                + "".join(
                    f" {lat[f'onnx_int8_float{k}']:.2f} ({lat['onnx'] / lat[f'onnx_int8_float{k}']:.2f}x) |"
                    for k in args.int8_float_convs
                )
            )
        append_markdown(args.write, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
