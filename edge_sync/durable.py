"""Crash-safe files: the one layer under the agent's state and the server's stores.

A device loses power and a server gets restarted; neither may leave a half-written file under a
final name. Every write here is "write a temporary file, fsync it, rename (or hard-link) it into
place, fsync the folder", so a reader sees the old or the new content, never half of one, and a
rename survives a crash. Read-modify-write changes that two processes share take :func:`locked`.
"""

import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "copy_hashing",
    "fsync_dir",
    "fsync_file",
    "link_new",
    "locked",
    "move_unique",
    "remove_tree",
    "sha256_file",
    "write_atomic",
    "write_tmp",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def fsync_dir(folder: Path) -> None:
    """Make a rename or link in ``folder`` durable (POSIX: the directory entry lives in the folder).

    A no-op off POSIX and where the filesystem refuses to fsync a folder: the rename itself is done."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        logger.debug("fsync of folder %s not supported: %s", folder, exc)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to disk (before renaming it to its final name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tmp(tmp_dir: Path, data: bytes) -> Path:
    """A new fsynced file with a unique name under ``tmp_dir`` holding ``data``."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f".{uuid.uuid4().hex}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def write_atomic(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The temporary file lies in ``tmp_dir`` (same filesystem) or, by default, beside ``path`` under a
    dot-name that the agent's folder scans skip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_tmp(tmp_dir if tmp_dir is not None else path.parent, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def link_new(path: Path, data: bytes, *, tmp_dir: Path) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; False when it did.

    The data is written complete to ``tmp_dir`` and hard-linked to its final name: ``link`` fails with
    ``EEXIST`` exactly like ``open(O_CREAT | O_EXCL)``, so of two concurrent writers exactly one wins,
    but the final name never exists half-written (a crash cannot leave an empty "duplicate")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_tmp(tmp_dir, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True


def copy_hashing(source: Path, tmp_dir: Path) -> tuple[Path, str, int]:
    """Copy ``source`` to a new temporary file; returns it with the sha256 and size of what was copied."""
    digest = hashlib.sha256()
    n_bytes = 0
    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / f".{uuid.uuid4().hex}.tmp"
    try:
        with source.open("rb") as reader, open(path, "xb") as writer:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                writer.write(chunk)
                n_bytes += len(chunk)
            writer.flush()
            os.fsync(writer.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest(), n_bytes


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def move_unique(path: Path, folder: Path) -> Path:
    """Move ``path`` into ``folder`` without overwriting (cameras reuse names): name, name-1, name-2..."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    n = 0
    while target.exists():
        n += 1
        target = folder / f"{path.stem}-{n}{path.suffix}"
    os.replace(path, target)
    return target


def remove_tree(path: Path) -> None:
    """Delete a folder; a failure is logged (the caller's state is already consistent without it)."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        logger.error("could not delete %s (%s); delete it by hand to free the space", path, exc)


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``lock_file`` for a read-modify-write change, across threads and processes.

    POSIX only (the server's platform); ``fcntl`` is imported here so a device without it still
    imports this module."""
    import fcntl

    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock
