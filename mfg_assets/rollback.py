"""``rollback_job``: end a line's canary ring or put its fleet back on an earlier model, as a run.

The canary sensor requests it when a canary degrades; ``mfgv rollback`` does the same by hand. Runs
are recorded by Dagster, so every rollback is in the audit trail with who/what asked for it.
"""

import dagster as dg
from pydantic import Field

from resources.edge import EdgeSync, rollback_line
from resources.lineage import LineageStore

__all__ = ["RollbackConfig", "rollback_job"]


class RollbackConfig(dg.Config):
    line: str = Field(description="the line to roll back")
    to_version: str | None = Field(None, description="model version to run; default: end the canary, else the previous fleet version")
    reason: str = Field("requested by hand", description="why, for the audit trail")


@dg.op
def roll_back_line(context: dg.OpExecutionContext, config: RollbackConfig, edge: EdgeSync, lineage: LineageStore) -> str:
    outcome = rollback_line(edge, config.line, config.to_version)
    lineage.record(
        asset="rollback",
        partition=config.line,
        run_id=context.run_id,
        output_id=f"rollback:{config.line}:{context.run_id}",
        input_ids=[config.to_version] if config.to_version else [],
        parameters=config.model_dump(),
    )
    context.log.info(f"{outcome} ({config.reason})")
    return outcome


@dg.job(description="Roll a line back: end its canary, or run an earlier model on the fleet.")
def rollback_job() -> None:
    roll_back_line()
