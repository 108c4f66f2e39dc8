"""A failpoint is nothing unless named, and a real SIGKILL when named."""

import os
import signal
import subprocess
import sys

CODE = "from edge_sync.failpoints import failpoint; failpoint('a.b'); print('survived')"


def _run(points: str | None) -> subprocess.CompletedProcess:
    env = {} if points is None else {"MFG_FAILPOINTS": points}
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env={**os.environ, **env})


def test_an_unnamed_failpoint_does_nothing() -> None:
    for points in (None, "", "a.c", "a"):
        done = _run(points)
        assert done.returncode == 0 and done.stdout.strip() == "survived", (points, done.stderr)


def test_a_named_failpoint_kills_the_process_with_sigkill_and_says_where() -> None:
    done = _run("x.y, a.b")
    assert done.returncode == -signal.SIGKILL
    assert "failpoint a.b: killing process" in done.stderr and "survived" not in done.stdout
