"""Choose how much of a classifier stays in float so its INT8 model decides like the FP32 one.

Why: post-training INT8 quantises each activation tensor with one scale. On low-contrast line images
(dark tiles, faint cracks) the early, high-resolution layers carry a signal a few quantisation steps
tall next to strong edges (the part's outline, the letterbox border) that set the tensor's range;
rounding them away changed a magnetic-tile model's probabilities by 0.17 on average and its test
accuracy by 0.4 to 3.4 pt, while quantising everything after the first few blocks changed them by
0.01. Where that happens depends on the data and the backbone, so it is measured, not assumed:
:func:`quantize_within_tolerance` quantises with the first 0, 1, 2, 4, 8, ... convolutions kept in
float and takes the first model whose decisions on held-out images (validation, never test) match
the FP32 model's on all but ``max_disagreement`` of them. The decision is the device's: the top
class and, when the model has a good class and a threshold, pass or reject
(``edge_sync.agent.inspector.decide``). Float convolutions cost speed (the early layers are a large
share of the compute), hence the smallest prefix that holds; the record says what was tried.
"""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resources.classify.exporter import ExportError, prepare_for_quantisation, quantize_onnx_int8
from resources.classify.parity import predict_in_batches
from resources.storage.scratch import scratch_dir
from resources.export_limits import INT8_MAX_DISAGREEMENT

__all__ = [
    "INT8_MAX_DISAGREEMENT",
    "Int8Choice",
    "Int8Try",
    "count_convolutions",
    "decisions",
    "quantize_within_tolerance",
]

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Int8Try:
    """One quantisation tried: how many leading convolutions stayed in float and how it decided."""

    float_convs: int
    disagreement: float  # fraction of held-out images whose decision differs from FP32
    mean_abs_diff: float  # mean over images of the summed |p_int8 - p_fp32|


@dataclass(frozen=True)
class Int8Choice:
    """The INT8 model written and why: the tries in order, the chosen one last among those that held."""

    path: Path
    float_convs: int
    total_convs: int
    disagreement: float
    max_disagreement: float
    n_holdout: int
    tries: tuple[Int8Try, ...]
    holdout: str = "val"  # which images the decisions were compared on: "val", or "calibration" when no validation
    pre_process: str = ""  # what quant_pre_process did (BatchNorm folded, or why the raw graph was quantised)
    bn_folded: bool = True  # False: quant_pre_process failed and BatchNorm was quantised on its own

    @property
    def within_tolerance(self) -> bool:
        return self.disagreement <= self.max_disagreement + 1e-12

    def summary(self) -> dict[str, object]:
        """What lineage, the manifest and the report keep about the choice."""
        return {
            "float_convs": self.float_convs,
            "total_convs": self.total_convs,
            "holdout_disagreement": self.disagreement,
            "max_disagreement": self.max_disagreement,
            "n_holdout": self.n_holdout,
            "holdout": self.holdout,
            "within_tolerance": self.within_tolerance,
            "pre_process": self.pre_process,
            "bn_folded": self.bn_folded,
            "tries": [
                {"float_convs": t.float_convs, "disagreement": t.disagreement, "mean_abs_diff": t.mean_abs_diff}
                for t in self.tries
            ],
        }


def decisions(probabilities: np.ndarray, good_index: int | None, threshold: float | None) -> np.ndarray:
    """The device's decision per image as one integer: top class, and pass/reject when there is a threshold."""
    top = probabilities.argmax(axis=1)
    if good_index is None or threshold is None:
        return top
    reject = (1.0 - probabilities[:, good_index]) >= threshold
    return top * 2 + reject.astype(np.int64)


def count_convolutions(onnx_path: Path) -> int:
    """How many Conv nodes the graph has: the most that :func:`quantize_within_tolerance` keeps in float."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(node.op_type == "Conv" for node in graph.node)


def quantize_within_tolerance(
    onnx_path: Path,
    calibration_images: np.ndarray,
    holdout_images: np.ndarray,
    out_path: Path,
    *,
    good_index: int | None = None,
    threshold: float | None = None,
    max_disagreement: float = INT8_MAX_DISAGREEMENT,
    max_float_fraction: float = 0.5,
    holdout: str = "val",
) -> Int8Choice:
    """Write the INT8 model with the fewest leading float convolutions that decides like FP32.

    Tries 0, 1, 2, 4, 8, ... float convolutions, up to ``max_float_fraction`` of them; stops at the
    first whose decisions on ``holdout_images`` differ from FP32's on at most ``max_disagreement`` of
    them. When none does, keeps the try that differs least (fewer float convolutions on a tie): the
    caller's accuracy check then says what INT8 costs. A try that fails to quantise stops the export
    with its error rather than falling back: it means the graph is not what the exporter wrote.
    ``holdout`` names the images in the record ("val", or "calibration" when no validation exists).
    """
    from edge_sync.inference import ModelFormat, load_predictor

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not 0.0 <= max_disagreement < 1.0:
        raise ExportError(f"max_disagreement: expected a fraction in [0, 1), got {max_disagreement!r}")
    if len(holdout_images) == 0:
        raise ExportError(
            f"held-out images for {onnx_path}: got none; pass the validation images, which the INT8 model "
            "is compared against FP32 on"
        )
    total = count_convolutions(onnx_path)
    reference = predict_in_batches(load_predictor(onnx_path, ModelFormat.ONNX), holdout_images)
    expected = decisions(reference, good_index, threshold)
    tries: list[Int8Try] = []
    best: tuple[Int8Try, Path] | None = None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with scratch_dir(out_path.parent, "int8") as work:
        # Once for every try: the folded graph does not depend on how much of it stays in float.
        prepared, pre_process = prepare_for_quantisation(onnx_path, work / "prepared.onnx")
        for float_convs in _prefixes(total, max_float_fraction):
            try:
                candidate = quantize_onnx_int8(
                    prepared, calibration_images, work / f"float{float_convs}.onnx", float_convs=float_convs,
                    pre_process=False,
                )
            except ExportError as exc:  # it names the prepared copy, which goes with the scratch folder
                raise ExportError(f"{onnx_path} (as prepared for quantisation): {exc}") from exc
            probs = predict_in_batches(load_predictor(candidate, ModelFormat.ONNX_INT8), holdout_images)
            tried = Int8Try(
                float_convs=float_convs,
                disagreement=float((decisions(probs, good_index, threshold) != expected).mean()),
                mean_abs_diff=float(np.abs(probs - reference).sum(axis=1).mean()),
            )
            tries.append(tried)
            logger.info(
                "INT8 with the first %d of %d convolutions in float: decisions differ from FP32 on %.2f %% of "
                "%d held-out images (mean |Δp| %.4f)",
                float_convs, total, 100 * tried.disagreement, len(holdout_images), tried.mean_abs_diff,
            )
            if best is None or tried.disagreement < best[0].disagreement:
                best = (tried, candidate)
            if tried.disagreement <= max_disagreement + 1e-12:
                break
        assert best is not None  # _prefixes always yields 0
        chosen, chosen_path = best
        os.replace(chosen_path, out_path)  # same folder tree: a reader never sees half a model
    if chosen.disagreement > max_disagreement + 1e-12:
        logger.warning(
            "no INT8 model of %s decides like FP32 on all but %.2f %% of the held-out images; the closest "
            "(first %d convolutions in float) differs on %.2f %%: deploy with --format onnx or openvino, or raise "
            "ExportConfig.int8_max_disagreement",
            onnx_path, 100 * max_disagreement, chosen.float_convs, 100 * chosen.disagreement,
        )
    return Int8Choice(
        path=out_path,
        float_convs=chosen.float_convs,
        total_convs=total,
        disagreement=chosen.disagreement,
        max_disagreement=max_disagreement,
        n_holdout=len(holdout_images),
        tries=tuple(tries),
        holdout=holdout,
        pre_process=pre_process,
        bn_folded=prepared != Path(onnx_path),
    )


def _prefixes(total: int, max_float_fraction: float) -> Sequence[int]:
    """0, 1, 2, 4, 8, ... up to ``max_float_fraction`` of ``total`` convolutions."""
    cap = int(total * max_float_fraction)
    steps = [0]
    k = 1
    while k <= cap:
        steps.append(k)
        k *= 2
    return steps

