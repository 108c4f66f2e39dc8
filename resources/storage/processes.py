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
launched) turns that time into seconds since boot, and nothing is judged if the wall clock was
stepped since (a device without a battery clock that synchronises after start-up).
"""

import functools
import os
import time
from pathlib import Path

__all__ = [
    "START_SLACK_S",
    "boot_id",
    "boot_time",
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
