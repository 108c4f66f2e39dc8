"""What every ``mfgv onboard`` ends with: how the data was split, the test figures with their
intervals, the images that set the threshold, and a table of where everything is."""

from pathlib import Path

from resources.reporting.format import pct_with_interval
from resources.settings import mfg_home

__all__ = ["split_lines", "summary_lines", "summary_table", "figures_line", "threshold_setter_lines"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


HEADLINE_NAMES = (
    ("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"), ("pro", "PRO"), ("map50", "mAP50"), ("map50_95", "mAP50-95"),
)
"""The tasks' headline figures (``TaskEngine.headline_keys``) as the summary names them."""


def figures_line(report: dict) -> str:
    """One line of the test split's headline figures, as the report JSON has them."""
    test = report["test"]
    parts = [f"test accuracy {_pct(test.get('accuracy'))}"]
    for key, name in HEADLINE_NAMES:
        if key in test:
            parts.append(f"{name} {'n/a' if test[key] is None else format(test[key], '.3f')}")
    parts += [
        f"false-reject rate {pct_with_interval(test.get('false_reject_rate'), test.get('false_reject_rate_ci95'), 'n/a')}",
        f"escape rate {pct_with_interval(test.get('escape_rate'), test.get('escape_rate_ci95'), 'n/a')}",
    ]
    if report.get("threshold_rule"):
        parts.append(f"threshold rule {report['threshold_rule']}")
    return "test: " + ", ".join(parts)


def split_lines(report: dict) -> list[str]:
    """How the data was split: by what images were grouped into parts, and what each split holds."""
    grouping = report.get("grouping") or {}
    if not grouping.get("splits"):
        return []
    splits = grouping["splits"]
    held = ", ".join(
        f"{name} {splits[name]['images']} images ({splits[name]['groups']} groups, "
        f"{splits[name]['effective_parts']:g} effective parts)"
        for name in ("train", "val", "test")
        if name in splits
    )
    lines = [f"split grouped by {grouping['group_by']} ({grouping['reason']}): {held}"]
    if grouping.get("fallback"):
        lines.append(f"warning: {grouping['fallback']}")
    return lines


def threshold_setter_lines(report: dict) -> list[str]:
    """Console lines naming the defective validation images that set the zero-escape threshold.

    On real data one or two of them can decide the false-reject rate (magnetic tile: a border sliver that
    costs three quarters of the good parts, BENCHMARKS.md), so they are printed where the user reads the
    result, not only in the HTML: each with what catching it costs, the first images to review.
    """
    rows = report.get("threshold_set_by") or []
    if not rows:
        return []
    lines = [
        "threshold set by the defective validation images the model scores lowest "
        "(catching each rejects this share of the good validation parts; review these first):"
    ]
    for row in rows:
        where = row.get("source_path") or row.get("landed_path") or row.get("rel_path") or f"validation image {row['index']}"
        lines.append(
            f"  {where} ({row.get('true', '?')}): score {row['score']:.3f}, "
            f"{100 * row['false_reject_rate_to_catch']:.2f} % of good parts ({row['good_at_or_above']})"
        )
    return lines


def summary_table(report: dict, report_path: Path | None) -> list[str]:
    """The closing table: model version, its start, dataset, figures with intervals, the threshold
    (rounded), and the paths of the reports, exports and lineage."""
    test = report["test"]
    backbone = report.get("backbone") or {}
    start = (
        f"{backbone['name']} ImageNet weights from {backbone['package']} {backbone.get('package_version', '')}".rstrip()
        if backbone
        else report["training"]["arch"]
    )
    registered = report.get("registered", True)
    rows = [
        ("model version", f"{report['model_version']}  (registered as candidate)" if registered else "not registered (refused)"),
        ("model", f"{start} at {report['training']['image_size']} px ({report['training']['resize']})"),
        ("dataset version", str(report["dataset_version"])),
        ("test accuracy", f"{_pct(test.get('accuracy'))} on {test.get('n_images', '?')} images"),
    ]
    for key, name in HEADLINE_NAMES:
        if test.get(key) is not None and key != "pro":
            rows.append((name, f"{test[key]:.3f}"))
    rows += [
        ("false-reject rate", pct_with_interval(test.get("false_reject_rate"), test.get("false_reject_rate_ci95"), "n/a")),
        ("escape rate", pct_with_interval(test.get("escape_rate"), test.get("escape_rate_ci95"), "n/a")),
        ("threshold", "n/a" if report.get("threshold") is None else f"{report['threshold']:.4g}"),
        ("time", f"training {report['train_seconds']:.0f} s, whole onboard {report['total_seconds']:.0f} s"),
        ("report (HTML)", str(report.get("report_html"))),
    ]
    if report_path is not None:
        rows.append(("report (JSON)", str(report_path)))
    for fmt, path in (report.get("exports") or {}).items():
        rows.append((f"export {fmt}", str(path)))
    if registered:
        rows.append(("lineage", f"mfgv lineage {report['model_version']}"))
    rows += [
        ("lineage tables", f"{mfg_home() / 'mfg.duckdb'} (views: lineage, images, labels, dataset_items, model_registry)"),
        ("Dagster UI", "make ui, then open http://127.0.0.1:3000"),
    ]
    width = max(len(name) for name, _ in rows)
    return [""] + [f"{name.ljust(width)}  {value}" for name, value in rows]


def summary_lines(report: dict, report_path: Path | None) -> list[str]:
    """Everything an onboard prints when it is done."""
    return [*split_lines(report), figures_line(report), *threshold_setter_lines(report), *summary_table(report, report_path)]
