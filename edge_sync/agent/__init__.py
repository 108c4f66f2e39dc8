"""The edge agent: fetch signed deployments, activate them safely, inspect camera images, report counts.

One agent runs on each inspection device beside a line camera. Its loop (:meth:`EdgeAgent.run`):

1. **sync**: ask the server for the line's signed manifest; verify the ed25519 signature and the
   schema version *before* downloading anything; download every file of the package resumably
   (``Range`` from the bytes already on disk), check each file's size and sha256, load the model and
   run the package's self-test (``selftest.npz``: the platform's own torch outputs on a few images,
   judged by the task's decoder); only then switch atomically (rename ``models/<version>.partial`` to
   ``models/<version>`` and replace ``active.json``). Whatever fails, the model that was running
   keeps running: the device never has a half-written or unverified model active.
2. **inspect**: decide every new image in the camera folder, append the decision to
   ``decisions.jsonl`` and move the image to ``processed/``; files that are not usable images go to
   ``rejected_input/`` with a reason, and the loop goes on.
3. **feedback**: count operator verdicts appended to ``feedback.csv`` (each image/verdict once) and
   queue each labelled image (a copy plus a JSON sidecar) in ``feedback_outbox/``; :meth:`EdgeAgent.flush_feedback`
   uploads them to ``POST /v1/feedback`` so operator-labelled images join the training data.
4. **windows**: counts, a defect-score histogram and an input-brightness histogram per window;
   a closed window is written to ``outbox/`` (atomically) *before* any upload, and deleted only once
   the server acknowledged it, so server downtime loses nothing and a retry is idempotent.

State on disk (``state_dir``)::

    active.json                  which version runs, which one is kept for rollback (the truth)
    models/<version>/            signed_manifest.json + package/ (the verified files)
    models/<version>.partial/    a download in progress (ignored at start, resumed by the next sync)
    agent_state.json             the open metric window, window sequence, feedback cursor
    decisions.jsonl              one line per inspected image
    outbox/<window_id>.json      closed windows waiting for upload (outbox/rejected/: refused ones)
    feedback_rejected.csv        operator lines that could not be understood (raw, to fix and append again)
    feedback_problems.log        why a feedback line was rejected or its image could not be labelled
    feedback_outbox/<sha256>.*   labelled images + <sha256>.json sidecars waiting for upload (rejected/: refused)

Cameras must write images atomically (write a dot-file or ``*.tmp``/``*.part`` and rename it), as
such names are not picked up; a half-written file under its final name would be sent to
``rejected_input/``.

The parts: :mod:`~edge_sync.agent.core` (the loop), :mod:`~edge_sync.agent.installer` and
:mod:`~edge_sync.agent.download` (sync and activation), :mod:`~edge_sync.agent.inspector`,
:mod:`~edge_sync.agent.feedback`, :mod:`~edge_sync.agent.windows`, :mod:`~edge_sync.agent.outbox`
(one outbox for every upload) and :mod:`~edge_sync.agent.cli`. The package imports nothing from
Dagster or from the platform's packages (only ``edge_sync``), so a device installs it alone.
"""

from edge_sync.agent.cli import main
from edge_sync.agent.config import AGENT_TASKS, AgentConfig, SyncOutcome, SyncStatus, utc_now
from edge_sync.agent.core import EdgeAgent
from edge_sync.agent.errors import AgentError, DownloadError, DownloadInterrupted, SelfTestFailed, VerificationError
from edge_sync.agent.feedback import FEEDBACK_OUTBOX_DIR, VERDICTS
from edge_sync.agent.inspector import Decision
from edge_sync.agent.installer import ACTIVE_FILE
from edge_sync.contract import SELFTEST_FILE

__all__ = [
    "ACTIVE_FILE",
    "AGENT_TASKS",
    "FEEDBACK_OUTBOX_DIR",
    "SELFTEST_FILE",
    "VERDICTS",
    "AgentConfig",
    "AgentError",
    "Decision",
    "DownloadError",
    "DownloadInterrupted",
    "EdgeAgent",
    "SelfTestFailed",
    "SyncOutcome",
    "SyncStatus",
    "VerificationError",
    "main",
    "utc_now",
]
