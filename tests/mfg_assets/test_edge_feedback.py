"""edge_feedback: operator-labelled images land under the variant of the model they judged."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from edge_sync.contract import generate_keypair
from edge_sync.server_state import DeviceRecord, FeedbackItem
from mfg_assets.edge_metrics import edge_feedback
from resources.edge import EdgeSync
from resources.landing import LandingZone
from resources.lineage import LineageStore
from tests.edge_sync.test_server_state import make_package, make_signed

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def _feedback(edge: EdgeSync, model_version: str, data: bytes, label: str, *, at_the_door: bool = True) -> str:
    """Upload one item through the server's checks, or (``at_the_door=False``) store it as an older
    server that had no checks would have."""
    sha = hashlib.sha256(data).hexdigest()
    item = FeedbackItem(
        device_id="cam-1", line="line1", model_version=model_version, image=f"{sha[:8]}.png", sha256=sha,
        label=label, verdict="false_reject" if label == "good" else "escape", labelled_at=NOW,
    )
    state, device = edge.server_state(), DeviceRecord("cam-1", "line1", False)
    store = state if at_the_door else state._feedback
    assert store.record_feedback(item, data, device, NOW)
    return sha


def test_feedback_lands_under_the_variant_of_its_model_version(mfg_home: Path, tmp_path: Path) -> None:
    from resources.data.variants import VariantSpec, save_variant

    for variant in ("bracket-a", "bracket-b"):  # deployed variants are registered ones (folder-per-class here)
        save_variant(VariantSpec(line="line1", variant=variant, classes=("good", "scratch"), good_class="good"), mfg_home)
    edge = EdgeSync()
    edge.server_state().register_device("cam-1", "line1")
    lineage = LineageStore()
    # bracket-a ran first, then the line switched to bracket-b: the newest deployment row is b's.
    lineage.append_table(
        "deployments",
        [
            {"deployment_id": "a1", "line": "line1", "variant": "bracket-a", "model_version": "line1-bracket-a-v1",
             "deployed_at": "2026-12-01T08:00:00+00:00"},
            {"deployment_id": "b1", "line": "line1", "variant": "bracket-b", "model_version": "line1-bracket-b-v1",
             "deployed_at": "2026-12-02T08:00:00+00:00"},
        ],
    )
    key = tmp_path / "platform.pem"
    generate_keypair(key, tmp_path / "platform.pub.pem")
    for version in ("line1-bracket-a-v1", "line1-bracket-b-v1"):
        package = make_package(tmp_path / version, seed=len(version) + ord(version[-4]))
        edge.server_state().publish(make_signed(package, key, version=version), package)
    a_image = _feedback(edge, "line1-bracket-a-v1", b"a-part", "good")
    b_image = _feedback(edge, "line1-bracket-b-v1", b"b-part", "scratch")
    # never deployed to line1: the server refuses it now, but an older server may have stored one
    stray = _feedback(edge, "line1-bracket-c-v9", b"c-part", "good", at_the_door=False)

    result = dg.materialize(
        [edge_feedback], resources={"edge": edge, "landing": LandingZone(), "lineage": lineage}
    )

    assert result.success
    landing = mfg_home / "landing" / "line1"
    [a_batch] = list((landing / "bracket-a").iterdir())
    [b_batch] = list((landing / "bracket-b").iterdir())
    assert {p.stem for p in a_batch.rglob("*.png")} == {a_image}
    assert {p.stem for p in b_batch.rglob("*.png")} == {b_image}
    assert stray not in {p.stem for p in landing.rglob("*.png")}
    metadata = result.asset_materializations_for_node("edge_feedback")[0].metadata
    assert metadata["new_batches"].value == 2 and metadata["unattributed"].value == 1
    landed = lineage.read_table("feedback_landed")
    assert dict(zip(landed["sha256"], landed["variant"], strict=True)) == {a_image: "bracket-a", b_image: "bracket-b"}
