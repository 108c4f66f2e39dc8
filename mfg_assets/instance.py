"""The Dagster instance under ``MFG_HOME/dagster``, shared by ``mfgv`` and ``dagster dev``."""

import os
from pathlib import Path

import dagster as dg

from edge_sync.durable import write_atomic
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
        write_atomic(config, DAGSTER_YAML.encode())  # a kill mid-write must not leave half a config
    os.environ["DAGSTER_HOME"] = str(target)
    apply_offline_switches(home)
    return home


def get_instance(home: Path | None = None) -> dg.DagsterInstance:
    prepare_home(home)
    return dg.DagsterInstance.get()


PROCESS_TAG = "mfgv/process"
"""Run tag naming the process that executes an in-process run (``resources.storage.scratch.process_tag``)."""


def run_tags() -> dict[str, str]:
    """Tags for a run ``mfgv`` executes in its own process, so a later command can tell it died."""
    from resources.storage.scratch import process_tag

    return {PROCESS_TAG: process_tag()}


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs an ``mfgv`` process started and never finished because it died.

    A run executed in-process whose process is killed (``kill -9``, OOM, power cut) would say
    STARTED in the UI forever; the audit trail must say it failed and why. Only runs tagged with a
    process of this host that is gone are touched. Returns their run ids."""
    from resources.storage.scratch import process_is_gone

    failed = []
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )
    for record in records:
        run = record.dagster_run
        tag = run.tags.get(PROCESS_TAG)
        if tag is None or not process_is_gone(tag):
            continue
        instance.report_run_failed(
            run,
            f"the mfgv process that executed this run ({tag.split('.')[0]}) ended without finishing it "
            "(killed or crashed); nothing it had not completed was registered; run the command again",
        )
        failed.append(run.run_id)
    return failed
