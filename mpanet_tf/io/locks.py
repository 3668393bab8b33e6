"""Folder locks: one process at a time writes a folder.

A process writing a folder (a run folder for ``train``, ``import-torch``'s output, ``export``'s
base folder, ``prepare``'s cache folder) holds its lock (:func:`folder_lock`, the hidden
``.mpanet-lock``, removed again at the end), so two runs can never write one folder.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import os
import socket
import sys
from pathlib import Path

from mpanet_tf.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; folders are not locked there
    fcntl = None

#: The lock file a process holds (``fcntl.flock``) inside a folder it writes: a run folder for
#: ``train``, ``import-torch``'s output, ``export``'s base folder, ``prepare``'s cache folder.
LOCK_FILE = ".mpanet-lock"


class FolderInUseError(ConfigError):
    """Another live process holds the lock of the folder this command would write."""


def _describe_holder(text: str) -> str:
    try:
        info = json.loads(text)
        return (f"`{info['command']}` (pid {info['pid']} on {info['host']}, started "
                f"{info['started']})")
    except (ValueError, KeyError, TypeError):
        return "another mpanet-tf process"


def _command_line() -> str:
    argv = [os.path.basename(sys.argv[0] or "python")] + sys.argv[1:]
    return " ".join(argv)[:300]


@contextlib.contextmanager
def folder_lock(folder, what: str = "folder"):
    """Hold an exclusive lock on ``folder`` (created if missing) for the life of the block.

    The lock is ``fcntl.flock`` on ``folder/.mpanet-lock``, which records the holder (pid, host,
    command line, start time). The kernel releases it when the holder dies, even by ``kill -9``,
    so a stale lock file is simply taken over. On leaving, the lock file is removed, and so are
    the folders this call created when nothing else was written into them.

    Raises:
        FolderInUseError: another live process holds the lock (one line naming it).
        ConfigError: the folder cannot be created.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        yield folder  # nothing to lock: the command refuses a file with its own message
        return
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create {what} {folder} ({error.strerror or error}); choose "
                          "another location") from None
    path = folder / LOCK_FILE
    fd = _acquire(path, folder, what, created)
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
                  "started": datetime.datetime.now(datetime.timezone.utc).strftime(
                      "%Y-%m-%d %H:%M:%S UTC")}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        yield folder
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # while still held: no second process can lock this inode and go on
        _remove_empty(created)
        os.close(fd)


def _acquire(path: Path, folder: Path, what: str, created) -> int:
    """Open and flock ``path``; retry when the previous holder removed the file meanwhile."""
    for _ in range(10):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the previous holder removed the folder it had created
            with contextlib.suppress(OSError):
                folder.mkdir(parents=True, exist_ok=True)
            continue
        except OSError as error:
            _remove_empty(created)
            raise ConfigError(f"cannot write in {what} {folder} ({error.strerror or error}); "
                              "choose another location") from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = _describe_holder(os.read(fd, 4096).decode("utf-8", "replace"))
            finally:
                os.close(fd)
            raise FolderInUseError(f"{what} {folder} is in use by {holder}; wait for it to "
                                   "finish, stop it, or choose another folder") from None
        except OSError:
            return fd  # a file system without flock (some network mounts): go on unlocked
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    raise FolderInUseError(f"{what} {folder} is being locked and released by other processes "
                           "over and over; try again")


def _remove_empty(created) -> None:
    for folder in created:  # innermost first
        try:
            folder.rmdir()
        except OSError:
            break


def holding_lock(what: str, argument: str = "output_dir", when=None):
    """Decorator: run the function under :func:`folder_lock` of its ``argument`` folder (``what``
    names it in messages, e.g. "run folder"), unless ``when()`` is false (e.g. a non-chief
    worker, which writes no run folder)."""
    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if when is not None and not when():
                return function(*args, **kwargs)
            folder = signature.bind(*args, **kwargs).arguments[argument]
            with folder_lock(folder, what):
                return function(*args, **kwargs)
        return wrapper
    return decorate
