"""The validation report as one self-contained HTML file.

The report is read by people who decide whether a model goes to a production line, often on a
plant PC without internet, and it is stored as an artifact that must still render years later.
So the file carries everything itself: inline CSS, plots and thumbnails as base64 PNG data URIs,
no scripts, no web fonts, and a Content-Security-Policy that forbids loading anything else.
All text from the report (class names, versions, notes) is HTML-escaped, because class names
and notes come from annotation tools and people.

Plots are drawn with matplotlib's object-oriented API on an explicit Agg canvas, never through
``pyplot``: no display is needed, no global figure state is touched, and the import happens only
when a report is rendered so that loading the Dagster definitions stays light.
"""

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from resources.reporting.format import e as _e
from resources.reporting.format import img as _img
from resources.reporting.format import kv_table as _kv_table
from resources.reporting.format import num as _num
from resources.reporting.format import pct as _pct
from resources.reporting.plots import confusion_png, histogram_png, roc_png, thumbnail_uri, training_png
from resources.reporting.sections import backbone_section, cross_validation_section, release_section, search_section

__all__ = ["render_report_html"]

logger = logging.getLogger(__name__)

_MAX_HISTORY_ROWS = 60  # beyond this the training table is left out; the plot still shows all epochs

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
.gallery figcaption { margin-top: 0.3em; word-break: break-all; }
.muted { color: #5b6670; }
"""

# Nothing may be fetched: images only from data: URIs, styles only inline, no scripts at all.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


# --------------------------------------------------------------------------------------------
# sections


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


def _summary_section(report: Mapping[str, Any]) -> str:
    test = report.get("test") or {}
    val = report.get("val") or {}
    thr = report.get("threshold") if isinstance(report.get("threshold"), Mapping) else None
    rates_known = report.get("good_class") is not None
    frr, esc = _split_rates(test)
    missing_rate = "not computed" if rates_known else "n/a (no good class)"
    items = [
        ("Test accuracy", _pct(test.get("accuracy"), "—")),
        ("False-reject rate (test)", _pct(frr, missing_rate)),
        ("Escape rate (test)", _pct(esc, missing_rate)),
        ("Threshold", _num(thr.get("threshold")) if thr else ("n/a (no good class)" if not rates_known else "—")),
        ("Model version", _num(report.get("model_version"))),
        ("Dataset version", _num(report.get("dataset_version"))),
    ]
    if thr and thr.get("max_escape_rate") is not None:
        items.append(("Escape target (validation)", f"≤ {_pct(thr['max_escape_rate'])}"))
    if test.get("n_images") is not None:
        items.append(("Test images", _num(test["n_images"])))
    if val.get("accuracy") is not None:
        items.append(("Validation accuracy", _pct(val["accuracy"])))
    if rates_known:
        items.append(("Good class", _num(report.get("good_class"))))
    cells = "".join(f'<div><span class="k">{_e(k)}</span><span class="v">{_e(v)}</span></div>' for k, v in items)
    return f'<div class="summary">{cells}</div>'


def _notes_section(report: Mapping[str, Any]) -> str:
    parts = []
    if report.get("good_class") is None:
        parts.append(
            '<p class="note">False-reject and escape rates, the threshold, the ROC curve and the '
            "defect-score histograms are not computed because no class is marked good "
            "(<code>good_class</code> is not set). Mark the class of good parts to get them.</p>"
        )
    thr = report.get("threshold")
    _, test_escape = _split_rates(report.get("test") or {})
    if isinstance(thr, Mapping) and thr.get("max_escape_rate") is not None and test_escape is not None:
        if float(test_escape) > float(thr["max_escape_rate"]):
            parts.append(
                f'<p class="note">The escape rate on the test set ({_e(_pct(test_escape))}) is above the '
                f"target the threshold was calibrated for ({_e(_pct(thr['max_escape_rate']))}).</p>"
            )
    notes = report.get("notes") or []
    if notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in notes)
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    return "".join(parts)


def _threshold_section(report: Mapping[str, Any]) -> str:
    thr = report.get("threshold")
    if not isinstance(thr, Mapping):
        return ""
    labels = {
        "threshold": "threshold (reject when score ≥)",
        "max_escape_rate": "escape-rate target",
        "escape_rate": "escape rate on validation",
        "false_reject_rate": "false-reject rate on validation",
        "n_good": "good images (validation)",
        "n_defect": "defective images (validation)",
        "method": "method",
    }
    rows = []
    for key, value in thr.items():
        shown = _pct(value) if key.endswith("_rate") else _num(value)
        rows.append(f"<tr><th>{_e(labels.get(key, key))}</th><td>{_e(shown)}</td></tr>")
    return "<h2>Operating threshold</h2>" + f"<table>{''.join(rows)}</table>"


def _per_class_table(per_class: Mapping[str, Mapping[str, Any]], good_class: Any) -> str:
    head = "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = []
    for name, m in per_class.items():
        label = _e(name) + (' <span class="muted">(good)</span>' if name == good_class else "")
        rows.append(
            f"<tr><td>{label}</td>"
            f'<td class="num">{_e(_pct(m.get("precision"), "—"))}</td>'
            f'<td class="num">{_e(_pct(m.get("recall"), "—"))}</td>'
            f'<td class="num">{_e(_pct(m.get("f1"), "—"))}</td>'
            f'<td class="num">{_e(_num(m.get("support")))}</td></tr>'
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _decision_table(decision: Mapping[str, Any]) -> str:
    order = [
        ("threshold", "threshold"), ("n_good", "good images"), ("n_defect", "defective images"),
        ("false_rejects", "good parts rejected"), ("escapes", "defective parts passed"),
        ("rejected", "parts rejected"), ("false_reject_rate", "false-reject rate"),
        ("escape_rate", "escape rate"),
    ]
    rows = []
    for key, label in order:
        if key in decision:
            value = decision[key]
            shown = _pct(value) if key.endswith("_rate") else _num(value)
            rows.append(f"<tr><th>{_e(label)}</th><td>{_e(shown)}</td></tr>")
    note = f'<p class="note">{_e(decision["note"])}</p>' if decision.get("note") else ""
    return f"<table>{''.join(rows)}</table>{note}"


def _split_section(title: str, split: Any, report: Mapping[str, Any], caption: str = "") -> str:
    if not isinstance(split, Mapping) or not split:
        return ""
    good_class = report.get("good_class")
    classes = list(split.get("classes") or report.get("classes") or [])
    threshold = _threshold_value(report)
    out = [f"<h2>{_e(title)}</h2>"]
    if caption:
        out.append(f'<p class="muted">{_e(caption)}</p>')
    if split.get("accuracy") is not None:
        n = f" on {_num(split['n_images'])} images" if split.get("n_images") is not None else ""
        out.append(f"<p>Accuracy <b>{_e(_pct(split['accuracy']))}</b>{_e(n)}.</p>")

    plots = []
    if split.get("confusion_matrix") is not None and classes:
        plots.append(_img(confusion_png(split["confusion_matrix"], classes, f"{title}: confusion matrix"),
                          f"{title} confusion matrix"))

    roc = split.get("roc")
    if good_class is not None and isinstance(roc, Mapping):
        if roc.get("auc") is not None and roc.get("fpr"):
            frr, esc = _split_rates(split)
            point = (float(frr), 1.0 - float(esc)) if frr is not None and esc is not None else None
            decision = split.get("decision") or {}
            plots.append(_img(roc_png(roc, point, decision.get("threshold", threshold), title), f"{title} ROC curve"))
        else:
            reason = roc.get("note") or "ROC curve undefined for this set"
            out.append(f'<p class="note">{_e(reason)}</p>')

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
            plots.append(_img(histogram_png(s, d, None if thr is None else float(thr), title),
                              f"{title} defect-score histogram"))
    if plots:
        out.append(f'<div class="plots">{"".join(plots)}</div>')

    if split.get("per_class"):
        out.append("<h3>Per class</h3>" + _per_class_table(split["per_class"], good_class))
    if good_class is not None and isinstance(split.get("decision"), Mapping):
        out.append("<h3>Reject / pass decision</h3>" + _decision_table(split["decision"]))
    return "".join(out)


def _gallery_section(report: Mapping[str, Any], images: Sequence[np.ndarray]) -> str:
    errors = report.get("worst_errors")
    if not errors:
        return ""
    out = ["<h2>Worst errors</h2>",
           '<p class="muted">Misclassified images, most confident wrong prediction first (red frame); '
           "when there are fewer errors than slots, the least confident correct predictions follow "
           "(grey frame).</p>"]
    if not images:
        out.append('<p class="note">No images were supplied for the gallery; captions only.</p>')
    figures = []
    for i, err in enumerate(errors):
        correct = bool(err.get("correct", False))
        conf = err.get("confidence")
        caption = (
            f"#{_e(_num(err.get('index')))}<br>true: <b>{_e(err.get('true', '?'))}</b><br>"
            f"predicted: <b>{_e(err.get('predicted', '?'))}</b><br>"
            f"confidence: {_e(_pct(conf, '—'))}"
            + ("<br><span class=\"muted\">correct (low confidence)</span>" if correct else "")
        )
        img = ""
        if images:
            img = _img(thumbnail_uri(images[i], i),
                       f"image {_num(err.get('index'))}: true {err.get('true')}, predicted {err.get('predicted')}")
        css = ' class="correct"' if correct else ""
        figures.append(f"<figure{css}>{img}<figcaption>{caption}</figcaption></figure>")
    out.append(f'<div class="gallery">{"".join(figures)}</div>')
    return "".join(out)


def _training_section(report: Mapping[str, Any]) -> str:
    training = report.get("training")
    if not isinstance(training, Mapping) or not training:
        return ""
    out = ["<h2>Training</h2>"]
    if training.get("train_seconds") is not None:
        out.append(f"<p>Training took {_e(_num(training['train_seconds']))} s.</p>")
    history = [h for h in (training.get("history") or []) if isinstance(h, Mapping)]
    if history:
        out.append(f'<div class="plots">{_img(training_png(history), "training curves")}</div>')
        if len(history) <= _MAX_HISTORY_ROWS:
            keys = ["epoch", "train_loss", "val_loss", "val_accuracy", "seconds"]
            head = "".join(f"<th>{_e(k.replace('_', ' '))}</th>" for k in keys)
            rows = "".join(
                "<tr>" + "".join(f'<td class="num">{_e(_num(h.get(k)))}</td>' for k in keys) + "</tr>"
                for h in history
            )
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
    extra = {k: v for k, v in training.items() if k not in ("history", "train_seconds")}
    if extra:
        out.append(_kv_table(extra))
    return "".join(out)


def _kv_section(title: str, data: Any) -> str:
    if not isinstance(data, Mapping) or not data:
        return ""
    return f"<h2>{_e(title)}</h2>{_kv_table(data)}"


# --------------------------------------------------------------------------------------------
# entry point


def render_report_html(
    report: Mapping[str, Any],
    *,
    gallery_images: Sequence[np.ndarray] = (),
    out_path: Path,
    search_plots: Mapping[str, bytes] | None = None,
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
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(subtitle)}</p>' if subtitle else "",
        _summary_section(report),
        release_section(report),
        _notes_section(report),
        _threshold_section(report),
        _split_section("Test set", report.get("test"), report),
        _split_section(
            "Validation set", report.get("val"), report,
            "The threshold was calibrated on this set, so its reject/pass rates are optimistic; "
            "judge the model on the test set.",
        ),
        _gallery_section(report, images),
        _training_section(report),
        backbone_section(report),
        search_section(report, search_plots or {}),
        cross_validation_section(report),
        _kv_section("Exports", report.get("exports")),
        _kv_section("Export parity", report.get("parity")),
        _kv_section("Latency (ms)", report.get("latency_ms")),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
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
