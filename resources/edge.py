"""The platform's side of edge sync: the server state it publishes into and the key it signs with.

The sync server (``mfgv edge-server``) and the Dagster assets share one state folder,
``MFG_HOME/edge`` by default: assets publish signed deployments into it, the server serves them to
devices and stores the metric windows devices upload, and the edge-metrics asset reads them back.
The platform's ed25519 key pair is created on first use under ``MFG_HOME/keys``; devices are
given the public key.
"""

from pathlib import Path

import dagster as dg

from resources.settings import mfg_home

__all__ = ["EdgeSync"]


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
