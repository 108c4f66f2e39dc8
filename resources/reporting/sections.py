"""HTML sections of the validation report for the release verdict, the start weights, the
hyperparameter search and cross-validation (the rest is ``resources.reporting.html``)."""

from collections.abc import Mapping
from typing import Any

from resources.reporting.format import e, img, kv_table, num, pct, png_uri

__all__ = ["backbone_section", "cross_validation_section", "release_section", "search_section"]

_PLOT_TITLES = {
    "optimization_history": "optimisation history",
    "intermediate_values": "validation loss per epoch, what pruning compares (pruned trials stop early)",
    "param_importances": "parameter importances",
}


def release_section(report: Mapping[str, Any]) -> str:
    """Whether the model met the release criteria, and if not, exactly what fell short."""
    release = report.get("release")
    if not isinstance(release, Mapping):
        return ""
    if release.get("passed"):
        return '<h2>Release check</h2><p><b>Passed</b>: the model meets the release criteria and may be registered.</p>'
    items = "".join(f"<li>{e(f)}</li>" for f in release.get("failures") or [])
    return (
        '<h2>Release check</h2><p class="note"><b>Refused</b>: this model is not registered. '
        f"What fell short:</p><ul>{items}</ul>"
    )


def backbone_section(report: Mapping[str, Any]) -> str:
    backbone = report.get("backbone")
    if not isinstance(backbone, Mapping):
        return ""
    return (
        "<h2>Pretrained backbone</h2><p>Fine-tuned from ImageNet weights shipped in a package (nothing was "
        f"downloaded):</p>{kv_table(backbone)}"
    )


def search_section(report: Mapping[str, Any], plots: Mapping[str, bytes]) -> str:
    search = report.get("hpo")
    if not isinstance(search, Mapping):
        return ""
    out = ["<h2>Hyperparameter search</h2>"]
    out.append(
        f"<p>{len(search.get('trials') or [])} trials in {e(num(search.get('seconds')))} s "
        f"({e(num(search.get('sampler', {}).get('name')))}, seed {e(num(search.get('sampler', {}).get('seed')))}). "
        f"Objective: {e(search.get('objective'))}. Best value {e(num(search.get('best_value')))} "
        f"(trial {e(num(search.get('best_trial')))}).</p>"
    )
    if search.get("note"):
        out.append(f'<p class="note">{e(search["note"])}</p>')
    if search.get("best_params"):
        out.append("<h3>Best parameters</h3>" + kv_table(search["best_params"]))
    trials = [t for t in search.get("trials") or [] if isinstance(t, Mapping)]
    if trials:
        keys = sorted({k for t in trials for k in (t.get("params") or {})})
        head = "".join(f"<th>{e(k)}</th>" for k in ["trial", "state", "value", "epochs", "seconds", *keys, "reason"])
        rows = []
        for t in trials:
            params = t.get("params") or {}
            cells = [t.get("number"), t.get("state"), t.get("value"), t.get("epochs_run"), t.get("seconds")]
            cells += [params.get(k) for k in keys] + [t.get("reason") or ""]
            rows.append("<tr>" + "".join(f'<td class="num">{e(num(c))}</td>' for c in cells) + "</tr>")
        out.append(f"<h3>Trials</h3><table><tr>{head}</tr>{''.join(rows)}</table>")
    figures = [img(png_uri(png), _PLOT_TITLES.get(name, name)) for name, png in plots.items()]
    if figures:
        out.append(f'<div class="plots">{"".join(figures)}</div>')
    if search.get("space"):
        out.append("<h3>Search space</h3>" + kv_table(search["space"]))
    return "".join(out)


def cross_validation_section(report: Mapping[str, Any]) -> str:
    cv = report.get("cv")
    if not isinstance(cv, Mapping):
        return ""
    std = cv.get("accuracy_std")
    out = [
        "<h2>Cross-validation</h2>",
        f"<p>{e(num(cv.get('folds')))} folds ({e(cv.get('method', ''))}): accuracy "
        f"<b>{e(pct(cv.get('accuracy_mean')))} ± {e(pct(std))}</b>",
    ]
    if cv.get("false_reject_rate_mean") is not None:
        out.append(
            f", false-reject rate {e(pct(cv['false_reject_rate_mean']))} ± {e(pct(cv.get('false_reject_rate_std')))} "
            f"and escape rate {e(pct(cv.get('escape_rate_mean')))} at each fold's calibrated threshold"
        )
    out.append(". The test split was not used.</p>")
    folds = [f for f in cv.get("per_fold") or [] if isinstance(f, Mapping)]
    if folds:
        keys = ["fold", "n_train", "n_select", "n_held_out", "accuracy", "false_reject_rate", "escape_rate", "best_epoch", "seconds"]
        head = "".join(f"<th>{e(k.replace('_', ' '))}</th>" for k in keys)
        rows = "".join(
            "<tr>" + "".join(f'<td class="num">{e(num(f.get(k)))}</td>' for k in keys) + "</tr>" for f in folds
        )
        out.append(f"<table><tr>{head}</tr>{rows}</table>")
    return "".join(out)
