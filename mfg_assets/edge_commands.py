"""The edge commands of ``mfgv``: run the sync server, register devices, run an agent, deploy, roll back.

They share the platform's state under ``MFG_HOME``: the sync server's folder ``MFG_HOME/edge`` and
the signing key under ``MFG_HOME/keys`` (devices get the ``.pub.pem`` file).
"""

import logging
from collections.abc import Callable
from typing import Any

from resources.edge import EdgeSync, rollback_line
from resources.data.variants import partition_key

__all__ = ["add_device", "deploy", "promote", "run_agent", "run_server", "rollback"]


def run_server(host: str, port: int) -> int:
    from edge_sync.server import main as server_main

    edge = EdgeSync()
    edge.ensure_keys()
    return server_main(["--state-dir", str(edge.state_path()), "--host", host, "--port", str(port)])


def add_device(device_id: str, line: str, *, canary: bool) -> tuple[str, str]:
    """Register a device; returns its token (shown once, stored hashed) and the public key path."""
    edge = EdgeSync()
    _, public = edge.ensure_keys()
    token = edge.server_state().register_device(device_id, line, canary=canary)
    return token, str(public)


def run_agent(argv: list[str]) -> int:
    from edge_sync.agent import main as agent_main

    if "--public-key" not in argv:
        # The platform's public key where the platform keeps it; never created here (`--help` or a
        # device without the key must not mint a signing key pair as a side effect).
        _, public = EdgeSync().key_paths()
        argv = [*argv, "--public-key", str(public)]
    return agent_main(argv)


def deploy(
    line: str,
    variant: str,
    *,
    ring: str,
    model_format: str,
    accept_int8_shortfall: bool = False,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``deploy_job`` for the line/variant through Dagster (the run shows in the UI)."""
    config = {"ring": ring, "model_format": model_format, "accept_int8_shortfall": accept_int8_shortfall}
    return _run_deploy_job(line, variant, config, echo)


def promote(line: str, variant: str, *, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Promote the line's live canary to the fleet, as the edge sensor does: the canary's model version in
    the canary's format, refused if another version was registered since."""
    import dagster as dg

    from edge_sync.contract import DeploymentManifest, Ring
    from mfg_assets.deployment import promotion_config
    from mfg_assets.onboard import OnboardError
    from resources.lineage import LineageStore

    canary = EdgeSync().server_state().deployments(line).get(Ring.CANARY.value)
    if canary is None:
        raise OnboardError(f"line {line} has no live canary to promote; deploy one first (mfgv deploy --ring canary)")
    manifest = DeploymentManifest.model_validate_json(canary.manifest_json)
    try:
        canary_partition, config = promotion_config(LineageStore(), manifest.deployment_id)
    except dg.Failure as exc:  # raised for runs; here the user gets it as a command error
        raise OnboardError(exc.description or str(exc)) from exc
    if canary_partition != partition_key(line, variant):
        raise OnboardError(
            f"line {line}'s canary runs {manifest.model_version}, not a model of variant {variant}; "
            "promote with that model's variant"
        )
    return _run_deploy_job(line, variant, config.model_dump(), echo)


def _run_deploy_job(line: str, variant: str, config: dict[str, Any], echo: Callable[[str], None]) -> dict[str, Any]:
    from mfg_assets.definitions import defs
    from mfg_assets.instance import fail_abandoned_runs, get_instance, run_tags
    from mfg_assets.onboard import OnboardError
    from mfg_assets.run_outcome import failure_summary
    from mfg_assets.progress import run_loggers

    instance = get_instance()
    for run_id in fail_abandoned_runs(instance):
        echo(f"run {run_id} was left unfinished by a process that is gone; marked failed")
    key = partition_key(line, variant)
    if key not in instance.get_dynamic_partitions("line_variant"):
        raise OnboardError(f"{line}/{variant} was never onboarded here; run `mfgv onboard` first")
    result = defs.resolve_job_def("deploy_job").execute_in_process(
        run_config={
            "ops": {"deployment": {"config": config}},
            "loggers": run_loggers(logging.getLogger("mfgv").isEnabledFor(logging.DEBUG)),
        },
        instance=instance,
        partition_key=key,
        raise_on_error=False,
        tags=run_tags(),
    )
    if not result.success:
        raise OnboardError(f"deploy run {result.run_id} for {key} failed:\n{failure_summary(result)}")
    record = result.output_for_node("deployment")
    echo(f"deployed {record.model_version} to line {line} as {record.ring} ({record.deployment_id})")
    return record.model_dump()


def rollback(line: str, to_version: str | None) -> str:
    return rollback_line(EdgeSync(), line, to_version)
