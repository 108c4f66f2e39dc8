"""The validation report as one self-contained HTML file, rendered from a Jinja2 template.

The report is read by people who decide whether a model goes to a production line, often on a
plant PC without internet, and it is stored as an artifact that must still render years later.
So the file carries everything itself: inline CSS, plots and thumbnails as base64 PNG data URIs,
no scripts, no web fonts, and a Content-Security-Policy that forbids loading anything else.
The page is ``templates/report.html.j2`` with autoescaping on, so every text from the report
(class names, versions, notes, which come from annotation tools and people) is escaped by the
template engine rather than by hand; this module prepares the plots and the rows.

Plots are drawn with matplotlib's object-oriented API on an explicit Agg canvas, never through
``pyplot``: no display is needed, no global figure state is touched, and the import happens only
when a report is rendered so that loading the Dagster definitions stays light.
"""

import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resources.reporting.format import interval_text, pct_with_interval, png_uri
from resources.reporting.format import num as _num
from resources.reporting.format import pct as _pct
from resources.reporting.plots import confusion_png, histogram_png, roc_png, thumbnail_uri, training_png

__all__ = ["render_report_html"]

logger = logging.getLogger(__name__)

_MAX_HISTORY_ROWS = 60  # beyond this the training table is left out; the plot still shows all epochs
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLOT_TITLES = {
    "optimization_history": "optimisation history",
    "intermediate_values": "validation loss per epoch, what pruning compares (pruned trials stop early)",
    "param_importances": "parameter importances",
}
_THRESHOLD_LABELS = {
    "threshold": "threshold (reject when score ≥)",
    "max_escape_rate": "escape-rate target",
    "escape_rate": "escape rate on validation",
    "false_reject_rate": "false-reject rate on validation",
    "n_good": "good images (validation)",
    "n_defect": "defective images (validation)",
    "method": "method",
}
_DECISION_ROWS = (
    ("threshold", "threshold"), ("n_good", "good images"), ("n_defect", "defective images"),
    ("n_good_groups", "near-duplicate groups of the good images"),
    ("n_good_effective", "independent good parts the intervals count"),
    ("n_defect_groups", "near-duplicate groups of the defective images"),
    ("n_defect_effective", "independent defective parts the intervals count"),
    ("false_rejects", "good parts rejected"), ("escapes", "defective parts passed"),
    ("rejected", "parts rejected"), ("false_reject_rate", "false-reject rate"),
    ("false_reject_rate_ci95", "false-reject rate, 95 % CI"), ("escape_rate", "escape rate"),
    ("escape_rate_ci95", "escape rate, 95 % CI"),
)
_FOLD_KEYS = ("fold", "n_train", "n_select", "n_held_out", "accuracy", "false_reject_rate", "escape_rate", "best_epoch", "seconds")
_HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_accuracy", "seconds")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0 auto; max-width: 1100px; padding: 1.5em; color: #1d2329; background: #fff;
       line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #dde3ea; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.sub { color: #5b6670; margin-top: 0; }
.summary { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 0.6em;
           background: #f4f7fa; border: 1px solid #dde3ea; border-radius: 6px; padding: 1em; }
.summary div { padding: 0.2em 0.4em; }
.summary .k { display: block; font-size: 0.8em; color: #5b6670; text-transform: uppercase;
              letter-spacing: 0.03em; }
.summary .v { font-size: 1.25em; font-weight: 600; word-break: break-all; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; margin: 0.6em 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #dde3ea; padding: 0.3em 0.7em; text-align: left; vertical-align: top; }
th { background: #f4f7fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.plots img { max-width: 100%; border: 1px solid #eef1f4; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.gallery figure { margin: 0; width: 176px; border: 3px solid #c62828; border-radius: 4px;
                  padding: 4px; font-size: 0.8em; }
.gallery figure.correct { border-color: #9aa5b1; }
.gallery img { display: block; width: 160px; height: auto; image-rendering: pixelated; }
td img { width: 96px; height: auto; image-rendering: pixelated; }
.gallery figcaption { margin-top: 0.3em; word-break: break-all; }
.muted { color: #5b6670; }
"""

# Nothing may be fetched: images only from data: URIs, styles only inline, no scripts at all.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _environment():
    """The template environment: autoescaped, the report's number formats as filters."""
    import jinja2

    def defined(value: Any) -> Any:
        return None if isinstance(value, jinja2.Undefined) else value

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True, undefined=jinja2.Undefined, keep_trailing_newline=True
    )
    environment.filters["pct"] = lambda value, missing="not computed": _pct(defined(value), missing)
    environment.filters["num"] = lambda value, missing="—": _num(defined(value), missing)
    environment.filters["interval"] = lambda value: interval_text(defined(value))
    environment.filters["json_text"] = lambda value: json.dumps(value, default=str)
    environment.tests["sequence_not_string"] = lambda value: isinstance(value, list | tuple)
    return environment


def _split_rates(split: Mapping[str, Any]) -> tuple[Any, Any]:
    decision = split.get("decision") or {}
    frr = split.get("false_reject_rate", decision.get("false_reject_rate"))
    esc = split.get("escape_rate", decision.get("escape_rate"))
    return frr, esc


def _threshold_value(report: Mapping[str, Any]) -> float | None:
    thr = report.get("threshold")
    if isinstance(thr, Mapping) and thr.get("threshold") is not None:
        return float(thr["threshold"])
    return None


def _flagged_training_images(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Good training images the detector scores like defects (``training.fit``), most suspicious first."""
    fit = (report.get("training") or {}).get("fit") if isinstance(report.get("training"), Mapping) else None
    entries = (fit or {}).get("suspicious_training_images") or [] if isinstance(fit, Mapping) else []
    return [e for e in entries if isinstance(e, Mapping) and e.get("flagged")]


def _short_id(value: Any) -> str:
    """A content id shortened for the summary tiles (``dataset:143baaf1952c…``); the JSON has it whole."""
    text = _num(value)
    kind, sep, digest = text.partition(":")
    return f"{kind}:{digest[:12]}…" if sep and len(digest) > 16 else text


def _model_label(report: Mapping[str, Any]) -> str:
    """The model by the version name it is registered under; refused models are not registered."""
    name = report.get("model_name")
    if not name:
        return _num(report.get("model_version"))
    release = report.get("release")
    if isinstance(release, Mapping) and release.get("passed") is False:
        return f"not registered (refused; would have been {name})"
    return str(name)


def _summary(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    test = report.get("test") or {}
    val = report.get("val") or {}
    thr = report.get("threshold") if isinstance(report.get("threshold"), Mapping) else None
    rates_known = report.get("good_class") is not None
    frr, esc = _split_rates(test)
    missing_rate = "not computed" if rates_known else "n/a (no good class)"
    items = [
        ("Test accuracy", _pct(test.get("accuracy"), "—")),
        ("False-reject rate (test)", pct_with_interval(frr, test.get("false_reject_rate_ci95"), missing_rate)),
        ("Escape rate (test)", pct_with_interval(esc, test.get("escape_rate_ci95"), missing_rate)),
        ("Threshold", _num(thr.get("threshold")) if thr else ("n/a (no good class)" if not rates_known else "—")),
        ("Model version", _model_label(report)),
        ("Dataset version", _short_id(report.get("dataset_version"))),
    ]
    if thr and thr.get("max_escape_rate") is not None:
        items.append(("Escape target (validation)", f"≤ {_pct(thr['max_escape_rate'])}"))
    if test.get("n_images") is not None:
        items.append(("Test images", _num(test["n_images"])))
    if val.get("accuracy") is not None:
        items.append(("Validation accuracy", _pct(val["accuracy"])))
    if rates_known:
        items.append(("Good class", _num(report.get("good_class"))))
    for key, name in (("image_auroc", "Image AUROC (test)"), ("pixel_auroc", "Pixel AUROC (test)"), ("pro", "PRO (test)")):
        if key in test:  # the anomaly task's figures
            value = test.get(key)
            items.append((name, "not computed" if value is None else f"{float(value):.4f}"))
    if report.get("threshold_rule"):
        items.append(("Threshold rule", str(report["threshold_rule"])))
    return items


def _escape_above_target(report: Mapping[str, Any]) -> tuple[float, float] | None:
    thr = report.get("threshold")
    _, test_escape = _split_rates(report.get("test") or {})
    if isinstance(thr, Mapping) and thr.get("max_escape_rate") is not None and test_escape is not None:
        if float(test_escape) > float(thr["max_escape_rate"]):
            return float(test_escape), float(thr["max_escape_rate"])
    return None


def _split_view(title: str, split: Any, report: Mapping[str, Any], caption: str = "") -> dict[str, Any] | None:
    """What the template shows of one split: its numbers, its plots (data URIs) and why a plot is missing."""
    if not isinstance(split, Mapping) or not split:
        return None
    good_class = report.get("good_class")
    classes = list(split.get("classes") or report.get("classes") or [])
    threshold = _threshold_value(report)
    figures: list[tuple[str, str]] = []
    notes: list[str] = []
    if split.get("confusion_matrix") is not None and classes:
        figures.append((confusion_png(split["confusion_matrix"], classes, f"{title}: confusion matrix"), f"{title} confusion matrix"))
    roc = split.get("roc")
    if good_class is not None and isinstance(roc, Mapping):
        if roc.get("auc") is not None and roc.get("fpr"):
            frr, esc = _split_rates(split)
            point = (float(frr), 1.0 - float(esc)) if frr is not None and esc is not None else None
            decision = split.get("decision") or {}
            figures.append((roc_png(roc, point, decision.get("threshold", threshold), title), f"{title} ROC curve"))
        else:
            notes.append(roc.get("note") or "ROC curve undefined for this set")
    scores = split.get("defect_scores")
    labels = split.get("is_defect")
    if good_class is not None and scores is not None and labels is not None:
        s = np.asarray(scores, dtype=np.float64)
        d = np.asarray(labels).astype(bool)
        if s.shape != d.shape or s.ndim != 1:
            raise ValueError(f"{title}: defect_scores {s.shape} and is_defect {d.shape} must be 1-D of equal length")
        if s.size:
            decision = split.get("decision") or {}
            thr = decision.get("threshold", threshold)
            label = str(report.get("score_label") or "defect score (1 − P(good))")  # the task's report says what its score is
            figures.append((histogram_png(s, d, None if thr is None else float(thr), title, label), f"{title} defect-score histogram"))
    return {"title": title, "caption": caption, "data": split, "figures": figures, "notes": notes}


def _search_rows(search: Any) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(search, Mapping):
        return [], []
    trials = [t for t in search.get("trials") or [] if isinstance(t, Mapping)]
    keys = sorted({k for t in trials for k in (t.get("params") or {})})
    rows = []
    for t in trials:
        params = t.get("params") or {}
        cells = [t.get("number"), t.get("state"), t.get("value"), t.get("epochs_run"), t.get("seconds")]
        rows.append(cells + [params.get(k) for k in keys] + [t.get("reason") or ""])
    return ["trial", "state", "value", "epochs", "seconds", *keys, "reason"], rows


# --------------------------------------------------------------------------------------------
# entry point


def render_report_html(
    report: Mapping[str, Any],
    *,
    gallery_images: Sequence[np.ndarray] = (),
    out_path: Path,
    search_plots: Mapping[str, bytes] | None = None,
    threshold_images: Sequence[np.ndarray] = (),
    suspicious_images: Sequence[np.ndarray] = (),
) -> Path:
    """Write the validation report to ``out_path`` as one self-contained HTML file.

    ``report`` is the JSON-able validation report; sections that are absent (``val``,
    ``training``, ``exports``, ``parity``, ``latency_ms``, ``notes``, ...) are left out. A split
    (``test`` / ``val``) may also carry ``defect_scores`` and ``is_defect`` lists, which are needed
    for the defect-score histogram; without them the histogram is not drawn.
    ``gallery_images[i]`` is the uint8 image of ``report["worst_errors"][i]``; pass none for a
    captions-only gallery. The file is written to a temporary name and renamed, so a reader
    never sees half a report.
    """
    if not isinstance(report, Mapping):
        raise TypeError(f"report must be a mapping (the validation report dict), got {type(report).__name__}")
    images = list(gallery_images)
    errors = report.get("worst_errors") or []
    if images and len(images) != len(errors):
        raise ValueError(
            f"gallery_images has {len(images)} images but report['worst_errors'] has {len(errors)} entries; "
            "pass one image per entry, in the same order, or none"
        )
    out_path = Path(out_path)

    where = " / ".join(str(report[k]) for k in ("line", "variant") if report.get(k))
    title = "Validation report" + (f" — {where}" if where else "")
    task = report.get("task")
    subtitle = " · ".join(
        p for p in (
            f"task: {task}" if task else "",
            f"classes: {', '.join(map(str, report.get('classes') or []))}" if report.get("classes") else "",
        ) if p
    )
    training = report.get("training") if isinstance(report.get("training"), Mapping) and report.get("training") else None
    history = [h for h in ((training or {}).get("history") or []) if isinstance(h, Mapping)]
    errors_shown = list(report.get("worst_errors") or [])
    gallery = [
        (err, thumbnail_uri(images[i], i) if images else None) for i, err in enumerate(errors_shown)
    ]
    trial_head, trial_rows = _search_rows(report.get("hpo"))
    cv = report.get("cv")
    splits = [
        _split_view("Test set", report.get("test"), report),
        _split_view(
            "Validation set", report.get("val"), report,
            "The threshold was calibrated on this set, so its reject/pass rates are optimistic; "
            "judge the model on the test set.",
        ),
    ]
    page = _environment().get_template("report.html.j2").render(
        report=report,
        title=title,
        subtitle=subtitle,
        css=_CSS,
        csp=_CSP,
        summary=_summary(report),
        escape_above_target=_escape_above_target(report),
        threshold_labels=_THRESHOLD_LABELS,
        decision_rows=_DECISION_ROWS,
        splits=[split for split in splits if split is not None],
        gallery=gallery,
        gallery_has_images=bool(images),
        threshold_thumbnails=[thumbnail_uri(image, i) for i, image in enumerate(threshold_images)],
        suspicious=_flagged_training_images(report),
        suspicious_thumbnails=[thumbnail_uri(image, i) for i, image in enumerate(suspicious_images)],
        training=training,
        training_figures=[(training_png(history), "training curves")] if history else [],
        history_keys=_HISTORY_KEYS,
        history_rows=history if len(history) <= _MAX_HISTORY_ROWS else [],
        training_extra={k: v for k, v in (training or {}).items() if k not in ("history", "train_seconds")},
        trial_head=trial_head,
        trial_rows=trial_rows,
        search_figures=[(png_uri(png), _PLOT_TITLES.get(name, name)) for name, png in (search_plots or {}).items()],
        fold_keys=_FOLD_KEYS,
        fold_rows=[f for f in (cv.get("per_fold") or []) if isinstance(f, Mapping)] if isinstance(cv, Mapping) else [],
        tail_sections=[
            ("Exports", report.get("exports")),
            ("Export parity", report.get("parity")),
            ("Latency (ms)", report.get("latency_ms")),
        ],
    )

    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    logger.info("wrote validation report %s (%d bytes)", out_path, len(page.encode("utf-8")))
    return out_path
