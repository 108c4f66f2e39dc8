"""A recorded pid is told apart from a younger process that was given the same number."""

import os
import subprocess
import sys
import time

from resources.storage.processes import START_TIME_SLACK_S, pid_alive, pid_is_reused, process_started_at


def test_a_processs_start_is_read_from_proc_to_about_a_second() -> None:
    before = time.time()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            after = time.time()
            started = process_started_at(child.pid)
            assert started is not None and before - 1.5 <= started <= after + 1.5
            own = process_started_at(os.getpid())
            assert own is not None and own <= before + 1.5
        finally:
            child.kill()


def test_a_pid_is_reused_only_when_its_holder_started_well_after_the_recorded_moment() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as child:
        try:
            assert pid_alive(child.pid)
            assert pid_is_reused(child.pid, existed_at=time.time() - START_TIME_SLACK_S - 60)
            assert not pid_is_reused(child.pid, existed_at=time.time())  # started before: may be the one recorded
            assert not pid_is_reused(child.pid, existed_at=time.time() - 60)  # within the clock-step allowance
        finally:
            child.kill()
    child.wait()
    assert not pid_alive(child.pid) and process_started_at(child.pid) is None  # gone: nothing to read
    assert not pid_is_reused(child.pid, existed_at=0.0)
