"""``edge_metrics``: the metric windows devices uploaded, landed in the warehouse.

The sync server stores each window once (idempotent by device and window id); this asset copies
the windows it has not seen yet into the append-only ``edge_windows`` table, so the health sensor,
DuckDB queries and the audit trail read one place. A schedule materializes it every few minutes.
"""

import json
from typing import Any

import dagster as dg
from pydantic import ValidationError

from edge_sync.contract import MetricWindow

from resources.storage.code_version import code_version
from resources.edge import EdgeSync
from resources.landing import LandingZone
from resources.lineage import LineageStore

__all__ = ["edge_feedback", "edge_metrics", "load_edge_windows", "screen_window"]

HISTOGRAM_COLUMNS = ("score_histogram", "input_brightness_histogram")
JSON_COLUMNS = (*HISTOGRAM_COLUMNS, "counters")
"""Window fields stored as JSON text: the histograms and the task decoder's counters (``{}`` when none)."""


def load_edge_windows(lineage: LineageStore, line: str | None = None):
    """The landed windows (histograms decoded back to lists), optionally of one line."""
    rows = lineage.read_table("edge_windows", "line = ?", [line]) if line else lineage.read_table("edge_windows")
    for column in JSON_COLUMNS:
        if column in rows:  # windows landed before counters existed read as {}
            rows[column] = [json.loads(value) if isinstance(value, str) else {} for value in rows[column]]
    return rows


def screen_window(window: dict[str, Any], deployed: bool) -> str | None:
    """Why a stored window must not land (None when it may): the contract's checks again, because a
    window stored by an older server, or written into the state folder by hand, never passed them,
    and one absurd count (``10**30``) would fail every later run of this asset."""
    fields = {key: window.get(key) for key in MetricWindow.model_fields if key in window or key != "counters"}
    try:
        MetricWindow.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "window"
        return f"{where}: {first['msg']} ({exc.error_count()} problem(s))"
    if not deployed:
        return f"model_version {window.get('model_version')!r} was never deployed to line {window.get('line')!r}"
    return None


def _seen(lineage: LineageStore, table: str) -> set[tuple[str, str]]:
    rows = lineage.read_table(table)
    return set(zip(rows["device_id"], rows["window_id"], strict=True)) if not rows.empty else set()


@dg.asset(group_name="edge", code_version=code_version(), kinds={"parquet"})
def edge_metrics(context: dg.AssetExecutionContext, edge: EdgeSync, lineage: LineageStore) -> dg.MaterializeResult:
    """New metric windows from the sync server, appended to the ``edge_windows`` table.

    A stored window that breaks the contract goes to ``edge_windows_quarantine`` with its reason
    (and its JSON), once; the good windows land beside it.
    """
    seen = _seen(lineage, "edge_windows")
    quarantined_before = _seen(lineage, "edge_windows_quarantine")
    state = edge.server_state()
    fresh = [
        w for w in state.windows() if (w["device_id"], w["window_id"]) not in seen | quarantined_before
    ]
    rows: list[dict[str, Any]] = []
    quarantined: list[dict[str, Any]] = []
    good: list[dict[str, Any]] = []
    deployed_cache: dict[tuple[str, str], bool] = {}
    for window in fresh:
        key = (str(window.get("line")), str(window.get("model_version")))
        if key not in deployed_cache:
            deployed_cache[key] = state.deployed_manifest(*key) is not None
        reason = screen_window(window, deployed_cache[key])
        if reason is not None:
            quarantined.append(
                {
                    "device_id": str(window.get("device_id")),
                    "window_id": str(window.get("window_id")),
                    "line": key[0],
                    "received_at": str(window.get("received_at")),
                    "reason": reason,
                    "window_json": json.dumps(window, sort_keys=True, default=str),
                    "run_id": context.run_id,
                }
            )
            context.log.warning(
                f"quarantined metric window {window.get('window_id')!r} of device {window.get('device_id')!r}: "
                f"{reason}; the server keeps it, edge_windows_quarantine says why (fix the device, it will not land)"
            )
            continue
        good.append(window)
        row = {key: (json.dumps(value) if key in JSON_COLUMNS else value) for key, value in window.items()}
        row.setdefault("counters", "{}")
        rows.append({k: (str(v) if k.endswith("_at") else v) for k, v in row.items()})
    if quarantined:
        lineage.append_table("edge_windows_quarantine", quarantined, prefix="windows")
    if rows:
        lineage.append_table("edge_windows", rows, prefix="windows")
    context.log.info(f"landed {len(rows)} new metric windows ({len(seen)} before), quarantined {len(quarantined)}")
    per_line: dict[str, dict[str, int]] = {}
    for window in good:
        totals = per_line.setdefault(window["line"], {"inspected": 0, "rejected": 0})
        totals["inspected"] += int(window["inspected"])
        totals["rejected"] += int(window["rejected"])
    return dg.MaterializeResult(
        metadata={
            "new_windows": len(rows),
            "total_windows": len(seen) + len(rows),
            "quarantined_windows": len(quarantined),
            "quarantine_reasons": dg.MetadataValue.json([row["reason"] for row in quarantined[:20]]),
            "new_counts_per_line": dg.MetadataValue.json(per_line),
        }
    )


@dg.asset(group_name="edge", code_version=code_version(), kinds={"parquet"})
def edge_feedback(
    context: dg.AssetExecutionContext, edge: EdgeSync, landing: LandingZone, lineage: LineageStore
) -> dg.MaterializeResult:
    """Operator-labelled images uploaded by devices, landed as new batches of their line's variant.

    The landing-zone sensor then ingests them like any camera batch, so the next training run
    (a retrain the edge-loop sensor requested, say) trains on a new dataset version that includes them.
    """
    from resources.data.feedback import land_feedback, landed_keys
    from resources.data.variants import load_variant

    deployments = lineage.read_table("deployments")
    if deployments.empty:
        return dg.MaterializeResult(metadata={"new_batches": 0, "unattributed": 0})
    landed = lineage.read_table("feedback_landed")
    already = set(landed["sha256"]) if not landed.empty else set()
    state = edge.server_state()
    batches = []
    unattributed = 0
    for line, rows in deployments.groupby("line"):
        # Each item names the model whose decision the operator judged; that model's variant is where
        # the image belongs (not the variant deployed last, which may be another product).
        versions_of: dict[str, set[str]] = {}
        for row in rows.itertuples():
            versions_of.setdefault(row.variant, set()).add(row.model_version)
        known = set().union(*versions_of.values())
        strays = {
            item["model_version"]
            for item in state.feedback(line)
            if item["model_version"] not in known and item["sha256"] not in already
        }
        if strays:
            unattributed += len(strays)
            context.log.warning(
                f"line {line}: feedback names model version(s) {sorted(strays)} never deployed to this line, so its "
                "variant is unknown; it stays on the sync server (check the device's line and the deployments table)"
            )
        for variant, versions in sorted(versions_of.items()):
            spec = load_variant(line, variant, lineage.home_path())
            batch = land_feedback(
                state, line, variant, landing.root_path(), already_landed=already, model_versions=versions,
                mvtec_good_class=spec.good_class if spec.label_format == "mvtec" else None,
            )
            if batch is None:
                continue
            keys = landed_keys(batch)
            lineage.append_table(
                "feedback_landed",
                [{"sha256": key, "line": line, "variant": variant, "batch": batch.name, "run_id": context.run_id} for key in sorted(keys)],
                prefix=batch.name,
            )
            already |= keys
            batches.append(str(batch))
            context.log.info(f"landed {len(keys)} operator-labelled images of line {line} as {batch}")
    return dg.MaterializeResult(
        metadata={
            "new_batches": len(batches),
            "batches": dg.MetadataValue.json(batches),
            "unattributed": unattributed,
        }
    )
