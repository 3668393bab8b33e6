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

Every file is written atomically (:mod:`mpanet_tf.io.atomic`), so no reader ever sees a
half-written file; the process writing a run folder holds its lock (:mod:`mpanet_tf.io.locks`).
This module knows only the layout: the file names, where checkpoints and ``--repeat`` seeds go,
and which model file a path means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mpanet_tf.errors import CheckpointError

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
FINAL_MODEL = "model.keras"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"
TENSORBOARD_DIR = "tensorboard"


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
