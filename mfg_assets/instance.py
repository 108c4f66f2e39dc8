"""The Dagster instance under ``MFG_HOME/dagster``, shared by ``mfgv`` and ``dagster dev``."""

import os
from pathlib import Path

import dagster as dg

from edge_sync.durable import write_atomic
from resources.errors import MfgVisionError
from resources.settings import apply_offline_switches, dagster_home, mfg_home

__all__ = ["HomeUnusable", "get_instance", "prepare_home", "require_writable_home"]


class HomeUnusable(MfgVisionError):
    """MFG_HOME cannot be written, or its Dagster config cannot be read; the message says what to do."""


def require_writable_home(home: Path) -> None:
    """Refuse, with the fix, an MFG_HOME that cannot be created or written (a file in the way, a
    read-only disk, another user's folder) before a command starts work in it."""
    probe = home / f".mfgv-write-check-{os.getpid()}"
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HomeUnusable(
            f"MFG_HOME={home} cannot be written ({exc.strerror or exc}: {exc.filename or home}); set MFG_HOME to a "
            "folder you can write (e.g. export MFG_HOME=$PWD/.mfg), or fix the folder's permissions"
        ) from exc

DAGSTER_YAML = """# Written by mfgv (dagster.yaml v3): the platform never phones home, the UI opens without Dagster's
# community sign-up dialog, and the daemon fails runs whose process died (mfg_assets.run_launcher)
# instead of leaving them STARTED forever.
telemetry:
  enabled: false
nux:
  enabled: false
run_launcher:
  module: mfg_assets.run_launcher
  class: LocalRunLauncher
run_monitoring:
  enabled: true
  poll_interval_seconds: 30
"""
_OURS = "# Written by mfgv"
_CURRENT = "(dagster.yaml v3)"


def prepare_home(home: Path | None = None) -> Path:
    """Create MFG_HOME and its Dagster home (telemetry off); point DAGSTER_HOME at it."""
    home = home or mfg_home()
    target = dagster_home(home)
    require_writable_home(home)
    target.mkdir(parents=True, exist_ok=True)
    config = target / "dagster.yaml"
    if _needs_writing(config):
        write_atomic(config, DAGSTER_YAML.encode())  # a kill mid-write must not leave half a config
    os.environ["DAGSTER_HOME"] = str(target)
    apply_offline_switches(home)
    return home


def _needs_writing(config: Path) -> bool:
    """A missing config, or one an older mfgv wrote (upgraded in place); a plant's own edits of the
    current version, or a config a person wrote, are left as they are."""
    if not config.exists():
        return True
    first_line = config.read_text(errors="replace").partition("\n")[0]
    return first_line.startswith(_OURS) and _CURRENT not in first_line


def get_instance(home: Path | None = None) -> dg.DagsterInstance:
    """The Dagster instance under MFG_HOME; a config that cannot be read is refused with the fix."""
    import yaml

    home = prepare_home(home)
    try:
        return dg.DagsterInstance.get()
    except (yaml.YAMLError, dg.DagsterInvalidConfigError) as exc:
        config = dagster_home(home) / "dagster.yaml"
        first = str(exc).strip().splitlines()
        raise HomeUnusable(
            f"{config} is not a valid Dagster instance config ({' '.join(first[:3])}); fix it, or move it aside and run "
            "`mfgv init` to write mfgv's own"
        ) from exc


PROCESS_TAG = ".dagster/mfgv-process"
"""Run tag naming the process that executes an in-process run (``resources.storage.scratch.process_tag``);
hidden from the UI's runs list like Dagster's own bookkeeping."""
LEGACY_PROCESS_TAG = "mfgv/process"  # before 2026-12-07: still read on old runs


def run_tags() -> dict[str, str]:
    """Tags for a run ``mfgv`` executes in its own process, so a later command can tell it died (or was
    lost in a restart of this machine)."""
    from mfg_assets.run_launcher import launch_tags
    from resources.storage.scratch import process_tag

    return {PROCESS_TAG: process_tag(), **launch_tags()}


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the started runs whose process died before finishing them.

    A run whose process is killed (``kill -9``, OOM, power cut) would say STARTED in the UI forever;
    the audit trail must say it failed and why. The daemon does this while it runs
    (``mfg_assets.run_launcher``); ``mfgv`` does it too before its own runs, for when no daemon was
    running (a reboot, a line PC without ``dagster dev``). Only runs whose process is known to be gone
    are touched (``run_launcher.run_worker_gone``). Returns their run ids."""
    from mfg_assets.run_launcher import run_worker_gone

    failed = []
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )
    for record in records:
        run = record.dagster_run
        why = run_worker_gone(instance, run)
        if why is None:
            continue
        instance.report_run_failed(run, why)
        failed.append(run.run_id)
    return failed
