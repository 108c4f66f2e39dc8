"""Pure decisions behind the sensors: no Dagster, no I/O, unit-tested on their own."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["BatchRef", "PartitionRequest", "plan_landing_runs"]


@dataclass(frozen=True)
class BatchRef:
    """A complete landing batch, as the sensor sees it."""

    line: str
    variant: str
    batch: str
    marker_mtime_ns: int

    @property
    def partition(self) -> str:
        return f"{self.line}.{self.variant}"

    @property
    def batch_id(self) -> str:
        return f"{self.line}/{self.variant}/{self.batch}"


@dataclass(frozen=True)
class PartitionRequest:
    partition: str
    batches: tuple[str, ...]
    run_key: str


@dataclass(frozen=True)
class LandingPlan:
    requests: tuple[PartitionRequest, ...]
    unregistered: tuple[str, ...]  # batch ids waiting for their variant to be registered
    seen: dict[str, int]  # batch id -> marker mtime, the next cursor


def plan_landing_runs(
    batches: Iterable[BatchRef],
    *,
    seen: Mapping[str, int],
    ingested: Mapping[str, set[str]],
    registered_partitions: set[str],
) -> LandingPlan:
    """Which partitions need a run for which new batches.

    A batch is new when the cursor has not seen it and the ``images`` table has not ingested it
    (``mfgv onboard`` ingests its own batch, so the sensor must not retrain for it). All new batches
    of one partition go into one run; its run key names them, so a restarted sensor cannot request
    the same run twice. Batches of unregistered variants stay out of the cursor, so they are picked
    up once the variant is registered.
    """
    new: dict[str, list[BatchRef]] = {}
    unregistered: list[str] = []
    next_seen = dict(seen)
    for batch in sorted(batches, key=lambda b: (b.partition, b.batch)):
        if batch.batch_id in seen or batch.batch in ingested.get(batch.partition, set()):
            next_seen.setdefault(batch.batch_id, batch.marker_mtime_ns)
            continue
        if batch.partition not in registered_partitions:
            unregistered.append(batch.batch_id)
            continue
        new.setdefault(batch.partition, []).append(batch)
        next_seen[batch.batch_id] = batch.marker_mtime_ns
    requests = tuple(
        PartitionRequest(
            partition=partition,
            batches=tuple(b.batch for b in group),
            run_key=f"{partition}:" + ",".join(f"{b.batch}@{b.marker_mtime_ns}" for b in group),
        )
        for partition, group in sorted(new.items())
    )
    return LandingPlan(requests=requests, unregistered=tuple(unregistered), seen=next_seen)
