"""The Dagster UI in a real browser (Debian's chromium through selenium and chromium-driver; nothing is
downloaded): the asset graph opens with no sign-up dialog over it, and a materialization shows its
lineage metadata. Screenshots are kept in ``test-artifacts/ui/`` for a person to look at.

``.ci/run`` installs chromium and chromium-driver; elsewhere the test is skipped with how to get them,
except under CI, where a missing browser fails it."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.test_webserver import _webserver

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PARTITION = "line1.a"

pytestmark = pytest.mark.slow


def _browser():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1600,1000"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _wait_for_text(driver, text: str, timeout: float = 150) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if text in body:
            return body
        time.sleep(1)
    raise AssertionError(f"the page never showed {text!r}; it showed: {body[-2000:]}")


def _materialize_a_split(mfg_home: Path) -> None:
    """ingest, labels and the split of a small batch, in the instance the UI reads."""
    from mfg_assets.annotations import annotations
    from mfg_assets.datasets import dataset_version
    from mfg_assets.ingest import raw_images
    from mfg_assets.instance import get_instance
    from resources.artifact_store import ArtifactStore
    from resources.data.variants import VariantSpec, save_variant
    from resources.landing import LandingZone
    from resources.lineage import LineageStore
    from tests.mfg_assets.test_dataset_grouping import _look_alike_batch

    save_variant(VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good"), mfg_home)
    _look_alike_batch(mfg_home, "b1")
    instance = get_instance(mfg_home)
    instance.add_dynamic_partitions("line_variant", [PARTITION])
    result = dg.materialize(
        [raw_images, annotations, dataset_version],
        partition_key=PARTITION,
        instance=instance,
        resources={"landing": LandingZone(), "artifact_store": ArtifactStore(), "lineage": LineageStore()},
    )
    assert result.success


def test_the_ui_opens_without_a_dialog_and_shows_a_materializations_lineage(mfg_home: Path) -> None:
    driver = _browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        _materialize_a_split(mfg_home)
        with _webserver(mfg_home) as (port, _):
            driver.get(f"http://127.0.0.1:{port}/locations/mfg_vision/asset-groups/inspection")
            _wait_for_text(driver, "dataset_version")
            time.sleep(3)  # the dialog, where enabled, opens once the page has settled
            driver.save_screenshot(str(ARTIFACTS / "asset-graph.png"))
            assert "Join the Dagster community" not in driver.find_element("tag name", "body").text
            assert not driver.find_elements("css selector", ".bp5-dialog, [role=dialog]")

            driver.get(f"http://127.0.0.1:{port}/assets/dataset_version?partition={PARTITION}")
            body = _wait_for_text(driver, "lineage output")
            driver.save_screenshot(str(ARTIFACTS / "dataset-version.png"))
            assert "lineage inputs" in body and "code version" in body and "group_by" in body
    finally:
        driver.quit()
    assert (ARTIFACTS / "asset-graph.png").stat().st_size > 10_000
