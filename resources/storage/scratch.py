"""Work in progress under ``MFG_HOME`` is named for the process writing it, so a crash is cleaned up.

Every file or folder the platform is still writing (a Parquet file, an artifact, an export being
built, a landing batch being copied) lives under a name ``.incoming-<pid>.<host>.<random>`` until it
is complete and renamed to its final name. Readers never look at such names. If the writer dies
(``kill -9``, OOM, power cut) the name stays behind; :func:`sweep_abandoned` removes exactly those
whose process is gone, judged only where the pid means something: the same host, boot and pid
namespace, and a pid now held by a process younger than the name is gone too
(``resources.storage.processes``). Two runs working at once never delete each other's work, and an ``MFG_HOME`` shared
between hosts or containers is safe (work of a process this one cannot see is never judged).
"""

import functools
import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resources.storage.processes import pid_alive, pid_is_reused

__all__ = ["PREFIX", "process_is_gone", "process_tag", "scratch_dir", "scratch_name", "sweep_abandoned", "writer_is_gone"]

PREFIX = ".incoming-"
_TAG = re.compile(r"^(\d+)\.([0-9a-f]{8})$")


@functools.cache
def _host_tag() -> str:
    """Who can judge a pid: the host name, the boot and the pid namespace (containers with the same
    host name but their own process ids get different tags, so none ever judges another's work)."""
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(Path(source).read_text().strip() if source.endswith("boot_id") else str(os.stat(source).st_ino))
        except OSError:  # not Linux: the host name alone
            parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def process_tag() -> str:
    """``<pid>.<host hash>``: this process, told apart from same-numbered processes of other hosts."""
    return f"{os.getpid()}.{_host_tag()}"


def process_is_gone(tag: str, existed_at: float | None = None) -> bool:
    """True when ``tag`` (from :func:`process_tag`) names a process of this host that no longer runs.

    ``existed_at`` (Unix time) is a moment at which the tagged process certainly ran (it created the
    run or the file); a process holding the pid that started after it is another one, so the tagged
    process is gone. False for this process, a live one, another host's (it cannot be judged from
    here) or a tag that does not parse."""
    match = _TAG.match(tag)
    if match is None or match.group(2) != _host_tag():
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    return not pid_alive(pid) or (existed_at is not None and pid_is_reused(pid, existed_at))


def scratch_name(label: str = "") -> str:
    """A fresh in-progress name owned by this process (``label`` helps a human reading a listing)."""
    safe = re.sub(r"[^a-z0-9_]", "_", label.lower())
    return f"{PREFIX}{process_tag()}.{safe}{'-' if safe else ''}{uuid.uuid4().hex[:12]}"


@contextmanager
def scratch_dir(parent: Path, label: str = "") -> Iterator[Path]:
    """A new in-progress folder under ``parent``, removed when the block ends (or swept after a crash)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / scratch_name(label)
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def writer_is_gone(name: str, changed_at: float | None = None) -> bool:
    """True when ``name`` is an in-progress name of this host whose process no longer runs.

    ``changed_at``: the entry's status-change time (``st_ctime``), which nobody can set back and which
    is never earlier than its creation by the writer, so a pid holder younger than it is not the writer."""
    if not name.startswith(PREFIX):
        return False
    return process_is_gone(".".join(name.removeprefix(PREFIX).split(".")[:2]), changed_at)


def sweep_abandoned(*roots: Path, max_depth: int = 3) -> list[Path]:
    """Remove what dead processes of this host left in progress under ``roots``; returns what went
    (the caller says so in its log).

    Only the first ``max_depth`` levels are looked at: in-progress names appear at most three levels
    down (``artifacts/<kind>/<xx>/``, ``tables/<table>/``, ``landing/<line>/<variant>/``), and finished
    packages below them are not walked. A process id reused by a process that started after the
    leftover last changed is recognised (``/proc`` gives start times); where that cannot be told, the
    leftovers stay until the new process ends too: the sweep errs on the side of keeping."""
    removed: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder, subfolders, files in os.walk(root):
            if len(Path(folder).relative_to(root).parts) >= max_depth:
                subfolders[:] = []
            for name in [*subfolders, *files]:
                if not name.startswith(PREFIX):
                    continue
                path = Path(folder) / name
                try:
                    if not writer_is_gone(name, path.lstat().st_ctime):
                        continue
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
            subfolders[:] = [s for s in subfolders if not s.startswith(PREFIX)]
    return removed
