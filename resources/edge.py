"""The platform's side of edge sync: the server state it publishes into and the key it signs with.

The sync server (``mfgv edge-server``) and the Dagster assets share one state folder,
``MFG_HOME/edge`` by default: assets publish signed deployments into it, the server serves them to
devices and stores the metric windows devices upload, and the edge-metrics asset reads them back.
The platform's ed25519 key pair is created on first use under ``MFG_HOME/keys``; devices are
given the public key.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from resources.errors import MfgVisionError
from resources.settings import mfg_home
from sensors.policy import HealthThresholds

_HEALTH = HealthThresholds()

__all__ = ["EdgePolicy", "EdgeSync", "RollbackRefused", "rollback_line"]



class RollbackRefused(MfgVisionError, LookupError):
    """A line cannot be rolled back as asked (no history, no earlier version, a version never deployed)."""


class EdgeSync(dg.ConfigurableResource):
    """Edge sync state folder and signing key. Defaults live under ``MFG_HOME``."""

    state_dir: str = ""
    private_key_path: str = ""

    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve() if self.state_dir else mfg_home() / "edge"

    def key_paths(self) -> tuple[Path, Path]:
        private = (
            Path(self.private_key_path).expanduser().resolve()
            if self.private_key_path
            else mfg_home() / "keys" / "platform_ed25519.pem"
        )
        return private, private.with_suffix(".pub.pem")

    def ensure_keys(self) -> tuple[Path, Path]:
        """The key pair, generated once if missing (the private key is readable by its owner only)."""
        from edge_sync.contract import generate_keypair

        private, public = self.key_paths()
        if not private.exists():
            generate_keypair(private, public)
        elif not public.exists():
            raise FileNotFoundError(
                f"{public} is missing next to the private key {private}; restore it from backup "
                "(devices verify with it) rather than generating a new pair"
            )
        return private, public

    def server_state(self):
        from edge_sync.server_state import ServerState

        return ServerState(self.state_path())

    def sign(self, manifest):
        from edge_sync.contract import load_private_key, sign_manifest

        private, _ = self.ensure_keys()
        return sign_manifest(manifest, load_private_key(private))

    def sign_hold(self, order):
        """The hold order signed with the platform's key (devices verify it like a manifest)."""
        from edge_sync.contract import load_private_key, sign_hold

        private, _ = self.ensure_keys()
        return sign_hold(order, load_private_key(private))

    def publish(self, manifest, package_dir: Path):
        """Sign ``manifest`` and make it its line's ring on the sync server, serving ``package_dir``.

        A fleet deployment of the version the canary ring runs is a promotion: the canary ring has
        done its job and is ended, so canary devices follow the fleet. Returns the signed manifest.
        """
        from edge_sync.contract import DeploymentManifest, Ring

        state = self.server_state()
        signed = self.sign(manifest)
        state.publish(signed, package_dir)
        live_canary = state.deployments(manifest.line).get(Ring.CANARY.value)
        if manifest.ring is Ring.FLEET and live_canary is not None:
            canary_version = DeploymentManifest.model_validate_json(live_canary.manifest_json).model_version
            if canary_version == manifest.model_version:
                state.clear_canary(manifest.line)
        return signed


def rollback_line(edge: EdgeSync, line: str, to_version: str | None = None) -> str:
    """Roll a line back; returns what was done, in words.

    Without ``to_version``: an active canary ring is ended (its devices fall back to the fleet
    model); with no canary, the fleet goes back to the version it ran before the current one. With
    ``to_version``: the fleet runs that version (it must have been published to this line before).
    The re-published manifest is signed anew, with ring fleet, and recorded in the history.
    """
    from edge_sync.contract import DeploymentManifest, Ring

    state = edge.server_state()
    live = state.deployments(line)
    if to_version is None and Ring.CANARY.value in live:
        canary = DeploymentManifest.model_validate_json(live[Ring.CANARY.value].manifest_json)
        if Ring.FLEET.value not in live:
            # Nothing to fall back to: a signed hold order, so the canary stops deciding with this model.
            from edge_sync.contract import HoldOrder

            now = datetime.now(UTC)
            order = HoldOrder(
                order_id=f"{line}-hold-{now:%Y%m%dT%H%M%S}",
                line=line,
                reason=f"canary {canary.deployment_id} ({canary.model_version}) rolled back; the line has no fleet model",
                rolled_back_version=canary.model_version,
                created_at=now,
            )
            state.hold(edge.sign_hold(order))
            return (
                f"ended canary {canary.deployment_id} ({canary.model_version}); line {line} has no fleet model, so it "
                f"is on hold (order {order.order_id}): its devices run no model and parts go to manual inspection "
                f"until a model is deployed (mfgv deploy){_reported(state, line)}"
            )
        fleet = DeploymentManifest.model_validate_json(live[Ring.FLEET.value].manifest_json)
        state.clear_canary(line)
        return (
            f"ended canary {canary.deployment_id} ({canary.model_version}); canary devices run the fleet model "
            f"{fleet.model_version} again{_reported(state, line)}"
        )
    published = [r for r in state.history(line) if r.get("event") == "publish"]
    if not published:
        raise RollbackRefused(f"line {line} has no deployment history on {state.root}; nothing to roll back")
    held = state.hold_for(line)
    if to_version is None and held is not None and Ring.FLEET.value not in live:
        order = json.loads(held.manifest_json)
        raise RollbackRefused(
            f"line {line} is on hold already (order {order['order_id']}, {order['created_at']}: {order['reason']}); "
            f"its devices run no model. Nothing is left to roll back: deploy a model (mfgv deploy), or pass "
            f"--to VERSION to run an earlier one on the fleet{_reported(state, line)}"
        )
    current_fleet = (
        DeploymentManifest.model_validate_json(live[Ring.FLEET.value].manifest_json).model_version
        if Ring.FLEET.value in live
        else None
    )
    if to_version is None:
        earlier = [r for r in published if r["ring"] == Ring.FLEET.value and r["model_version"] != current_fleet]
        if not earlier:
            raise RollbackRefused(f"line {line} has no earlier fleet version than {current_fleet}; pass --to VERSION")
        to_version = earlier[-1]["model_version"]
    candidates = [r for r in published if r["model_version"] == to_version]
    if not candidates:
        versions = sorted({r["model_version"] for r in published})
        raise RollbackRefused(f"{to_version} was never deployed to line {line}; deployed versions: {', '.join(versions)}")
    old = DeploymentManifest.model_validate_json(candidates[-1]["signed_manifest"]["manifest_json"])
    now = datetime.now(UTC)
    manifest = old.model_copy(
        update={
            "deployment_id": f"{to_version}-rollback-{now:%Y%m%dT%H%M%S}",
            "ring": Ring.FLEET,
            "devices": (),
            "created_at": now,
        }
    )
    state.publish(edge.sign(DeploymentManifest.model_validate(manifest.model_dump())), state.package_dir(to_version))
    if Ring.CANARY.value in live:
        state.clear_canary(line)
    return (
        f"line {line}: fleet rolled back from {current_fleet or 'no model (on hold)'} to {to_version} "
        f"({manifest.deployment_id}){_reported(state, line)}"
    )


def _reported(state: Any, line: str) -> str:
    """What the line's devices said they ran at their last sync (before this change reaches them)."""
    seen = state.device_status(line)
    if not seen:
        return ""
    said = ", ".join(f"{row['device_id']} ran {row['running']} at {row['at'][:19]}" for row in seen[:10])
    return f". Last reported by the devices (they pick the change up at their next sync): {said}"


class EdgePolicy(dg.ConfigurableResource):
    """The plant's thresholds for judging a model on the line (read by the edge-loop sensor).

    The defaults are :class:`sensors.policy.HealthThresholds`' own: one definition, which the pure
    policy functions use when called without a resource."""

    min_inspected: int = Field(_HEALTH.min_inspected, ge=1, description="parts a deployment must inspect before it is judged")
    max_false_reject_rate: float = Field(
        _HEALTH.max_false_reject_rate, ge=0.0, le=1.0, description="operator-confirmed false rejects / good parts"
    )
    max_escape_rate: float = Field(_HEALTH.max_escape_rate, ge=0.0, le=1.0, description="escapes found at audit / defective parts")
    max_score_psi: float = Field(
        _HEALTH.max_score_psi, ge=0.0, description="PSI of the defect-score histogram against the test baseline"
    )
    max_brightness_psi: float = Field(
        _HEALTH.max_brightness_psi, ge=0.0, description="PSI of input brightness against the training images"
    )

    def thresholds(self) -> HealthThresholds:
        """The policy functions' view of these settings."""
        return HealthThresholds(**self.model_dump())
