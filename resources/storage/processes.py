"""Whether the process behind a recorded pid still runs, told apart from a later process given the same pid.

A pid is reused once its process ends: on a busy host, or after many short processes, the number a
crashed run or writer left behind can belong to a new, unrelated process by the time anyone asks. A
bare "is the pid alive" then keeps a dead run STARTED, or a dead writer's leftovers on disk, until that
stranger ends too. Where the question comes with a moment at which the recorded process certainly
existed (the run's creation, the worker's start event, a file it wrote), a process that started after
that moment is someone else, and the recorded one is gone. Linux's ``/proc`` says when a process
started; where it cannot be read, only "alive" is judged (errs on the side of alive).
"""

import os
from pathlib import Path

__all__ = ["START_TIME_SLACK_S", "boot_time", "pid_alive", "pid_is_reused", "process_started_at"]

START_TIME_SLACK_S = 300.0
"""A process is judged to have started after a moment only when it did so by more than five minutes.
Start times come from the boot time, which follows the wall clock, while the moment was read from
the wall clock when it was written: a clock stepped forward in between (a time sync on a device
that booted without one) would otherwise make a live process look younger than its own record. A pid
is reused after the numbers wrap, far later than five minutes in practice."""


def pid_alive(pid: int) -> bool:
    """Whether a process of this host's pid namespace has ``pid`` (a process of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def boot_time() -> float | None:
    """When this host last booted (Unix time, from /proc/stat); None where that cannot be read."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def process_started_at(pid: int) -> float | None:
    """When the process now holding ``pid`` started (Unix time, to about a second); None where unknown.

    Field 22 of ``/proc/<pid>/stat`` is the start in clock ticks after boot; the command name before it
    is in parentheses and may hold spaces, so fields are counted after its closing one."""
    booted = boot_time()
    if booted is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return booted + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def pid_is_reused(pid: int, existed_at: float) -> bool:
    """True when ``pid`` is held now by a process that started after ``existed_at`` (Unix time), a moment
    at which the process recorded under that pid already ran: the recorded one has ended since."""
    started = process_started_at(pid)
    return started is not None and started > existed_at + START_TIME_SLACK_S
