"""Onboarding what is already registered: say which version it is, instead of training for minutes.

The same folder onboarded again lands as the same batch (its listing hash). When the variant's
latest registered version is the one the last ``mfgv onboard`` registered (not a run from the UI
or a sensor with other settings), was trained on exactly the batches that are ready now, and this
onboard asks for the same options (the saved run config), nothing would change but the clock:
``mfgv onboard`` names that version and stops, unless ``--force``.
"""

import json
from pathlib import Path
from typing import Any

from resources.landing import MARKER
from resources.registry import ModelVersion

__all__ = ["remember_onboarded", "unchanged_report", "unchanged_version"]


def _memo(line: str, variant: str, home: Path) -> Path:
    from resources.data.variants import run_config_path

    path = run_config_path(line, variant, home)
    return path.with_name(f"{path.stem}.onboarded.json")


def remember_onboarded(line: str, variant: str, version: str, home: Path) -> None:
    """Record which version the variant's last ``mfgv onboard`` registered."""
    from edge_sync.durable import write_atomic

    write_atomic(_memo(line, variant, home), json.dumps({"model_version": version}).encode())


def unchanged_version(line: str, variant: str, landing_dir: Path, chosen_options: dict[str, Any], home: Path) -> ModelVersion | None:
    """The registered version this onboard would only repeat, or ``None`` when something differs."""
    from resources.data.batches import withdrawn_batches
    from resources.data.variants import load_run_config, partition_key
    from resources.lineage import LineageStore
    from resources.registry import ModelRegistry

    versions = ModelRegistry().list_versions(line, variant)
    if not versions or load_run_config(line, variant, home) != chosen_options:
        return None
    latest = versions[-1]
    memo = _memo(line, variant, home)
    try:
        onboarded = json.loads(memo.read_text(encoding="utf-8")).get("model_version")
    except (OSError, ValueError, AttributeError):
        return None  # no record of which version an onboard made: train, rather than guess
    if onboarded != latest.version:
        return None
    lineage = LineageStore()
    ready = {marker.parent.name for marker in landing_dir.glob(f"*/{MARKER}")}
    ready -= withdrawn_batches(lineage, partition_key(line, variant))
    items = lineage.read_table("dataset_items", "dataset_id = ?", [latest.dataset_version])
    return latest if not items.empty and set(items["batch"]) == ready else None


def unchanged_report(version: ModelVersion, report_json: Path | None) -> dict[str, Any]:
    """What such an onboard returns, and writes to ``--report-json``: the version and its reports."""
    from resources.artifact_store import ArtifactStore

    store = ArtifactStore()
    report = {
        "unchanged": True,
        "registered": True,
        "model_version": version.version,
        "dataset_version": version.dataset_version,
        "report_html": str(store.path(version.artifacts["report_html"])),
        "report_json_full": str(store.path(version.artifacts["report_json"])),
        "message": (
            f"nothing changed since {version.version} (registered {str(version.registered_at)[:16]}): the same data and "
            "options, so nothing was trained. Pass --force to train again"
        ),
    }
    if report_json is not None:
        report_json.parent.mkdir(parents=True, exist_ok=True)
        report_json.write_text(json.dumps(report, indent=2, sort_keys=True))
    return report
