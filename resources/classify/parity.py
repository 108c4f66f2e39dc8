"""Parity and latency of exported models: does each runtime reproduce torch, and how fast is it.

:func:`check_parity` compares torch with each FP32 runtime on the same uint8 images (tolerance and
its measurements: :data:`resources.classify.exporter.PARITY_TOLERANCE`); :func:`measure_latency`
times each at batch size 1, as a device runs it.
"""

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_sync.inference import ModelFormat, load_predictor, preprocess
from resources.classify.exporter import _TORCH_BATCH, FP32_FORMATS, PARITY_TOLERANCE, _eval_mode

if TYPE_CHECKING:
    import torch

__all__ = ["ParityResult", "RuntimeParity", "check_parity", "measure_latency", "predict_in_batches"]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# parity


@dataclass(frozen=True)
class RuntimeParity:
    """How closely one exported runtime reproduces torch on the same images.

    ``decision_agreement`` is the fraction of images whose predicted class matches torch's (a class
    torch scores within the tolerance of its top one counts as a match: a tie at this precision).
    ``detail`` explains a structural mismatch (e.g. another number of classes), else is empty.
    """

    format: str
    max_abs_diff: float
    decision_agreement: float
    detail: str = ""


@dataclass(frozen=True)
class ParityResult:
    """Parity of every checked runtime; ``passed`` iff all are within ``tolerance`` and agree on all."""

    runtimes: tuple[RuntimeParity, ...]
    n_images: int
    tolerance: float
    passed: bool

    def failures(self) -> tuple[RuntimeParity, ...]:
        return tuple(r for r in self.runtimes if not _runtime_passes(r, self.tolerance))

    def describe(self) -> str:
        """One line per failing runtime (or a summary when all pass), for check metadata and logs."""
        if self.passed:
            parts = ", ".join(
                f"{r.format} max |Δp| {r.max_abs_diff:.1e}" for r in self.runtimes
            )
            return (
                f"parity passed on {self.n_images} images at tolerance {self.tolerance:.0e}: {parts}"
            )
        lines = [f"parity FAILED on {self.n_images} images at tolerance {self.tolerance:.0e}:"]
        for r in self.failures():
            problems = []
            if r.detail:
                problems.append(r.detail)
            if not r.max_abs_diff <= self.tolerance:
                problems.append(f"max |Δp| {r.max_abs_diff:.3g} > {self.tolerance:.0e}")
            if r.decision_agreement != 1.0:
                differ = round((1.0 - r.decision_agreement) * self.n_images)
                problems.append(
                    f"predicted class differs from torch on {differ} of {self.n_images} images "
                    f"(agreement {r.decision_agreement:.1%})"
                )
            lines.append(f"- {r.format}: " + "; ".join(problems))
        lines.append(
            "the exported file is not the validated model: re-export from the same checkpoint, and "
            "check the runtime's precision (OpenVINO FP16/bf16) and the in-graph normalisation"
        )
        return "\n".join(lines)


def _runtime_passes(runtime: RuntimeParity, tolerance: float) -> bool:
    return runtime.max_abs_diff <= tolerance and runtime.decision_agreement == 1.0


def predict_in_batches(predictor: Any, images: np.ndarray, batch_size: int = _TORCH_BATCH) -> np.ndarray:
    """Probabilities in batches: one call on hundreds of images, at four flips each, needs gigabytes."""
    return np.concatenate([predictor.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def check_parity(
    torch_model: "torch.nn.Module",
    exported: Mapping[ModelFormat, Path],
    images: np.ndarray,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityResult:
    """Compare torch's probabilities with each exported FP32 runtime's on the same uint8 images.

    Both sides see identical input (:func:`edge_sync.inference.preprocess` of the same uint8 array),
    so any difference is the export's. INT8 entries are skipped (logged): quantisation changes
    numbers by design and is judged on accuracy instead. A runtime that cannot load raises
    :class:`~edge_sync.inference.InferenceError`; a wrong class count is a parity failure.
    """
    if not (isinstance(tolerance, float | int) and math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance: expected a finite number >= 0, got {tolerance!r}")
    checked: dict[ModelFormat, Path] = {}
    for key, path in exported.items():
        fmt = ModelFormat(key)
        if fmt in FP32_FORMATS:
            checked[fmt] = Path(path)
        else:
            logger.info("parity: skipping %s (%s); INT8 is judged on accuracy, not parity", fmt, path)
    if not checked:
        raise ValueError(
            f"check_parity: no FP32 export to compare (got {sorted(str(k) for k in exported)}); pass "
            f"at least one of {sorted(f.value for f in FP32_FORMATS)}"
        )
    batch = preprocess(images)
    if batch.shape[0] == 0:
        raise ValueError("check_parity: got 0 images; pass a few dozen validation images")
    reference = _torch_probabilities(torch_model, batch)
    top = reference.max(axis=1)
    runtimes = []
    for fmt, path in checked.items():
        predictor = load_predictor(path, fmt)
        probabilities = predict_in_batches(predictor, images)
        if probabilities.shape != reference.shape:
            runtimes.append(
                RuntimeParity(
                    format=fmt.value,
                    max_abs_diff=math.inf,
                    decision_agreement=0.0,
                    detail=f"output shape {probabilities.shape} vs torch {reference.shape}",
                )
            )
            continue
        max_abs_diff = float(np.abs(probabilities - reference).max())
        chosen = probabilities.argmax(axis=1)
        # The runtime's class agrees if torch scores it as high as its own top class, up to tolerance.
        agrees = reference[np.arange(len(chosen)), chosen] >= top - tolerance
        runtimes.append(
            RuntimeParity(
                format=fmt.value,
                max_abs_diff=max_abs_diff,
                decision_agreement=float(agrees.mean()),
            )
        )
    result = ParityResult(
        runtimes=tuple(runtimes),
        n_images=int(batch.shape[0]),
        tolerance=float(tolerance),
        passed=all(_runtime_passes(r, tolerance) for r in runtimes),
    )
    (logger.info if result.passed else logger.warning)("%s", result.describe())
    return result


def _torch_probabilities(model: "torch.nn.Module", batch: np.ndarray) -> np.ndarray:
    import torch

    outputs = []
    with _eval_mode(model), torch.inference_mode():
        for start in range(0, batch.shape[0], _TORCH_BATCH):
            chunk = torch.from_numpy(batch[start : start + _TORCH_BATCH])
            outputs.append(model(chunk).float().numpy())
    return np.concatenate(outputs)


# --------------------------------------------------------------------------------------------------
# latency


def measure_latency(
    torch_model: "torch.nn.Module",
    exported: Mapping[ModelFormat, Path],
    images: np.ndarray,
    *,
    repeats: int = 30,
    warmup: int = 5,
    num_threads: int = 2,
) -> dict[str, float]:
    """Median milliseconds per image at batch size 1, for torch eager and each exported runtime.

    Each timing covers what a device does per image: uint8 pixels in (``preprocess`` included),
    probabilities out. Runtimes are loaded before timing, with ``num_threads`` threads; torch runs
    with ``torch.set_num_threads(num_threads)``, and the caller's thread count is restored afterwards.
    Runtimes run one after another, never concurrently, so they do not compete for cores.
    """
    import torch

    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("num_threads", num_threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    preprocess(images)  # validates dtype and layout before anything is timed
    if images.shape[0] == 0:
        raise ValueError("measure_latency: got 0 images; pass at least one")
    singles = [images[i : i + 1] for i in range(images.shape[0])]

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with _eval_mode(torch_model), torch.inference_mode():

            def run_torch(image: np.ndarray) -> Any:
                return torch_model(torch.from_numpy(preprocess(image)))

            results = {"torch": _median_ms(run_torch, singles, repeats, warmup)}
    finally:
        torch.set_num_threads(previous_threads)
    for key, path in exported.items():
        fmt = ModelFormat(key)
        predictor = load_predictor(Path(path), fmt, num_threads=num_threads)
        results[fmt.value] = _median_ms(predictor.predict, singles, repeats, warmup)
        del predictor
    logger.info(
        "latency (median ms/image, batch 1, %d threads): %s",
        num_threads,
        ", ".join(f"{k} {v:.2f}" for k, v in results.items()),
    )
    return results


def _median_ms(
    run: Callable[[np.ndarray], Any], singles: list[np.ndarray], repeats: int, warmup: int
) -> float:
    for i in range(warmup):
        run(singles[i % len(singles)])
    timings = []
    for i in range(repeats):
        image = singles[i % len(singles)]
        started = time.perf_counter()
        run(image)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000.0
