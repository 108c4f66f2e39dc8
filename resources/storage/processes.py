"""Whether the process behind a recorded pid still runs, told apart from a later process given the same pid.

A pid is reused once its process ends: by the time anyone asks, the number a crashed run or writer
left behind can belong to a new, unrelated process, and a bare "is the pid alive" would keep a dead
run STARTED (or a dead writer's leftovers on disk) until that stranger ends too. Linux's ``/proc``
says when each process started, in clock ticks since boot: a count the wall clock cannot move. So
the platform records a process as ``<pid>-<start ticks>`` together with the boot (``boot_id``), and
a process holding the pid now with other start ticks is someone else. Where ``/proc`` cannot be
read, only "alive" is judged: the answer errs on the side of alive, because failing a live run or
deleting a live writer's work is worse than keeping a dead one's a while longer.

Runs launched through a code server are recorded by Dagster with the worker's pid and the wall
time of its start event only; for them :func:`wall_clock_at_boot` (recorded when the run is
launched, :func:`launch_record`) turns that time into seconds since boot, and nothing is judged if
the wall clock was stepped since (a device without a battery clock that synchronises after start-up).
A launch record also says which machine and boot launched the run: a run of this machine's earlier
boot is lost for certain (a power cut), whatever the clock says.
"""

import functools
import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

__all__ = [
    "START_SLACK_S",
    "boot_id",
    "boot_time",
    "launch_record",
    "lost_in_restart",
    "machine_tag",
    "pid_alive",
    "process_identity",
    "process_start_ticks",
    "same_process",
    "started_after",
    "wall_clock_at_boot",
]

START_SLACK_S = 2.0
"""A process is judged to have started after a moment (both in seconds since boot) only when it did
so by more than this: start events are written a little after the process starts."""

CLOCK_STEP_TOLERANCE_S = 1.0
"""How far the wall time at boot may differ between two readings before the clock counts as stepped."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this host's pid namespace has ``pid`` (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


@functools.cache
def boot_id() -> str:
    """This boot's random id (``/proc/sys/kernel/random/boot_id``); empty where there is none (not Linux)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@functools.cache
def machine_tag() -> str:
    """This machine and namespaces, the same across its boots (8 hex): the host name, ``/etc/machine-id``
    and the pid and time namespaces, whose views of pids and start ticks a judgement must share."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/etc/machine-id").read_text().strip())
    except OSError:
        parts.append("")
    for namespace in ("pid", "time"):
        try:
            parts.append(str(os.stat(f"/proc/self/ns/{namespace}").st_ino))
        except OSError:  # not Linux, or a kernel without time namespaces
            parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def launch_record() -> dict[str, Any]:
    """What a run records when it is launched or begun: this machine, this boot and the wall clock's
    reading of the boot time (absent where the boot clock cannot be read)."""
    record: dict[str, Any] = {"machine": machine_tag(), "boot_id": boot_id()}
    clock_at_boot = wall_clock_at_boot()
    if clock_at_boot is not None:
        record["clock_at_boot"] = round(clock_at_boot, 3)
    return record


def lost_in_restart(record: dict[str, Any]) -> bool:
    """Whether ``record`` (:func:`launch_record`) was made on this machine in an earlier boot; False when
    either boot is unknown or the record is another machine's (it cannot be judged from here)."""
    recorded = record.get("boot_id")
    return bool(recorded) and bool(boot_id()) and record.get("machine") == machine_tag() and recorded != boot_id()


def boot_time() -> float | None:
    """When this host last booted (Unix time, from /proc/stat); None where that cannot be read."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def wall_clock_at_boot() -> float | None:
    """The wall time at which this host booted by the wall clock as it reads now (moves when the clock
    is stepped); None where the boot clock cannot be read."""
    try:
        return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    except (AttributeError, OSError):
        return None


def process_start_ticks(pid: int) -> int | None:
    """When the process holding ``pid`` started, in clock ticks since boot; None where unknown.

    Field 22 of ``/proc/<pid>/stat``; the command name before it is in parentheses and may hold
    spaces, so fields are counted after its closing one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_identity(pid: int | None = None) -> str:
    """``<pid>-<start ticks>`` of ``pid`` (this process by default), or ``<pid>`` where the start is unknown."""
    pid = os.getpid() if pid is None else pid
    ticks = process_start_ticks(pid)
    return str(pid) if ticks is None else f"{pid}-{ticks}"


def same_process(identity: str) -> bool | None:
    """Whether the process recorded as ``identity`` (:func:`process_identity`, this boot) still runs:
    False when the pid is free or held by a process with other start ticks, None when the record
    carries no start ticks or they cannot be read now (only liveness can be judged then)."""
    pid_text, _, ticks_text = identity.partition("-")
    if not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if not pid_alive(pid):
        return False
    if not ticks_text.isdigit():
        return None
    now = process_start_ticks(pid)
    return None if now is None else now == int(ticks_text)


def started_after(pid: int, wall_time: float, recorded_clock_at_boot: float) -> bool:
    """True when the process holding ``pid`` started after ``wall_time``, a moment read from the wall
    clock whose time at boot was then ``recorded_clock_at_boot``. False when unknown, or when the
    wall clock was stepped since that record (the two times would not compare)."""
    ticks = process_start_ticks(pid)
    now_at_boot = wall_clock_at_boot()
    if ticks is None or now_at_boot is None or abs(now_at_boot - recorded_clock_at_boot) > CLOCK_STEP_TOLERANCE_S:
        return False
    return ticks / os.sysconf("SC_CLK_TCK") > wall_time - recorded_clock_at_boot + START_SLACK_S
