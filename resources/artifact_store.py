"""Content-addressed artifact store on the local file system, under ``MFG_HOME/artifacts``.

Bytes (images, checkpoints, exported models, reports) are stored once under their sha256, so an
artifact's address is also its integrity check and nothing stored is ever overwritten. Assets pass
``Artifact`` handles (URI + hash), never "the newest file in a folder".
"""

import hashlib
import os
import shutil
from pathlib import Path

import dagster as dg
from pydantic import BaseModel, ConfigDict

from edge_sync.durable import fsync_dir, fsync_file, sha256_file  # one implementation for the platform and the device
from resources.settings import mfg_home
from resources.storage.scratch import scratch_name

__all__ = ["Artifact", "ArtifactStore", "ArtifactMissing", "sha256_bytes", "sha256_file"]


class ArtifactMissing(FileNotFoundError):
    """An artifact named by a handle is not in the store (deleted or moved by hand)."""


class Artifact(BaseModel):
    """A stored file: its hash, its path inside the store and its size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str
    relpath: str
    n_bytes: int


def _commit(tmp: Path, target: Path) -> None:
    """Rename a complete file to its content address, durably: a name in the store never points at
    bytes a power cut lost (the store never rewrites a name that exists)."""
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ArtifactStore(dg.ConfigurableResource):
    """Stores bytes by content hash. ``root`` defaults to ``MFG_HOME/artifacts``."""

    root: str = ""

    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else mfg_home() / "artifacts"

    def _relpath(self, kind: str, digest: str, suffix: str) -> str:
        if not kind.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"artifact kind {kind!r} must be alphanumeric (with - or _)")
        return f"{kind}/{digest[:2]}/{digest}{suffix}"

    def put_bytes(self, data: bytes, *, kind: str, suffix: str = "") -> Artifact:
        """Store ``data`` (idempotent: the same bytes land at the same address)."""
        digest = sha256_bytes(data)
        relpath = self._relpath(kind, digest, suffix)
        target = self.root_path() / relpath
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / scratch_name()
            tmp.write_bytes(data)
            _commit(tmp, target)
        return Artifact(sha256=digest, relpath=relpath, n_bytes=len(data))

    def put_file(self, source: Path, *, kind: str, suffix: str | None = None) -> Artifact:
        """Copy a file into the store under its content hash (keeps its suffix by default)."""
        digest = sha256_file(source)
        relpath = self._relpath(kind, digest, source.suffix.lower() if suffix is None else suffix)
        target = self.root_path() / relpath
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / scratch_name()
            shutil.copyfile(source, tmp)
            _commit(tmp, target)
        return Artifact(sha256=digest, relpath=relpath, n_bytes=target.stat().st_size)

    def put_tree(self, source_dir: Path, *, kind: str) -> Artifact:
        """Store a folder whose files belong together (an OpenVINO .xml and its .bin, say).

        The address is a hash over the relative names and contents of every file, so the folder is
        content-addressed like a single file while its members keep their names.
        """
        files = sorted(p for p in source_dir.rglob("*") if p.is_file())
        if not files:
            raise ValueError(f"{source_dir} holds no files to store")
        digest = hashlib.sha256()
        for file in files:
            digest.update(file.relative_to(source_dir).as_posix().encode())
            digest.update(sha256_file(file).encode())
        tree_hash = digest.hexdigest()
        relpath = self._relpath(kind, tree_hash, "")
        target = self.root_path() / relpath
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = target.parent / scratch_name()
            shutil.copytree(source_dir, staging)
            for file in staging.rglob("*"):
                if file.is_file():
                    fsync_file(file)
            try:
                os.replace(staging, target)
                fsync_dir(target.parent)
            except OSError:
                if not target.exists():  # not a concurrent store of the same folder: a real failure
                    raise
                shutil.rmtree(staging)
        return Artifact(sha256=tree_hash, relpath=relpath, n_bytes=sum(f.stat().st_size for f in files))

    def path(self, artifact: Artifact | str) -> Path:
        """Absolute path of a stored artifact; raises ArtifactMissing if it is gone."""
        relpath = artifact.relpath if isinstance(artifact, Artifact) else artifact
        target = self.root_path() / relpath
        if not target.exists():
            raise ArtifactMissing(
                f"artifact {relpath} is missing from {self.root_path()}; it was deleted or moved by "
                "hand — restore it from backup or re-materialize the asset that produced it"
            )
        return target

    def read_bytes(self, artifact: Artifact | str) -> bytes:
        return self.path(artifact).read_bytes()

    def verify(self, artifact: Artifact) -> bool:
        """True when the stored bytes (or folder) still hash to the recorded sha256."""
        target = self.path(artifact)
        if target.is_dir():
            digest = hashlib.sha256()
            for file in sorted(p for p in target.rglob("*") if p.is_file()):
                digest.update(file.relative_to(target).as_posix().encode())
                digest.update(sha256_file(file).encode())
            return digest.hexdigest() == artifact.sha256
        return sha256_file(target) == artifact.sha256
