"""Named crash points for the fault tests: the process kills itself where a real crash would hurt.

``MFG_FAILPOINTS=ingest.before_batch_commit`` (names separated by commas) makes the process that
reaches :func:`failpoint` with that name send itself ``SIGKILL``: no ``finally``, no flush, no
cleanup, as with a power cut, the OOM killer or ``kill -9``. The fault tests (``tests/test_faults.py``)
set it on a real ``mfgv`` process and then rerun the same command, to prove that a crash at that
point loses nothing, duplicates nothing and leaves no half-written artifact.

Unset (always, in production) a failpoint costs one environment lookup. It lives in ``edge_sync``,
the package every other one may import, so the device side and the platform share one mechanism.
"""

import os
import signal
import sys

__all__ = ["ENV", "failpoint"]

ENV = "MFG_FAILPOINTS"


def failpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is listed in ``MFG_FAILPOINTS``; else do nothing.

    A line naming the point goes to stderr first, so a test can tell the crash it asked for from
    any other death of the process."""
    listed = os.environ.get(ENV)
    if not listed or name not in {item.strip() for item in listed.split(",")}:
        return
    sys.stderr.write(f"failpoint {name}: killing process {os.getpid()} with SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)
