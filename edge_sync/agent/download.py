"""Fetching a model package: resumable per file, size- and sha256-checked, disk space checked first.

Files go to ``models/<version>.partial/package/<path>.part`` and are renamed to their final name
only once their bytes hash to what the signed manifest says. A broken transfer keeps what arrived
(:class:`~edge_sync.agent.errors.DownloadInterrupted`) and the next sync resumes with ``Range``.
"""

import errno
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import httpx

from edge_sync.agent.errors import DownloadError, DownloadInterrupted, VerificationError
from edge_sync.contract import DeploymentManifest, ModelFile
from edge_sync.durable import remove_tree, sha256_file
from edge_sync.failpoints import failpoint

__all__ = ["PACKAGE_DIR", "PARTIAL_SUFFIX", "PART_SUFFIX", "PackageDownloader"]

PARTIAL_SUFFIX = ".partial"
PART_SUFFIX = ".part"
PACKAGE_DIR = "package"
_FREE_SPACE_HEADROOM = 16 * 1024 * 1024  # left for decisions, windows and logs after a download
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PackageDownloader:
    """Downloads packages from ``server_url`` into ``models_dir``; ``running()`` names the model kept
    running, for the messages."""

    def __init__(
        self,
        client: httpx.Client,
        server_url: str,
        auth: dict[str, str],
        models_dir: Path,
        running: Callable[[], str | None],
    ) -> None:
        self._client = client
        self._server_url = server_url
        self._auth = auth
        self._models_dir = models_dir
        self._running = running

    def download(self, manifest: DeploymentManifest) -> Path:
        """Fetch every file into ``models/<version>.partial/package``; returns the ``.partial`` folder."""
        version = manifest.model_version
        partial = self._models_dir / f"{version}{PARTIAL_SUFFIX}"
        package = partial / PACKAGE_DIR
        try:
            package.mkdir(parents=True, exist_ok=True)
            self._check_free_space(manifest, package)
            for item in manifest.files:
                self._download_file(version, item, package)
        except OSError as exc:
            remove_tree(partial)
            total = sum(item.n_bytes for item in manifest.files)
            kept = self._running() or "no model"
            if exc.errno == errno.ENOSPC:
                raise DownloadError(
                    f"no space left on the device while downloading model {version} ({total} bytes) into "
                    f"{partial} ({exc}); the partial download was removed and {kept} keeps running; free space "
                    f"under {self._models_dir.parent} and the next sync retries"
                ) from exc
            raise DownloadError(
                f"cannot store model {version} under {partial} ({exc}); the partial download was removed and "
                f"{kept} keeps running; check the state folder's disk and permissions"
            ) from exc
        return partial

    def _check_free_space(self, manifest: DeploymentManifest, package: Path) -> None:
        needed = 0
        for item in manifest.files:
            target = package.joinpath(*item.path.split("/"))
            part = target.with_name(target.name + PART_SUFFIX)
            have = target.stat().st_size if target.is_file() else part.stat().st_size if part.is_file() else 0
            needed += max(0, item.n_bytes - have)
        free = shutil.disk_usage(package).free
        if free < needed + _FREE_SPACE_HEADROOM:
            raise OSError(
                errno.ENOSPC,
                f"{free} bytes free, the download needs {needed} more plus {_FREE_SPACE_HEADROOM} bytes headroom",
            )

    def _download_file(self, version: str, item: ModelFile, package: Path) -> None:
        target = package.joinpath(*item.path.split("/"))
        if target.is_file():
            if target.stat().st_size == item.n_bytes and sha256_file(target) == item.sha256:
                return  # fetched by an earlier, interrupted sync
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + PART_SUFFIX)
        have = part.stat().st_size if part.is_file() else 0
        if have > item.n_bytes:
            part.unlink()
            have = 0
        if have < item.n_bytes or not part.exists():
            have = self._fetch(version, item, part, have)
        if have < item.n_bytes:
            raise DownloadInterrupted(
                f"model {version}: {item.path} ended after {have} of {item.n_bytes} bytes; the bytes are kept "
                "and the next sync resumes the download"
            )
        digest = sha256_file(part)
        if digest != item.sha256:
            part.unlink()
            raise VerificationError(
                f"model {version}: {item.path} has sha256 {digest}, the signed manifest says {item.sha256}; "
                "the file was altered in transit or on the server; it was deleted and the current model keeps "
                "running; check the server's package store"
            )
        os.replace(part, target)

    def _fetch(self, version: str, item: ModelFile, part: Path, have: int) -> int:
        """GET one file into ``part`` from byte ``have`` on; returns the bytes on disk afterwards."""
        url = f"{self._server_url}/v1/packages/{quote(version, safe='')}/{quote(item.path, safe='/')}"
        headers = dict(self._auth)
        if have:
            headers["Range"] = f"bytes={have}-"
        too_long = False
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status >= 500:
                    raise DownloadInterrupted(f"model {version}: GET {url} answered {status}; resuming next sync")
                if status == 416:
                    part.unlink(missing_ok=True)
                    raise VerificationError(
                        f"model {version}: the server has no bytes of {item.path} past {have}, but the manifest "
                        f"says it has {item.n_bytes}; the server serves another file; the partial file was deleted"
                    )
                if status == 206 and have:
                    start = _content_range_start(response.headers.get("content-range"))
                    if start is not None and start != have:
                        part.unlink(missing_ok=True)
                        raise DownloadInterrupted(
                            f"model {version}: asked for {item.path} from byte {have}, the server sent from "
                            f"{start}; restarting the file at the next sync"
                        )
                    mode = "ab"
                elif status == 200:
                    mode, have = "wb", 0
                else:
                    raise DownloadError(
                        f"model {version}: GET {url} answered {status} {response.reason_phrase}; the signed "
                        "manifest lists this file, so the server's package store is incomplete; re-publish "
                        "the package"
                    )
                etag = response.headers.get("etag", "").removeprefix("W/").strip('"').lower()
                if _SHA256.fullmatch(etag) and etag != item.sha256:
                    part.unlink(missing_ok=True)
                    raise VerificationError(
                        f"model {version}: the server's ETag for {item.path} is {etag}, the signed manifest "
                        f"says {item.sha256}; the server serves another file; the current model keeps running"
                    )
                written = have
                with part.open(mode) as handle:
                    for chunk in response.iter_bytes():
                        if written + len(chunk) > item.n_bytes:
                            too_long = True
                            break
                        _write_chunk(handle, chunk)
                        written += len(chunk)
                        failpoint("agent.download.after_chunk")
                    handle.flush()
                    os.fsync(handle.fileno())
        except httpx.TransportError as exc:
            got = part.stat().st_size if part.is_file() else 0
            raise DownloadInterrupted(
                f"model {version}: download of {item.path} interrupted at {got} of {item.n_bytes} bytes "
                f"({type(exc).__name__}: {exc}); the bytes are kept and the next sync resumes from them"
            ) from exc
        if too_long:
            part.unlink()
            raise VerificationError(
                f"model {version}: the server sent more than the {item.n_bytes} bytes the manifest lists for "
                f"{item.path}; the file was deleted and the current model keeps running"
            )
        return written


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _write_chunk(handle: BinaryIO, chunk: bytes) -> None:
    """Write one downloaded chunk (a seam: tests make it raise ENOSPC to simulate a full disk)."""
    handle.write(chunk)
