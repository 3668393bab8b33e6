"""Training checkpoints: atomic, complete, resumable (issue 4 item 4).

A checkpoint taken after global step ``g`` is two files under ``<run>/checkpoints/``
(:mod:`mpanet_tf.run_folder`):

- ``ckpt-<g>.weights.h5`` (``model.save_weights``): every model weight, trainable or not (the
  backbone, MAM, PAM, the BN neck with its moving statistics, the classifiers, the two mean (EMA)
  classifiers, ``ema_rate``) and every optimizer variable (iteration counter, learning rate, Adam
  first and second moments; the loss scale under fp16), which Keras 3 stores in the same file and
  ``load_weights`` restores into a built optimizer;
- ``ckpt-<g>.state.json``: the position (epoch, step in epoch, global step), the history so far,
  the running sums of the epoch in progress and the optimizer's iteration count (checked on
  restore).

Each file is written atomically (:mod:`mpanet_tf.io.atomic`: a temporary name in the same folder,
fsynced and renamed), and the state file goes last: a checkpoint exists exactly when its state
file does, so a process killed at any point leaves either the previous checkpoint or the new one,
never half of one. The data
position needs no more than (epoch, step in epoch): the sampler and the augmentation are pure
functions of (seed, epoch, step) (:mod:`mpanet_tf.data.pipeline`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mpanet_tf import run_folder, schemas
from mpanet_tf.errors import CheckpointError, TrainingError
from mpanet_tf.io import atomic

FORMAT = "mpanet-tf-checkpoint/1"
DEFAULT_KEEP = 3


def _step_of(name: str):
    try:
        return int(name[len("ckpt-"):].split(".")[0])
    except ValueError:
        return None


def _iterations(model) -> int:
    optimizer = getattr(model, "optimizer", None)
    return int(optimizer.iterations.numpy()) if optimizer is not None else 0


def check_finite_weights(model) -> None:
    """Raise :class:`TrainingError` when a trainable weight holds NaN or inf (never checkpoint it)."""
    for variable in model.trainable_variables:
        if not np.all(np.isfinite(np.asarray(variable.numpy(), dtype=np.float32))):
            raise TrainingError(f"weight {variable.path} became non-finite; the last good checkpoint is kept, "
                                "lower --lr and resume with --resume")


#: A checkpoint's ``state.json`` (:meth:`CheckpointManager.save`; other keys are tolerated).
STATE_SCHEMA = schemas.mapping(
    {"format": schemas.string(), "epoch": schemas.integer(1), "step_in_epoch": schemas.integer(0),
     "global_step": schemas.integer(0)},
    {"iterations": schemas.integer(0), "epoch_complete": schemas.boolean(),
     "history": schemas.list_of(schemas.mapping({"epoch": schemas.integer(0)})),
     "partial_epoch": schemas.nullable(schemas.mapping({}, {
         "sums": schemas.dict_of(schemas.number()), "count": schemas.integer(0), "seconds": schemas.number(0)})),
     "weights_file": schemas.string(), "optimizer_iterations": schemas.nullable(schemas.integer(0)),
     "saved_at": schemas.string()})


def read_state(path) -> dict:
    """A checkpoint's ``state.json``, checked as a whole against :data:`STATE_SCHEMA`.

    Raises:
        CheckpointError: unreadable, not JSON, of another format, or a field of the wrong kind
            (one line naming the file and the field).
    """
    fix = "delete it (and its .weights.h5) to resume from the previous checkpoint"
    state = schemas.read_json_file(path, "checkpoint state", CheckpointError, fix)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected "
                              f"{FORMAT!r}; it was not written by this version of mpanet-tf")
    schemas.check_document(state, STATE_SCHEMA, f"checkpoint state {path}", CheckpointError, fix)
    return state


class CheckpointManager:
    """Save, find, restore and prune the checkpoints of one run folder.

    Args:
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoints``).
        keep: how many of the newest checkpoints to keep (older ones are deleted after a save).
    """

    def __init__(self, run_dir, keep: int = DEFAULT_KEEP):
        self.run_dir = Path(run_dir)
        self.folder = run_folder.checkpoint_dir(self.run_dir)
        self.keep = max(1, int(keep))

    # ------------------------------------------------------------------ saving
    def save(self, model, state: dict) -> Path:
        """Write the checkpoint of ``state["global_step"]``; returns its state file.

        ``state`` is JSON-ready: ``epoch`` (1-based), ``step_in_epoch``, ``global_step``,
        ``history`` and whatever else the trainer keeps. Raises :class:`TrainingError` (and writes
        nothing) when a trainable weight is not finite.
        """
        check_finite_weights(model)
        self.folder.mkdir(parents=True, exist_ok=True)
        step = int(state["global_step"])
        weights, state_path = run_folder.checkpoint_paths(self.run_dir, step)
        # A state file of this step from an abandoned branch of the run must go first.
        if state_path.exists():
            state_path.unlink()

        with atomic.atomic_path(weights) as temp:
            model.save_weights(str(temp))

        record = dict(state)
        record.update({
            "format": FORMAT,
            "weights_file": weights.name,
            "optimizer_iterations": _iterations(model),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        atomic.atomic_write_json(state_path, record)
        self.prune()
        return state_path

    # ----------------------------------------------------------------- finding
    def steps(self) -> list[int]:
        """Global steps of the complete checkpoints (state file present), ascending."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob("ckpt-*.state.json"):
            step = _step_of(path.name)
            if step is not None and run_folder.checkpoint_paths(self.run_dir, step)[0].is_file():
                found.append(step)
        return sorted(found)

    def latest(self) -> dict | None:
        """The state dict of the newest complete checkpoint (with ``"state_path"``), or None."""
        steps = self.steps()
        if not steps:
            return None
        path = run_folder.checkpoint_paths(self.run_dir, steps[-1])[1]
        state = read_state(path)
        state["state_path"] = str(path)
        return state

    # --------------------------------------------------------------- restoring
    def restore(self, model, state: dict) -> None:
        """Load the weights and optimizer variables of ``state`` (from :meth:`latest`) into
        ``model``, whose optimizer must be built.

        Raises:
            CheckpointError: the weights file is missing or does not match the model.
        """
        weights, _ = run_folder.checkpoint_paths(self.run_dir, int(state["global_step"]))
        if not weights.is_file():
            raise CheckpointError(f"checkpoint file {weights} is missing; delete {state['state_path']} "
                                  "to resume from the previous checkpoint")
        try:
            model.load_weights(str(weights))
        except (ValueError, KeyError, OSError) as error:
            raise CheckpointError(f"{weights} does not match the model ({str(error).splitlines()[0][:120]}); "
                                  "resume with the config.json of that run") from None
        expected = state.get("optimizer_iterations")
        if expected is not None and _iterations(model) != int(expected):
            raise CheckpointError(f"the optimizer state of {weights} was not restored (iterations {_iterations(model)}, "
                                  f"expected {expected}); resume with the same --mixed-precision as the run")

    # ---------------------------------------------------------------- clean-up
    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints (state file first, so none is ever
        seen half-deleted)."""
        for step in self.steps()[:-self.keep]:
            weights, state = run_folder.checkpoint_paths(self.run_dir, step)
            for path in (state, weights):
                if path.exists():
                    path.unlink()

    def remove_incomplete(self) -> list[str]:
        """Delete temporary files of interrupted saves and files of checkpoints without a state
        file; returns the names removed.

        Call it only while holding the run folder's lock (:func:`mpanet_tf.io.locks.folder_lock`,
        which ``train`` holds for the whole run): a temporary file is then never one that another
        live process is still writing.
        """
        if not self.folder.is_dir():
            return []
        complete = set(self.steps())
        removed = []
        for path in self.folder.iterdir():
            step = _step_of(path.name) if path.name.startswith("ckpt-") else None
            if atomic.is_temporary(path.name) \
                    or (step is not None and step not in complete):
                path.unlink()
                removed.append(path.name)
        return removed
