"""The ``engines`` resource: the machine the task engines compute on, and the engine of each task.

One resource for every task (it replaced ``trainer`` + ``anomaly_trainer``): the assets ask it for
the variant's engine and for the machine settings (threads, device) the engine runs with. A test
binds a subclass whose :meth:`Engines.engine` returns an engine with a fake trainer.
"""

import dagster as dg
from pydantic import Field

from resources.engine_io import EngineMachine, StepLog
from resources.tasks import TaskEngine, engine_for

__all__ = ["Engines"]


class Engines(dg.ConfigurableResource):
    """Where and with what the task engines fit, score and export."""

    num_threads: int = Field(2, ge=1, le=256, description="torch CPU threads used for training, fitting and scoring")
    device: str = Field(
        "auto", description="torch device for training and fitting: auto (CUDA when torch sees one), cpu or cuda"
    )

    def engine(self, task: str) -> TaskEngine:
        """The engine of ``task`` (``resources.tasks.engine_for``)."""
        return engine_for(task)

    def machine(self, log: StepLog) -> EngineMachine:
        """The machine settings for one step, with ``device`` resolved (auto: CUDA when there is one)."""
        from resources.devices import resolve_device

        return EngineMachine(num_threads=self.num_threads, device=resolve_device(self.device), log=log)
