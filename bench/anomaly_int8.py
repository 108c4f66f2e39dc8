"""Does the exported anomaly detector survive INT8? FP32 vs INT8 ONNX on a dataset in the MVTec layout.

PatchCore's score is a distance between a patch's features and its nearest good neighbour; for good
parts that distance is small, so feature rounding may move it by as much as a faint defect does.
Measured, not assumed: fit the detector (default settings) on ``train/good``, export it, quantise
the backbone's convolutions (static QDQ, per-channel weights, MinMax activations calibrated on 32
training images; the memory-bank search and the map smoothing stay float), keeping the first
``--float-convs`` convolutions in float as the classifier's precision search does; then score the
test images with both ONNX Runtime sessions and compare: image AUROC, relative score change, and
decisions at the threshold that rejects a given share of good test parts under FP32.

    .venv/bin/python bench/anomaly_int8.py ../shared/datasets/magnetic_tile --layout magnetic_tile --float-convs 0 4 8
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from layouts import lay_out_magnetic_tile_mvtec, machine  # noqa: E402


def _quantise(onnx_path: Path, calibration: np.ndarray, out: Path, float_convs: int) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)  # symbolic inference fails on the search
    convs = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
    pixels = calibration.transpose(0, 3, 1, 2).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(pixels)

        def get_next(self) -> dict | None:
            item = next(self.items, None)
            return None if item is None else {"images": item[None]}

    quantize_static(
        str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["Conv"], nodes_to_exclude=convs[:float_convs],
    )
    return out


def _scores(path: Path, images: np.ndarray) -> tuple[np.ndarray, float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    pixels = images.transpose(0, 3, 1, 2).astype(np.float32)
    session.run(None, {"images": pixels[:1]})
    started = time.perf_counter()
    scores = [session.run(["score"], {"images": pixels[i : i + 1]})[0] for i in range(len(pixels))]
    return np.concatenate(scores).astype(np.float64), 1000 * (time.perf_counter() - started) / len(pixels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--layout", choices=["mvtec", "magnetic_tile"], default="mvtec")
    parser.add_argument("--float-convs", type=int, nargs="+", default=[0, 4, 8])
    parser.add_argument("--good-reject-share", type=float, default=0.05,
                        help="the compared threshold rejects this share of good test parts under FP32")
    args = parser.parse_args()

    from resources.anomaly.detector import AnomalySettings, fit_detector, load_detector
    from resources.anomaly.export import export_detector
    from resources.anomaly.layout import read_mvtec_layout
    from resources.anomaly.metrics import image_auroc
    from resources.data.images import load_rgb_batch

    with tempfile.TemporaryDirectory(prefix="anomaly-int8-") as scratch_name:
        scratch = Path(scratch_name)
        root = args.dataset.resolve()
        if args.layout == "magnetic_tile":
            root = scratch / "data"
            lay_out_magnetic_tile_mvtec(args.dataset.resolve(), root, seed=0)
        settings = AnomalySettings()
        layout = read_mvtec_layout(root)
        train = load_rgb_batch(layout.train_good, settings.image_size, settings.resize)
        net = load_detector(fit_detector(train, settings).checkpoint)
        onnx_path, _ = export_detector(net, settings.image_size, scratch / "d.onnx", scratch / "d.xml")
        test = load_rgb_batch([item.path for item in layout.test], settings.image_size, settings.resize)
        is_defect = np.array([item.is_defect for item in layout.test])
        fp32, fp32_ms = _scores(onnx_path, test)
        threshold = float(np.quantile(fp32[~is_defect], 1.0 - args.good_reject_share))
        rows = [{"model": "fp32", "image_auroc": image_auroc(fp32, is_defect), "rejected": int((fp32 > threshold).sum()), "ms_per_image": fp32_ms}]
        calibration = train[np.linspace(0, len(train) - 1, 32).round().astype(int)]
        for float_convs in args.float_convs:
            int8_path = _quantise(onnx_path, calibration, scratch / f"int8-{float_convs}.onnx", float_convs)
            int8, int8_ms = _scores(int8_path, test)
            rows.append({
                "model": f"int8, first {float_convs} convs float",
                "image_auroc": image_auroc(int8, is_defect),
                "median_relative_score_change": float(np.median(np.abs(int8 - fp32) / np.abs(fp32))),
                "decisions_differing": int(((int8 > threshold) != (fp32 > threshold)).sum()),
                "rejected": int((int8 > threshold).sum()),
                "ms_per_image": int8_ms,
            })
    result = {"machine": machine(), "n_train": len(train), "n_test": len(test), "threshold_good_reject_share": args.good_reject_share, "rows": rows}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
