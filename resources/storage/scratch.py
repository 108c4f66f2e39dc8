"""Work in progress under ``MFG_HOME`` is named for the process writing it, so a crash is cleaned up.

Every file or folder the platform is still writing (a Parquet file, an artifact, an export being
built, a landing batch being copied) lives under a name ``.incoming-<pid>-<start>.<host>.<random>`` until it
is complete and renamed to its final name. Readers never look at such names. If the writer dies
(``kill -9``, OOM, power cut) the name stays behind; :func:`sweep_abandoned` removes exactly those
whose process is gone, judged only where the pid means something: the same host, boot and pid
namespace; a pid held now by a process with other start ticks is gone too (a reused pid,
``resources.storage.processes``). Two runs working at once never delete each other's work, and an
``MFG_HOME`` shared between hosts or containers is safe (work of a process this one cannot see is
never judged). Names written before the start ticks were part of them (``<pid>.<host>``) are judged
by the pid alone.
"""

import functools
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from resources.storage.processes import boot_id, machine_tag, process_identity, same_process

__all__ = ["PREFIX", "process_is_gone", "process_tag", "scratch_dir", "scratch_name", "sweep_abandoned", "tagged_pid", "writer_is_gone"]

PREFIX = ".incoming-"
_TAG = re.compile(r"^(\d+(?:-\d+)?)\.([0-9a-f]{8})$")


@functools.cache
def _host_tag() -> str:
    """Who can judge a pid: this machine with its pid and time namespaces (``processes.machine_tag``:
    containers with their own process ids get other tags, so none ever judges another's work) and
    this boot. Leftovers of an earlier boot are therefore never judged: they stay, hidden from every reader."""
    return hashlib.sha256(f"{machine_tag()}\0{boot_id()}".encode()).hexdigest()[:8]


def process_tag() -> str:
    """``<pid>-<start ticks>.<host hash>``: this process, told apart from same-numbered processes of other
    hosts and from a later process given the same pid."""
    return f"{process_identity()}.{_host_tag()}"


def tagged_pid(tag: str) -> str:
    """The pid a :func:`process_tag` names, for messages (``<pid>-<ticks>.<host>`` or an older ``<pid>.<host>``)."""
    return tag.split(".")[0].split("-")[0]


def process_is_gone(tag: str) -> bool:
    """True when ``tag`` (from :func:`process_tag`) names a process of this host that no longer runs.

    False for this process, a live one, another host's (it cannot be judged from here) or a tag that
    does not parse."""
    match = _TAG.match(tag)
    if match is None or match.group(2) != _host_tag():
        return False
    identity = match.group(1)
    if int(tagged_pid(tag)) == os.getpid():
        return False
    return same_process(identity) is False


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


def writer_is_gone(name: str) -> bool:
    """True when ``name`` is an in-progress name of this host whose process no longer runs."""
    if not name.startswith(PREFIX):
        return False
    return process_is_gone(".".join(name.removeprefix(PREFIX).split(".")[:2]))


def sweep_abandoned(*roots: Path, max_depth: int = 3) -> list[Path]:
    """Remove what dead processes of this host left in progress under ``roots``; returns what went
    (the caller says so in its log).

    Only the first ``max_depth`` levels are looked at: in-progress names appear at most three levels
    down (``artifacts/<kind>/<xx>/``, ``tables/<table>/``, ``landing/<line>/<variant>/``), and finished
    packages below them are not walked. A process id reused by a new process is recognised by its
    start ticks; where they cannot be read (or an older name lacks them), the leftovers stay until the
    new process ends too: the sweep errs on the side of keeping."""
    removed: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder, subfolders, files in os.walk(root):
            if len(Path(folder).relative_to(root).parts) >= max_depth:
                subfolders[:] = []
            for name in [*subfolders, *files]:
                if not name.startswith(PREFIX) or not writer_is_gone(name):
                    continue
                path = Path(folder) / name
                try:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                except FileNotFoundError:
                    continue
                removed.append(path)
            subfolders[:] = [s for s in subfolders if not s.startswith(PREFIX)]
    return removed
