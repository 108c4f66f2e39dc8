"""Dagster's default run launcher, plus the health check that lets the daemon fail runs whose process died.

Dagster's ``DefaultRunLauncher`` starts each run in a worker process of the code location's server
but cannot say whether that process still lives, so a run whose worker was killed (``kill -9``, the
OOM killer, a power cut, ``dagster dev`` stopped hard) says STARTED in the UI forever, and an audit
trail that says a run is still going when it ended unfinished is wrong. With run monitoring on
(``mfg_assets.instance.DAGSTER_YAML``), the daemon asks :meth:`LocalRunLauncher.check_run_worker_health`
about every started run and marks failed, with the reason, those whose process is gone.

A pid is judged only where it means something: runs that ``mfgv`` executes in its own process carry
the process and host in a tag (``mfg_assets.instance.PROCESS_TAG``); runs launched through a code
server are judged by the pid the worker reports when it starts ("Started process for run (pid: N)"),
or gone for certain if it started before this host's last boot (a power cut) or if the pid is held now
by a process that started after the run's own did (the pid was reused), and only when that
server listens on this host (a local port or socket, as ``dagster dev`` and
``dagster-daemon`` start them). Anything else is reported running: a run is never failed on a guess.
A run that never got past STARTING is failed by Dagster's start timeout, whose message gets the same reason.
"""

import json
import socket

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

from resources.storage.processes import boot_time

__all__ = ["LocalRunLauncher", "run_worker_gone"]

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


def _first_event_at(instance: dg.DagsterInstance, run_id: str) -> float | None:
    """When the run's first event was written (Unix time): an in-process run's process wrote it itself."""
    records = instance.get_records_for_run(run_id, limit=1, ascending=True).records
    return float(records[0].event_log_entry.timestamp) if records else None


def run_worker_gone(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Why ``run``'s process is known to be gone, or None when it runs or cannot be judged from here."""
    from mfg_assets.instance import PROCESS_TAG
    from resources.storage.processes import pid_alive, pid_is_reused
    from resources.storage.scratch import process_is_gone

    tag = run.tags.get(PROCESS_TAG)
    if tag is not None:
        if process_is_gone(tag, _first_event_at(instance, run.run_id)):
            return (
                f"the mfgv process that executed this run ({tag.split('.')[0]}) ended without finishing it "
                "(killed or crashed); nothing it had not completed was registered; run the command again"
            )
        return None
    if not _server_is_local(run.tags.get(GRPC_INFO_TAG)):
        return None
    start = _worker_start(instance, run.run_id)
    if start is None:
        return None
    pid, started_at = start
    booted_at = boot_time()
    if booted_at is not None and started_at < booted_at:  # its pid may belong to another process by now
        return (
            f"the run worker process ({pid}) was lost when this machine restarted, before the run finished; "
            "nothing it had not completed was registered; launch the run again"
        )
    if pid_alive(pid) and not pid_is_reused(pid, started_at):
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

    def get_run_worker_debug_info(self, run: dg.DagsterRun, include_container_logs: bool | None = True) -> str | None:
        """Added by the daemon to its message when a run never got past STARTING (Dagster's start timeout,
        which asks nothing else): why, where the worker is known to be gone."""
        return run_worker_gone(self._instance, run)

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        # The monitor fails a run on any status but RUNNING and SUCCESS, so "cannot judge" is RUNNING.
        why = run_worker_gone(self._instance, run)
        if why is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, why)
