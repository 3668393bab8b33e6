"""``history.json`` and the TensorBoard event files of a run.

``history.json`` (the visualisation code reads exactly this structure)::

    {"epochs": [{"epoch": 1, "global_step": N, "iterations": n, "lr": float, "ema_rate": float,
                 "loss": float, "id": float, "cc": float, "sep": float, "sid": float, "kl": float,
                 "seconds": float,
                 "eval": {"rank1": ..., "rank5": ..., "rank10": ..., "rank20": ..., "mAP": ...,
                          "mINP": ..., "settings": [...], "seconds": ...}}]}

``eval`` is present only on the epochs that evaluated. ``loss`` is the weighted total of the
loss terms (without the L2 term of the coupled weight decay); every term is the mean over the
epoch's steps. ``seconds`` is the epoch's training time, without evaluation.

TensorBoard (``tensorboard/``): per epoch, ``loss/<term>``, ``lr``, ``ema_rate``,
``iterations`` and ``eval/<metric>``, with the epoch as the step.
"""

from __future__ import annotations

from pathlib import Path

from mpanet_tf import run_folder
from mpanet_tf.io import atomic
from mpanet_tf.training.progress import LOSS_KEYS


def make_entry(progress, schedule: dict, means: dict, seconds: float) -> dict:
    """The history entry (see the module docstring) of the epoch ``progress`` (a
    :class:`~mpanet_tf.training.progress.RunProgress`) has just trained, with the ``schedule``
    values it trained with (``lr``, ``ema_rate``), the loss ``means`` and its training ``seconds``."""
    entry = {"epoch": int(progress.epoch), "global_step": int(progress.global_step),
             "iterations": int(progress.iterations), "lr": float(schedule["lr"]),
             "ema_rate": float(schedule["ema_rate"])}
    entry.update({key: float(means.get(key, float("nan"))) for key in LOSS_KEYS})
    entry["seconds"] = float(seconds)
    return entry


def epoch_line(entry: dict) -> str:
    """The one log line of a finished epoch: its time, global step and every loss term."""
    terms = ", ".join(f"{key} {entry[key]:.4f}" for key in LOSS_KEYS)
    return f"epoch {entry['epoch']} done in {entry['seconds']:.1f}s (global step {entry['global_step']}): {terms}"


def write_history(run_dir, history: list) -> None:
    """Write ``history.json`` atomically."""
    atomic.atomic_write_json(Path(run_dir) / run_folder.HISTORY_FILE, {"epochs": list(history)})


def read_history(run_dir) -> list:
    """The entries of a run's ``history.json`` (empty when there is none)."""
    path = Path(run_dir) / run_folder.HISTORY_FILE
    return run_folder.read_json(path)["epochs"] if path.is_file() else []


class TensorBoardLog:
    """Per-epoch scalars in ``<run>/tensorboard`` (``tf.summary``)."""

    def __init__(self, run_dir):
        import tensorflow as tf  # deferred: TensorFlow; read_history (the curves picture) needs none

        self._tf = tf
        self.writer = tf.summary.create_file_writer(str(Path(run_dir) / run_folder.TENSORBOARD_DIR))

    def write_epoch(self, entry: dict) -> None:
        tf, step = self._tf, int(entry["epoch"])
        with self.writer.as_default():
            for key in LOSS_KEYS:
                tf.summary.scalar(f"loss/{key}", entry[key], step=step)
            for key in ("lr", "ema_rate", "iterations", "seconds"):
                tf.summary.scalar(key, float(entry[key]), step=step)
            for key, value in (entry.get("eval") or {}).items():
                if isinstance(value, (int, float)):
                    tf.summary.scalar(f"eval/{key}", float(value), step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
