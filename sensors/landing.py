"""``landing_zone_sensor``: new complete batches in the landing zone become partition runs."""

import json

import dagster as dg

from mfg_assets.jobs import TASK_JOBS, job_for_task
from mfg_assets.partitions import line_variant_partitions
from resources.data.variants import VariantRefused, run_config_path, split_partition_key
from resources.landing import LandingZone, find_complete_batches, invalid_folders
from resources.lineage import LineageStore
from sensors.policy import BatchRef, plan_landing_runs

__all__ = ["landing_zone_sensor"]


def _run_of(lineage: LineageStore, partition: str) -> tuple[str, dict]:
    """The job that runs the graph for the partition's variant (its task's) and the variant's saved
    run config (the options its onboard chose); raises ``VariantRefused`` when that cannot be used."""
    from mfg_assets.run_configs import variant_run_config
    from resources.data.variants import load_variant

    line, variant = split_partition_key(partition)
    home = lineage.home_path()
    return job_for_task(load_variant(line, variant, home).task), variant_run_config(line, variant, home)


def _saved_at(lineage: LineageStore, partition: str) -> str:
    """Where the options a run took come from (a tag, so a failing run says where to look)."""
    return str(run_config_path(*split_partition_key(partition), lineage.home_path()))


@dg.sensor(
    jobs=list(TASK_JOBS.values()),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new line/variant partitions and requests a run for each one with new complete batches.",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext, landing: LandingZone, lineage: LineageStore) -> dg.SensorResult:
    root = landing.root_path()
    seen = {k: int(v) for k, v in json.loads(context.cursor or "{}").items()}
    batches = [BatchRef(b.line, b.variant, b.batch, b.marker_mtime_ns) for b in find_complete_batches(root)]
    ingested_rows = lineage.read_table("image_batches")
    ingested: dict[str, set[str]] = {}
    for partition, batch in zip(ingested_rows.get("partition", []), ingested_rows.get("batch", []), strict=True):
        ingested.setdefault(partition, set()).add(batch)
    variants_dir = lineage.home_path() / "variants"
    registered = {f"{p.parent.name}.{p.stem}" for p in variants_dir.glob("*/*.json")}
    plan = plan_landing_runs(batches, seen=seen, ingested=ingested, registered_partitions=registered)
    for folder in invalid_folders(root):
        context.log.warning(f"{folder}: line/variant/batch names may only use letters, digits, - and _; rename it")
    for batch_id in plan.unregistered:
        context.log.warning(
            f"batch {batch_id} waits: its variant is not registered; run `mfgv onboard` for it first"
        )
    existing = set(context.instance.get_dynamic_partitions(line_variant_partitions.name))
    new_partitions = sorted({r.partition for r in plan.requests} - existing)
    requests, next_seen = [], dict(plan.seen)
    for r in plan.requests:
        try:
            job_name, run_config = _run_of(lineage, r.partition)
        except VariantRefused as exc:
            # this variant's batches wait (left out of the cursor, so they are seen again once it is fixed);
            # the other variants' runs go on
            context.log.error(f"batches {', '.join(r.batches)} of {r.partition} wait: {exc}")
            line, variant = split_partition_key(r.partition)
            for batch in r.batches:
                next_seen.pop(f"{line}/{variant}/{batch}", None)
            continue
        requests.append(
            dg.RunRequest(
                run_key=r.run_key,
                partition_key=r.partition,
                job_name=job_name,
                run_config=run_config,
                tags={"batches": ",".join(r.batches), **({"run_config": _saved_at(lineage, r.partition)} if run_config else {})},
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[line_variant_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps(next_seen, sort_keys=True),
    )
