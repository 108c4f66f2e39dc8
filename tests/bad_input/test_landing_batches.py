"""Bad-input corpus, landing batches: every file is either quarantined with a reason or accepted on
purpose and said so (a note in the log and the run's metadata); nothing is skipped silently, and the
good files of the batch go on.

The quarantine kinds of ``tests/bad_images.py`` (zero bytes, truncated, garbage, CMYK, 16-bit, ...)
are part of the corpus; this module adds degenerate sizes and what is accepted with a note.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mfg_assets.ingest import raw_images
from resources.data.variants import VariantSpec, save_variant
from resources.lineage import LineageStore
from tests.bad_images import TOO_LARGE_MAX_PIXELS, write_bad_images
from tests.mfg_assets.test_ingest_and_annotations import _batch, _materialize

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def variant(mfg_home: Path) -> VariantSpec:
    spec = VariantSpec(line="line1", variant="a", classes=("good", "bad"), good_class="good")
    save_variant(spec, mfg_home)
    return spec


def _ingest(instance: dg.DagsterInstance) -> tuple[dg.ExecuteInProcessResult, dict[str, str], list[str]]:
    result = _materialize(instance, [raw_images], {"ops": {"raw_images": {"config": {"max_pixels": TOO_LARGE_MAX_PIXELS}}}})
    assert result.success
    quarantine = LineageStore().read_table("quarantine")
    reasons = dict(zip(quarantine["rel_path"], quarantine["reason"], strict=True)) if not quarantine.empty else {}
    notes = result.asset_materializations_for_node("raw_images")[0].metadata["notes"].value
    return result, reasons, notes


def test_every_bad_file_is_quarantined_or_noted_and_the_good_ones_go_on(mfg_home: Path, variant: VariantSpec) -> None:
    batch = _batch(mfg_home, "b1")
    expected = {f"bad/{name}": reason for name, reason in write_bad_images(batch / "bad").items()}
    Image.new("L", (1, 1), 128).save(batch / "bad" / "one_pixel.png")
    Image.new("L", (3, 300), 128).save(batch / "bad" / "sliver.png")
    expected |= {"bad/one_pixel.png": "too_small", "bad/sliver.png": "too_small"}
    pages = [Image.fromarray(np.full((20, 20), v, np.uint8)) for v in (10, 200, 90)]
    pages[0].save(batch / "good" / "pages.tif", save_all=True, append_images=pages[1:])
    (batch / "good" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (batch / "metadata.csv").write_text("path,camera,shift,lighting,capture_time\ngood/g0.png,cam1,A,ring,yesterday\n")
    (batch / "_READY").write_text("")
    odd = mfg_home / "landing" / "line1" / "a" / "batch two"
    odd.mkdir()
    (odd / "_READY").write_text("")

    with dg.instance_for_test() as instance:
        result, reasons, notes = _ingest(instance)

    assert reasons == expected
    assert result.output_for_node("raw_images").n_images == 13  # 6 good + 6 bad + the TIFF's first page
    said = "\n".join(notes)
    assert "good/pages.tif: TIFF with 3 pages; only page 1 is used" in said
    assert "good/.DS_Store: hidden file skipped" in said
    assert "capture_time 'yesterday' is not an ISO 8601 time" in said
    assert "batch two: a landing folder with a _READY marker but a name that is not a valid batch name" in said
    images = LineageStore().read_table("images")
    g0 = images[images["rel_path"] == "good/g0.png"].iloc[0]
    assert g0["capture_time"] != "yesterday" and g0["camera"] == "cam1"


def test_the_agent_help_creates_no_signing_key(mfg_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MFG_HOME": str(mfg_home), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "mfg_assets.cli", "edge-agent", "--help"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "--camera-dir" in done.stdout
    assert not list(tmp_path.rglob("*.pem")) and not list(mfg_home.rglob("*.pem"))
