"""The Dagster instance under ``MFG_HOME/dagster``, shared by ``mfgv`` and ``dagster dev``."""

import os
from pathlib import Path

import dagster as dg

from resources.settings import apply_offline_switches, dagster_home, mfg_home

__all__ = ["prepare_home", "get_instance"]

DAGSTER_YAML = """# Written by mfgv: the platform never phones home.
telemetry:
  enabled: false
"""


def prepare_home(home: Path | None = None) -> Path:
    """Create MFG_HOME and its Dagster home (telemetry off); point DAGSTER_HOME at it."""
    home = home or mfg_home()
    target = dagster_home(home)
    target.mkdir(parents=True, exist_ok=True)
    config = target / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    os.environ["DAGSTER_HOME"] = str(target)
    apply_offline_switches(home)
    return home


def get_instance(home: Path | None = None) -> dg.DagsterInstance:
    prepare_home(home)
    return dg.DagsterInstance.get()
