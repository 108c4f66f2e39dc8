"""The validation report's plots and thumbnails, as PNG data URIs (matplotlib's Agg canvas, no pyplot).

Drawn with matplotlib's object-oriented API on an explicit Agg canvas, never through ``pyplot``: no
display is needed, no global figure state is touched, and the import happens only when a report is
rendered so that loading the Dagster definitions stays light.
"""

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from resources.reporting.format import num as _num

__all__ = ["confusion_png", "histogram_png", "roc_png", "thumbnail_uri", "training_png"]

_THUMB_SIDE = 160  # px, longer side of a gallery thumbnail

# formatting


def _mpl_text(text: Any, max_chars: int = 0) -> str:
    """Keep matplotlib from reading ``$...$`` in a class name as mathtext; optionally shorten it.

    Plot labels are shortened so a long class name cannot squeeze the plot; tables keep the full name.
    """
    value = str(text)
    if max_chars and len(value) > max_chars:
        value = value[: max_chars - 1] + "…"
    return value.replace("$", r"\$")


# --------------------------------------------------------------------------------------------
# images


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _figure_uri(fig: Any) -> str:
    buf = io.BytesIO()
    # No Software tag: it would carry matplotlib's web address into the file.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_uri(image: np.ndarray, position: int) -> str:
    """Encode one gallery image as a PNG data URI, scaled so its longer side is ``_THUMB_SIDE``.

    Small inspection crops are enlarged with nearest-neighbour so that pixels stay sharp
    (a defect may be a few pixels wide); large images are reduced with a smoothing filter.
    """
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"gallery_images[{position}] must be uint8, got {arr.dtype}; convert it before rendering")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or min(arr.shape[:2]) == 0:
        raise ValueError(f"gallery_images[{position}] must be HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr))
    h, w = arr.shape[:2]
    scale = _THUMB_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    img = img.resize(size, resample)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------------------------
# plots


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> str:
    cm = np.asarray(matrix, dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"{title}: confusion_matrix has shape {cm.shape} but there are {k} classes {list(classes)}")
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, row_sums, out=np.zeros(cm.shape, dtype=np.float64), where=row_sums > 0)

    side = min(12.0, 2.5 + 0.55 * k)
    fig = _new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    labels = [_mpl_text(c, 24) for c in classes]
    tilt = k > 3 or max(len(label) for label in labels) > 8
    ax.set_xticks(range(k), labels, rotation=40 if tilt else 0, ha="right" if tilt else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(_mpl_text(title))
    if k <= 25:
        size = max(6, 12 - k // 3)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=size,
                        color="white" if share[i, j] > 0.5 else "#1d2329")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class's images")
    return _figure_uri(fig)


def roc_png(roc: Mapping[str, Any], operating_point: tuple[float, float] | None, threshold: Any,
             title: str) -> str:
    fig = _new_figure(5.2, 4.6)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#9aa5b1", linewidth=1, label="chance")
    ax.plot(roc["fpr"], roc["tpr"], color="#1565c0", linewidth=2, label=f"ROC (AUC = {float(roc['auc']):.3f})")
    if operating_point is not None:
        fpr, tpr = operating_point
        ax.plot([fpr], [tpr], marker="o", markersize=9, color="#c62828", linestyle="none",
                label=f"operating point (threshold {_num(threshold)})")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-reject rate (good parts rejected)")
    ax.set_ylabel("defects caught (1 − escape rate)")
    ax.set_title(_mpl_text(f"{title}: ROC, AUC = {float(roc['auc']):.3f}"))
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return _figure_uri(fig)


def histogram_png(
    scores: np.ndarray, is_defect: np.ndarray, threshold: float | None, title: str, score_label: str = "defect score (1 − P(good))"
) -> str:
    """Good and defective images' scores with the threshold; ``score_label`` says what the score is
    (a classifier's 1 − P(good), an anomaly detector's own distance score)."""
    lo = float(scores.min())
    hi = float(scores.max())
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if 0.0 <= lo and hi <= 1.0:  # probability-based scores: show the whole scale
        lo, hi = 0.0, 1.0
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, 31)

    fig = _new_figure(6.0, 3.8)
    ax = fig.add_subplot()
    good = scores[~is_defect]
    bad = scores[is_defect]
    if good.size:
        ax.hist(good, bins=edges, color="#2e7d32", alpha=0.55, label=f"good ({good.size})")
    if bad.size:
        ax.hist(bad, bins=edges, color="#c62828", alpha=0.55, label=f"defective ({bad.size})")
    if threshold is not None:
        ax.axvline(threshold, color="#1d2329", linestyle="--", linewidth=1.5,
                   label=f"threshold {_num(threshold)} (reject ≥)")
    ax.set_xlabel(score_label)
    ax.set_ylabel("images")
    ax.set_title(_mpl_text(f"{title}: defect scores"))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _figure_uri(fig)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(h[key]) if h.get(key) is not None else np.nan for h in history], dtype=np.float64)


def training_png(history: Sequence[Mapping[str, Any]]) -> str:
    epochs = np.array([h.get("epoch", i + 1) for i, h in enumerate(history)], dtype=np.float64)
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(9.5, 3.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for key, color in (("train_loss", "#1565c0"), ("val_loss", "#ef6c00")):
        values = _series(history, key)
        if np.any(np.isfinite(values)):
            ax_loss.plot(epochs, values, marker="o", color=color, label=key.replace("_", " "))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss per epoch")
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    acc = _series(history, "val_accuracy")
    if np.any(np.isfinite(acc)):
        ax_acc.plot(epochs, acc, marker="o", color="#2e7d32", label="val accuracy")
        ax_acc.legend(fontsize=8)
    ax_acc.set_ylim(-0.02, 1.02)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("validation accuracy per epoch")
    ax_acc.grid(alpha=0.3)
    return _figure_uri(fig)


# --------------------------------------------------------------------------------------------
