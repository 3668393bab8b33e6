"""Staging folders: whole folders (an import, an export, a cache) are written beside their target
and renamed into place (:func:`staging_folder`, :func:`replace_folder`), so no reader sees half a
folder; staging folders left by killed processes are removed by the next run
(:func:`remove_stale_staging`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

from mpanet_tf.io.locks import LOCK_FILE

#: A staging folder (or a replaced target set aside) of this host and a dead process is stale at
#: once; one of another host once it is this old.
STALE_SECONDS = 24 * 3600
_STAGING = re.compile(r"\.(?:staging|old)-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[a-z0-9_]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_staging(path: Path, now: float | None = None) -> bool:
    """True for a staging folder (or a replaced target set aside) of :func:`staging_folder`
    whose process is gone: same host and a dead pid, or another host and older than
    :data:`STALE_SECONDS`."""
    match = _STAGING.search(path.name)
    if match is None:
        return False
    if match["host"] == _host():
        return not _pid_alive(int(match["pid"]))
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except OSError:
        return False
    return age > STALE_SECONDS


def remove_stale_staging(target) -> list[Path]:
    """Delete the stale staging folders of ``target`` beside it; returns what was removed."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        if entry.name.startswith(f".{target.name}.") and is_stale_staging(entry):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            removed.append(entry)
    return removed


def _staging_name(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{_host()}-{os.getpid()}-"
                            f"{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def staging_folder(target, mode: int = 0o777):
    """Yield a new, empty folder beside ``target`` to write it in; move it into place with
    :func:`replace_folder`. Any exception removes the staging folder.

    The name ``.<target>.staging-<host>-<pid>-<random>`` lets a later call remove the staging
    folders of processes that died (``kill -9``) before cleaning up (:func:`remove_stale_staging`,
    run here first). The folder gets ``mode`` less the umask (readable by a server running as
    another user), not ``mkdtemp``'s 0700.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = _staging_name(target, "staging")
    staging.mkdir()
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, mode & ~umask)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging, target) -> None:
    """Rename the finished ``staging`` folder to ``target``. An existing ``target`` is set aside
    first (a lock file alone counts as nothing) and restored if the rename fails; then deleted."""
    staging, target = Path(staging), Path(target)
    old = None
    if target.is_dir() and not any(p.name != LOCK_FILE for p in target.iterdir()):
        shutil.rmtree(target)
    elif target.exists():
        old = _staging_name(target, "old")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
