"""Bad-input corpus, stored windows: a window that an older server stored without the door's checks
(``inspected = 10**30``, a model never deployed) is quarantined by ``edge_metrics`` with its reason,
once, and the good windows land beside it; before, one such window failed every run and no window
ever landed."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from edge_sync.contract import MetricWindow, generate_keypair
from edge_sync.server_state import DeviceRecord
from mfg_assets.edge_metrics import edge_metrics
from resources.edge import EdgeSync
from resources.lineage import LineageStore
from tests.edge_sync.test_server_state import make_package, make_signed, make_window

DEVICE = DeviceRecord("cam-01", "line1", False)


def _store_unchecked(edge: EdgeSync, window_id: str, **update: object) -> None:
    """Store a window as a server without checks would have (straight into the window store)."""
    fields = {**make_window("cam-01", "line1", window_id).model_dump(), **update}
    edge.server_state()._windows.record_window(MetricWindow.model_construct(**fields), DEVICE, datetime.now(UTC))


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"inspected": 10**30}, "inspected"),
        ({"rejected": 500}, "rejected 500 > inspected 100"),
        ({"ended_at": datetime.now(UTC) - timedelta(days=1)}, "before started_at"),
        ({"model_version": "line1-bracket-a-v7"}, "never deployed"),
    ],
    ids=["count overflowing int64", "rejected over inspected", "ended before started", "model never deployed"],
)
def test_a_bad_stored_window_is_quarantined_and_the_good_ones_land(
    mfg_home: Path, tmp_path: Path, update: dict, reason: str
) -> None:
    edge = EdgeSync()
    state = edge.server_state()
    state.register_device("cam-01", "line1")
    key = tmp_path / "k.pem"
    generate_keypair(key, tmp_path / "k.pub.pem")
    package = make_package(tmp_path / "pkg", seed=3)
    state.publish(make_signed(package, key), package)
    assert state.record_window(make_window("cam-01", "line1", "good-1"), DEVICE, datetime.now(UTC))
    _store_unchecked(edge, "bad-1", **update)
    lineage = LineageStore()
    resources = {"edge": edge, "lineage": lineage}

    first = dg.materialize([edge_metrics], resources=resources)
    assert state.record_window(make_window("cam-01", "line1", "good-2"), DEVICE, datetime.now(UTC))
    second = dg.materialize([edge_metrics], resources=resources)

    assert first.success and second.success
    assert sorted(lineage.read_table("edge_windows")["window_id"]) == ["good-1", "good-2"]
    quarantine = lineage.read_table("edge_windows_quarantine")
    assert quarantine["window_id"].tolist() == ["bad-1"]  # once, not again on the second run
    assert reason in quarantine["reason"][0]
    metadata = first.asset_materializations_for_node("edge_metrics")[0].metadata
    assert metadata["quarantined_windows"].value == 1 and metadata["new_windows"].value == 1
