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
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

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
    from mpanet_tf.errors import ConfigError

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
    from mpanet_tf.errors import ConfigError

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
    from mpanet_tf.errors import ConfigError

    path = Path(os.path.expanduser(os.fspath(path)))
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file, not a folder; pass a folder")
    _probe_writable(_nearest_existing(path), option, path)
    return path
