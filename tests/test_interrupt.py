"""Ctrl-C during ``mfgv onboard``, as a terminal sends it (SIGINT to the whole process group): one
line saying what was kept and what to rerun, exit 130, no traceback from mfgv or the helpers Dagster
starts beside a run; the same command then finishes."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.processes import MFGV, mfgv

pytestmark = pytest.mark.e2e
FAST = ["--epochs", "8", "--image-size", "64", "--min-accuracy", "0", "--max-test-escape-rate", "1"]


def test_ctrl_c_during_training_says_what_was_kept_in_one_line(mfg_home: Path, tiny_line: Path) -> None:
    command = [*MFGV, "onboard", str(tiny_line), "--line", "l1", "--variant", "v1", "--good-class", "good", *FAST]
    env = {**os.environ, "MFG_HOME": str(mfg_home)}
    env.pop("DAGSTER_HOME", None)
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list((mfg_home / "tables").glob("dataset_items/*.parquet")):  # the split is made: training is next
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.5)
        time.sleep(4)
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, err[-3000:]
    assert err.count("mfgv onboard: interrupted.") == 1 and "Run the same command again" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    again = mfgv(mfg_home, "onboard", str(tiny_line), "--line", "l1", "--variant", "v1", "--good-class", "good", *FAST)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "model version" in again.stdout and "l1-v1-v1" in again.stdout
