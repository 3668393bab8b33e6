"""The layout of a run folder: what ``train`` writes and ``eval``/``export``/``train --resume`` read.

::

    runs/NAME/
      config.json            the resolved MPANetConfig (exact, JSON)
      run.json               num_classes, dataset, initialisation and its SHA-256, status
      model.keras            the final model (written when training finishes)
      checkpoints/
        ckpt-<step>.weights.h5   model weights (with the mean classifiers, ema_rate and BN
                                 statistics) and, as Keras' save_weights writes them, the optimizer
                                 variables (iterations, learning rate, Adam moments)
        ckpt-<step>.state.json   epoch, step in epoch, global step, history so far; written
                                 last, so a checkpoint exists exactly when its state file does
      history.json           per-epoch loss terms, learning rate, evaluation metrics
      tensorboard/           event files

Every file is written to a temporary name in the same folder and renamed, so no reader ever
sees a half-written file.

A process writing a folder holds its lock (:func:`folder_lock`, the hidden ``.mpanet-lock``,
removed again at the end), so two runs can never write one folder; whole folders (an import, an
export, a cache) are written in a staging folder beside their target and renamed into place
(:func:`staging_folder`, :func:`replace_folder`), and staging folders left by killed processes are
removed by the next run.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mpanet_tf.errors import CheckpointError, ConfigError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; folders are not locked there
    fcntl = None

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
FINAL_MODEL = "model.keras"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
TENSORBOARD_DIR = "tensorboard"


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def atomic_save_model(model, path) -> None:
    """``model.save`` to a temporary ``.keras`` file in the same folder, then rename to ``path``;
    a failure (or Ctrl-C) part-way leaves neither ``path`` nor the temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        model.save(str(temp))
        os.replace(temp, path)
    except BaseException:
        if temp.exists():
            temp.unlink()
        raise


def atomic_write_json(path, obj) -> None:
    """JSON-dump ``obj`` to ``path`` atomically (sorted keys, 2-space indent)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def is_run_folder(path) -> bool:
    """True when ``path`` is a folder holding a run's ``config.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def checkpoint_dir(run_dir) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def checkpoint_paths(run_dir, step: int) -> tuple[Path, Path]:
    """(weights file, state file) of the checkpoint taken after global step ``step``."""
    folder = checkpoint_dir(run_dir)
    return folder / f"ckpt-{step:09d}.weights.h5", folder / f"ckpt-{step:09d}.state.json"


def latest_checkpoint(run_dir) -> tuple[Path, Path] | None:
    """The newest complete checkpoint (both files present), or None."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return None
    steps = []
    for state in folder.glob("ckpt-*.state.json"):
        try:
            step = int(state.name[len("ckpt-"):].split(".")[0])
        except ValueError:
            continue
        weights, _ = checkpoint_paths(run_dir, step)
        if weights.is_file():
            steps.append(step)
    return checkpoint_paths(run_dir, max(steps)) if steps else None


# ------------------------------------------------------------------ output locations
def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


def _probe_writable(folder: Path, option: str, target: Path) -> None:
    """Create and remove one temporary file in ``folder``: the only test that also catches
    read-only file systems and pseudo file systems such as /proc (``os.access`` does not)."""
    if not folder.is_dir():
        raise ConfigError(f"{option} {target}: {folder} is not a folder; choose another {option}")
    try:
        handle, temp = tempfile.mkstemp(prefix=".mpanet-write-test-", dir=folder)
        os.close(handle)
        os.unlink(temp)
    except OSError as error:
        raise ConfigError(f"{option} {target} cannot be written ({error.strerror or error} in {folder}); "
                          f"choose a writable {option}") from None


def check_output_file(path, option: str = "--output") -> Path:
    """Check, before any work, that the file ``path`` can be written (atomically, next to itself).

    Raises:
        ConfigError: ``path`` is a folder, a folder on the way is a file, or nothing can be
            written there (permissions, read-only or pseudo file system).
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; pass a file name")
    existing = _nearest_existing(path.parent)
    _probe_writable(existing, option, path)
    return path


def check_output_folder(path, option: str = "--output") -> Path:
    """Check, before any work, that the folder ``path`` exists or can be created and written.

    Raises:
        ConfigError: ``path`` is a file, or nothing can be written where it would be.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; pass a folder")
    _probe_writable(_nearest_existing(path), option, path)
    return path


# --------------------------------------------------------------- locks and staging (issue 14)
#: The lock file a process holds (``fcntl.flock``) inside a folder it writes: a run folder for
#: ``train``, ``import-torch``'s output, ``export``'s base folder, ``prepare``'s cache folder.
LOCK_FILE = ".mpanet-lock"
#: A staging folder (or a replaced target set aside) of this host and a dead process is stale at
#: once; one of another host once it is this old.
STALE_SECONDS = 24 * 3600
_STAGING = re.compile(r"\.(?:staging|old)-(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)-[a-z0-9_]+$")


class FolderInUseError(ConfigError):
    """Another live process holds the lock of the folder this command would write."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


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


# ------------------------------------------------------------------- which model to load
@dataclass(frozen=True)
class ModelFiles:
    """Where a model is loaded from: a ``.keras`` file, or the newest checkpoint's weights with the
    run's ``config.json`` and ``run.json`` (the number of classes)."""

    keras_file: Path | None = None
    weights: Path | None = None
    config_file: Path | None = None
    run_file: Path | None = None


def locate_model(path) -> ModelFiles:
    """The files :func:`mpanet_tf.model.load_model` reads for ``path``: a ``.keras`` file itself; for
    a run folder its final ``model.keras``, or its newest checkpoint when that is newer (a run
    resumed after it finished, an imported run being fine-tuned) or there is no final model.

    Raises:
        CheckpointError: nothing loadable at ``path``.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".keras":
        return ModelFiles(keras_file=path)
    if not path.exists():
        raise CheckpointError(f"model path {path} does not exist; pass a run folder written by "
                              "`mpanet-tf train` or a .keras file")
    if path.is_dir():
        final = path / FINAL_MODEL
        latest = latest_checkpoint(path) if is_run_folder(path) else None
        if final.is_file() and (latest is None or final.stat().st_mtime >= latest[1].stat().st_mtime):
            return ModelFiles(keras_file=final)
        if latest is not None:
            return ModelFiles(weights=latest[0], config_file=path / CONFIG_FILE, run_file=path / RUN_FILE)
    raise CheckpointError(f"{path} holds no model (no {FINAL_MODEL} and no complete checkpoint under "
                          f"{CHECKPOINT_DIR}/); pass a run folder written by `mpanet-tf train` or a .keras file")


# ------------------------------------------------------------------ --repeat seed folders
SEED_PREFIX = "seed-"


def seed_folder(output_dir, seed: int) -> Path:
    """``<output>/seed-<seed>``: the run folder of one seed of ``train --repeat``."""
    return Path(output_dir) / f"{SEED_PREFIX}{int(seed)}"


def seed_of(folder) -> int | None:
    """K of a ``seed-K`` folder name, or None for any other name."""
    name = Path(folder).name
    digits = name[len(SEED_PREFIX):]
    return int(digits) if name.startswith(SEED_PREFIX) and digits.isdigit() else None


def seed_folders(path) -> list[Path]:
    """The ``seed-K`` sub-folders of ``path`` (``train --repeat`` layout), sorted by K."""
    path = Path(path)
    if not path.is_dir():
        return []
    return sorted((p for p in path.iterdir() if p.is_dir() and seed_of(p) is not None), key=seed_of)
