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
``dagster-daemon`` start them). Both kinds carry :data:`LAUNCH_TAG` (written by ``mfgv`` as it begins
a run, and by this launcher as it launches one): a run of this machine's earlier boot is gone for
certain (a power cut), and a worker whose pid is held now by a process that started after the
worker's start event is gone too (a reused pid), unless the wall clock was stepped since the launch.
Runs launched before that tag existed are judged lost in a restart by their worker's start event
predating the boot time, which a clock stepped forward since can misjudge.
Anything else is reported running: a run is never failed on a guess. A run that never got past
STARTING is failed by Dagster's start timeout, whose message gets the same reason.
"""

import json
import socket

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from resources.storage.processes import (
    boot_time,
    launch_record,
    lost_in_restart,
    machine_tag,
    pid_alive,
    started_after,
)

__all__ = ["LAUNCH_TAG", "LocalRunLauncher", "launch_tags", "run_worker_gone"]

LAUNCH_TAG = ".dagster/mfgv-launched"
"""Run tag written as a run is launched or begun: ``resources.storage.processes.launch_record`` as JSON.
Dagster's hidden prefix keeps this machine bookkeeping out of the UI's runs list."""
LEGACY_LAUNCH_TAG = "mfgv/launched"  # before 2026-12-07: still read on old runs


def tag_of(run: dg.DagsterRun, tag: str, legacy: str) -> str | None:
    """A run's tag under its current (hidden) key, else under the visible key older mfgv wrote."""
    return run.tags.get(tag) or run.tags.get(legacy)


def launch_tags() -> dict[str, str]:
    """:data:`LAUNCH_TAG` with this machine's record now."""
    return {LAUNCH_TAG: json.dumps(launch_record(), sort_keys=True)}

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
    """The machine, boot and clock reading recorded at launch (:data:`LAUNCH_TAG`); None for runs launched
    before it was recorded, or a tag that does not parse."""
    try:
        record = json.loads(tag_of(run, LAUNCH_TAG, LEGACY_LAUNCH_TAG) or "null")
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _worker_lost_in_restart(launched: dict | None, started_at: float) -> bool:
    """Whether the worker belonged to an earlier boot of this machine: by the launch record, or, for runs
    launched before it existed, by its start event predating the boot time."""
    if launched is not None:
        return lost_in_restart(launched)
    booted_at = boot_time()
    return booted_at is not None and started_at < booted_at


def _worker_pid_reused(launched: dict | None, pid: int, started_at: float) -> bool:
    """Whether ``pid`` is held by a process that started after the worker's start event (``started_at``),
    judged only with a clock reading this machine recorded at launch."""
    if launched is None or launched.get("machine") != machine_tag():
        return False
    clock_at_boot = launched.get("clock_at_boot")
    return isinstance(clock_at_boot, (int, float)) and started_after(pid, started_at, float(clock_at_boot))


_EARLIER_KEPT = (
    " The assets this run marks failed keep their earlier materializations: a model registered before stays "
    "registered and deployable."
)


def run_worker_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why ``run``'s process is known to be gone, or None when it runs or cannot be judged from here
    (and that what earlier runs made stands, which the UI's red assets do not say)."""
    why = _why_gone(instance, run)
    return None if why is None else why + _EARLIER_KEPT


def _why_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    from mfg_assets.instance import LEGACY_PROCESS_TAG, PROCESS_TAG
    from resources.storage.scratch import process_is_gone, tagged_pid

    grpc_info = run.tags.get(GRPC_INFO_TAG)
    tag = tag_of(run, PROCESS_TAG, LEGACY_PROCESS_TAG)
    launched = _launch_record(run)
    # An in-process run has no job origin to launch from; a launched one that carries PROCESS_TAG got it
    # from the parent it re-executes (Dagster copies tags), before or after GRPC_INFO_TAG is written.
    if tag is not None and run.remote_job_origin is None and grpc_info is None:
        pid = tagged_pid(tag)
        if launched is not None and lost_in_restart(launched):
            return (
                f"the mfgv process that executed this run ({pid}) was lost when this machine restarted, before "
                "the run finished; nothing it had not completed was registered; run the command again"
            )
        if process_is_gone(tag):
            return (
                f"the mfgv process that executed this run ({pid}) ended without finishing it (killed or "
                "crashed); nothing it had not completed was registered; run the command again"
            )
        return None
    if not _server_is_local(grpc_info):
        return None
    start = _worker_start(instance, run.run_id)
    if start is None:
        return None
    pid, started_at = start
    if _worker_lost_in_restart(launched, started_at):  # its pid may belong to another process by now
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
        """Record the machine, the boot and the wall clock's boot time before the worker starts (:data:`LAUNCH_TAG`)."""
        self._instance.add_run_tags(context.dagster_run.run_id, launch_tags())
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
