"""The release verdict every task shares, and the anomaly task's refusal of an unmeasured detector."""

from mfg_assets.validation import ValidationConfig, release_verdict


def _report(task: str, **test: object) -> dict:
    return {"task": task, "test": {"accuracy": 1.0, "escape_rate": None, **test}}


def test_an_anomaly_detector_with_no_defective_test_image_is_not_released_unless_asked() -> None:
    verdict = release_verdict(_report("anomaly", n_defect=0), ValidationConfig())
    assert not verdict["passed"] and "escapes are not measured" in verdict["failures"][0]
    assert release_verdict(_report("anomaly", n_defect=0), ValidationConfig(release_without_defects=True))["passed"]
    assert release_verdict(_report("anomaly", n_defect=4, escape_rate=0.0), ValidationConfig())["passed"]
    assert release_verdict(_report("classify"), ValidationConfig())["passed"]  # no good class: nothing to escape


def test_accuracy_and_escapes_are_held_to_the_criteria() -> None:
    verdict = release_verdict(_report("classify", accuracy=0.5, escape_rate=0.2), ValidationConfig())
    assert verdict["failures"] == ["test accuracy 0.5000 < 0.9", "test escape rate 0.2000 > 0.05"]
