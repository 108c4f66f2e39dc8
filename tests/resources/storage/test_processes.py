"""A recorded process is told apart from a later process given the same pid, and a stepped clock judges nothing."""

import os
import subprocess
import sys
import time

from resources.storage.processes import (
    START_SLACK_S,
    boot_id,
    pid_alive,
    process_identity,
    process_start_ticks,
    same_process,
    started_after,
    wall_clock_at_boot,
)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def test_a_process_is_recorded_with_its_start_ticks_since_boot() -> None:
    before = time.time()
    with _sleeper() as child:
        try:
            after = time.time()
            ticks = process_start_ticks(child.pid)
            clock_at_boot = wall_clock_at_boot()
            assert ticks is not None and clock_at_boot is not None and boot_id()
            started = clock_at_boot + ticks / os.sysconf("SC_CLK_TCK")
            assert before - 1.0 <= started <= after + 1.0
            assert process_identity(child.pid) == f"{child.pid}-{ticks}"
            assert process_identity().startswith(f"{os.getpid()}-")
        finally:
            child.kill()


def test_a_pid_held_by_a_process_with_other_start_ticks_is_another_process() -> None:
    with _sleeper() as child:
        try:
            identity = process_identity(child.pid)
            pid, ticks = identity.split("-")
            assert same_process(identity) is True
            assert same_process(f"{pid}-{int(ticks) - 1}") is False  # the number reused by a younger process
            assert same_process(pid) is None  # a record without start ticks: only liveness can be judged
        finally:
            child.kill()
    child.wait()
    assert not pid_alive(child.pid) and process_start_ticks(child.pid) is None
    assert same_process(identity) is False and same_process(str(child.pid)) is False
    assert same_process("not-a-pid") is None


def test_started_after_compares_in_seconds_since_boot_and_refuses_a_stepped_clock() -> None:
    clock_at_boot = wall_clock_at_boot()
    assert clock_at_boot is not None
    with _sleeper() as child:
        try:
            assert started_after(child.pid, time.time() - START_SLACK_S - 60, clock_at_boot)  # reported long before
            assert not started_after(child.pid, time.time(), clock_at_boot)  # reported after it started
            # the same long-before moment, but the wall clock was stepped 100 s since it was recorded
            assert not started_after(child.pid, time.time() - START_SLACK_S - 60, clock_at_boot - 100)
        finally:
            child.kill()
    child.wait()
    assert not started_after(child.pid, 0.0, clock_at_boot)  # nothing holds the pid: nothing to compare
