"""The closed loop: edge metrics → retrain, canary promotion, or rollback; and the sync housekeeping.

``edge_loop_sensor`` reads the live deployments (sync server state + the ``deployments`` table with
their baselines) and the landed metric windows, asks the pure ``plan_edge_actions`` what to do, and
requests runs with run keys naming the deployment, so each decision is made once.
"""

import json
import warnings

import dagster as dg

from mfg_assets.deployment import promotion_config
from mfg_assets.edge_metrics import load_edge_windows
from mfg_assets.jobs import deploy_job, edge_metrics_job, retrain_job
from mfg_assets.rollback import RollbackConfig, rollback_job
from mfg_assets.run_configs import variant_run_config
from resources.data.variants import VariantRefused, run_config_path, split_partition_key
from resources.edge import EdgePolicy, EdgeSync
from resources.lineage import LineageStore
from sensors.policy import LiveDeployment, plan_edge_actions

__all__ = ["edge_loop_sensor", "edge_housekeeping_schedule", "live_deployments"]


def live_deployments(edge: EdgeSync, lineage: LineageStore) -> list[LiveDeployment]:
    """Deployments live on a ring now, joined with the baseline recorded when they were published."""
    from edge_sync.contract import DeploymentManifest

    records = lineage.read_table("deployments")
    if records.empty:
        return []
    by_id = records.drop_duplicates("deployment_id", keep="last").set_index("deployment_id")
    state = edge.server_state()
    live: list[LiveDeployment] = []
    for line in sorted(set(records["line"])):
        for ring, signed in state.deployments(line).items():
            manifest = DeploymentManifest.model_validate_json(signed.manifest_json)
            if manifest.deployment_id not in by_id.index:
                continue  # published by hand (e.g. a rollback): no baseline, judged after the next deployment
            row = by_id.loc[manifest.deployment_id]
            live.append(
                LiveDeployment(
                    deployment_id=manifest.deployment_id,
                    partition=row["partition"],
                    line=line,
                    model_version=manifest.model_version,
                    ring=ring,
                    deployed_at=row["deployed_at"],
                    baseline_scores=tuple(json.loads(row["baseline_scores"])),
                    baseline_brightness=tuple(json.loads(row["baseline_brightness"])),
                )
            )
    return live


# A sensor that requests runs of several jobs is a Dagster beta API (it warns about `owners`); the
# warning says nothing a plant user can act on, so it is kept out of their logs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.sensor(
        jobs=[retrain_job, deploy_job, rollback_job],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Retrains a degraded fleet model, promotes a healthy canary, rolls back a degraded canary.",
    )
    def edge_loop_sensor(
        context: dg.SensorEvaluationContext, edge: EdgeSync, lineage: LineageStore, edge_policy: EdgePolicy
    ) -> dg.SensorResult:
        live = live_deployments(edge, lineage)
        windows = load_edge_windows(lineage)
        thresholds = edge_policy.thresholds()
        actions, verdicts = plan_edge_actions(live, windows.to_dict("records") if not windows.empty else [], thresholds)
        for deployment_id, verdict in verdicts.items():
            context.log.info(f"{deployment_id}: {verdict.action} {'; '.join(verdict.reasons)} {verdict.metrics}")
        requests = []
        for action in actions:
            tags = {"edge_action": action.kind, "deployment": action.deployment_id, "reasons": "; ".join(action.reasons)[:200]}
            if action.kind == "retrain":
                line, variant = split_partition_key(action.partition)
                try:
                    config = variant_run_config(line, variant, lineage.home_path())  # the variant's own options
                except VariantRefused as exc:
                    context.log.error(f"{action.deployment_id}: retrain not requested: {exc}")
                    continue  # the other actions (a rollback elsewhere) still go out
                if config:
                    tags["run_config"] = str(run_config_path(line, variant, lineage.home_path()))
                requests.append(
                    dg.RunRequest(
                        run_key=action.run_key, job_name=retrain_job.name, partition_key=action.partition, run_config=config, tags=tags
                    )
                )
            elif action.kind == "promote":
                _, promotion = promotion_config(lineage, action.deployment_id)
                config = dg.RunConfig(ops={"deployment": promotion})
                requests.append(
                    dg.RunRequest(run_key=action.run_key, job_name=deploy_job.name, partition_key=action.partition, run_config=config, tags=tags)
                )
            else:
                config = dg.RunConfig(ops={"roll_back_line": RollbackConfig(line=action.line, reason="; ".join(action.reasons))})
                requests.append(dg.RunRequest(run_key=action.run_key, job_name=rollback_job.name, run_config=config, tags=tags))
        return dg.SensorResult(run_requests=requests)


edge_housekeeping_schedule = dg.ScheduleDefinition(
    name="edge_housekeeping_schedule",
    job=edge_metrics_job,
    cron_schedule="*/5 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: lands uploaded metric windows (edge_metrics) and operator-labelled images (edge_feedback).",
)
