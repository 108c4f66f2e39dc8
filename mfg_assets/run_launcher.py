"""Dagster's default run launcher, plus the health check that lets the daemon fail runs whose process died.

Dagster's ``DefaultRunLauncher`` starts each run in a worker process of the code location's server
but cannot say whether that process still lives, so a run whose worker was killed (``kill -9``, the
OOM killer, a power cut, ``dagster dev`` stopped hard) says STARTED in the UI forever, and an audit
trail that says a run is still going when it ended unfinished is wrong. With run monitoring on
(``mfg_assets.instance.DAGSTER_YAML``), the daemon asks :meth:`LocalRunLauncher.check_run_worker_health`
about every started run and marks failed, with the reason, those whose process is gone.

A pid is judged only where it means something. Runs that ``mfgv`` executes in its own process carry
the process (pid and start ticks) and host in a tag (``mfg_assets.instance.PROCESS_TAG``). Runs
launched through a code server (by the UI, a sensor or a re-execution, which also copies a parent
run's tags) are judged by the pid the worker reports when it starts ("Started process for run (pid:
N)"), and only when that server listens on this host (a local port or socket, as ``dagster dev`` and
``dagster-daemon`` start them). This launcher tags each run it launches with the boot and the wall
clock's reading of the boot time (:data:`LAUNCH_TAG`): a worker of another boot is gone for certain
(a power cut), and one whose pid is held now by a process that started after the worker's start
event is gone too (a reused pid), unless the wall clock was stepped since the launch.
Anything else is reported running: a run is never failed on a guess. A run that never got past
STARTING is failed by Dagster's start timeout, whose message gets the same reason.
"""

import json
import socket

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from resources.storage.processes import boot_id, boot_time, pid_alive, started_after, wall_clock_at_boot

__all__ = ["LAUNCH_TAG", "LocalRunLauncher", "run_worker_gone"]

LAUNCH_TAG = "mfgv/launched"
"""Run tag written at launch: ``{"boot_id": ..., "clock_at_boot": ...}`` (JSON) of the launching host."""

_STARTED_PREFIX = "Started process for run (pid: "
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", ""})


def _server_is_local(grpc_info: str | None) -> bool:
    """Whether the code server the run was launched on (Dagster's ``.dagster/grpc_info`` tag) runs on this host."""
    if not grpc_info:
        return False
    try:
        info = json.loads(grpc_info)
    except ValueError:
        return False
    if info.get("socket"):
        return True  # a Unix socket only reaches a process of this host
    host = str(info.get("host", ""))
    return host in _LOCAL_HOSTS or host in {socket.gethostname(), socket.getfqdn()}


def _worker_start(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid the run's worker reported when it started and when (Unix time), newest first (a resumed
    run starts a new worker); None before the worker started."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, ascending=False).records
    for record in records:
        entry = record.event_log_entry
        message = entry.message or ""  # the structured event's message (user_message is empty)
        if message.startswith(_STARTED_PREFIX):
            digits = message[len(_STARTED_PREFIX) :].split(")", 1)[0]
            if digits.isdigit():
                return int(digits), float(entry.timestamp)
    return None


def _launch_record(run: dg.DagsterRun) -> dict | None:
    """The boot and clock reading this launcher recorded (:data:`LAUNCH_TAG`); None for runs launched
    before it did, or a tag that does not parse."""
    try:
        record = json.loads(run.tags.get(LAUNCH_TAG) or "null")
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("boot_id"), str):
        return None
    return record


def _lost_in_restart(launched: dict | None, started_at: float) -> bool:
    """Whether the worker belonged to an earlier boot of this host: by the boot id recorded at launch,
    or, for runs launched before it was recorded, by its start event predating the boot time."""
    if launched is not None:
        return bool(launched["boot_id"]) and launched["boot_id"] != boot_id()
    booted_at = boot_time()
    return booted_at is not None and started_at < booted_at


def _worker_pid_reused(launched: dict | None, pid: int, started_at: float) -> bool:
    clock_at_boot = (launched or {}).get("clock_at_boot")
    return isinstance(clock_at_boot, (int, float)) and started_after(pid, started_at, float(clock_at_boot))


def run_worker_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why ``run``'s process is known to be gone, or None when it runs or cannot be judged from here."""
    from mfg_assets.instance import PROCESS_TAG
    from resources.storage.scratch import process_is_gone

    grpc_info = run.tags.get(GRPC_INFO_TAG)
    tag = run.tags.get(PROCESS_TAG)
    if grpc_info is None and tag is not None:  # with a code server's tag, PROCESS_TAG came from a parent run
        if process_is_gone(tag):
            return (
                f"the mfgv process that executed this run ({tag.split('.')[0].split('-')[0]}) ended without "
                "finishing it (killed or crashed); nothing it had not completed was registered; run the command again"
            )
        return None
    if not _server_is_local(grpc_info):
        return None
    start = _worker_start(instance, run.run_id)
    if start is None:
        return None
    pid, started_at = start
    launched = _launch_record(run)
    if _lost_in_restart(launched, started_at):  # its pid may belong to another process by now
        return (
            f"the run worker process ({pid}) was lost when this machine restarted, before the run finished; "
            "nothing it had not completed was registered; launch the run again"
        )
    if pid_alive(pid) and not _worker_pid_reused(launched, pid, started_at):
        return None
    return (
        f"the run worker process ({pid}) ended without finishing the run (killed or crashed, e.g. by the "
        "out-of-memory killer or a stop of dagster dev); nothing it had not completed was registered; "
        "launch the run again"
    )


class LocalRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` that reports a dead run worker to the daemon's run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def launch_run(self, context: LaunchRunContext) -> None:
        """Record the boot and the wall clock's boot time before the worker starts (:data:`LAUNCH_TAG`)."""
        clock_at_boot = wall_clock_at_boot()
        record = {"boot_id": boot_id(), **({"clock_at_boot": round(clock_at_boot, 3)} if clock_at_boot is not None else {})}
        self._instance.add_run_tags(context.dagster_run.run_id, {LAUNCH_TAG: json.dumps(record, sort_keys=True)})
        super().launch_run(context)

    def get_run_worker_debug_info(self, run: dg.DagsterRun, include_container_logs: bool | None = True) -> str | None:
        """Added by the daemon to its message when a run stays STARTING past Dagster's start timeout (or
        CANCELING past its cancel timeout): why, where the worker is known to be gone. None for a STARTED
        run: the health check's reason is already in that message."""
        if run.status == dg.DagsterRunStatus.STARTED:
            return None
        return run_worker_gone(self._instance, run)

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        # The monitor fails a run on any status but RUNNING and SUCCESS, so "cannot judge" is RUNNING.
        why = run_worker_gone(self._instance, run)
        if why is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, why)
