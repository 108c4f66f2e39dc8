"""Prints where ``make demo`` left the report, the model and the lineage (``python -m mfg_assets.demo_summary REPORT``)."""

import json
import sys
from pathlib import Path

from resources.reporting.format import pct_with_interval
from resources.settings import mfg_home


def summarise(report_path: Path) -> str:
    report = json.loads(report_path.read_text())
    test = report["test"]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.2f} %"

    backbone = report.get("backbone") or {}
    start = (
        f"{backbone['name']} ImageNet weights from {backbone['package']} {backbone.get('package_version', '')} "
        f"(sha256 {backbone['sha256'][:12]}...)"
        if backbone
        else report["training"]["arch"]
    )
    decision = (report.get("threshold_calibration") or {})
    return "\n".join(
        [
            "",
            f"model version     {report['model_version']}  (registered as candidate)",
            f"model             {start}, fine-tuned at {report['training']['image_size']} px ({report['training']['resize']})",
            f"dataset version   {report['dataset_version']}",
            f"test accuracy     {pct(test['accuracy'])} on {test['n_images']} images",
            f"threshold rule    zero escapes on {decision.get('n_defect', '?')} defective / {decision.get('n_good', '?')} good "
            "validation images, then the lowest false-reject rate",
            f"false-reject rate {pct_with_interval(test['false_reject_rate'], test.get('false_reject_rate_ci95'), 'n/a')}",
            f"escape rate       {pct_with_interval(test['escape_rate'], test.get('escape_rate_ci95'), 'n/a')}",
            f"threshold         {report['threshold']}",
            f"training          {report['train_seconds']} s   total {report['total_seconds']} s",
            f"report (HTML)     {report['report_html']}",
            f"report (JSON)     {report_path.resolve()}",
            f"ONNX              {report['exports']['onnx']}",
            f"OpenVINO          {report['exports']['openvino']}",
            f"lineage           .venv/bin/mfgv lineage {report['model_version']}",
            f"lineage tables    {mfg_home() / 'mfg.duckdb'} (views: lineage, images, labels, dataset_items, model_registry)",
            "Dagster UI        make ui   (then open http://127.0.0.1:3000)",
        ]
    )


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1])))
