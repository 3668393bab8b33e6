"""Where a run is, step by step: position, running loss sums, NaN guard, step checkpoints, Ctrl-C.

:class:`RunProgress` is the run's position (1-based epoch, step in the epoch, global step), the
history of finished epochs and the running sums of the epoch in progress; it is what a checkpoint
stores and what ``--resume`` restores (:meth:`RunProgress.state`, :meth:`RunProgress.from_state`).

:class:`StepMonitor` is the Keras callback that keeps it current inside ``fit``. After every step:

1. stop (without saving) when a loss term is NaN or inf (:attr:`StepMonitor.failure`);
2. on Ctrl-C (:class:`InterruptFlag`): save a checkpoint and stop (:attr:`StepMonitor.interrupted`);
3. every ``save_every_steps`` global steps: save a checkpoint (epoch ends are saved by the trainer,
   after the optional evaluation).

Loss values: Keras resets the loss trackers when ``fit`` starts an epoch and reports running means
over the steps of that ``fit`` call. A resumed epoch therefore adds the running sums saved in the
checkpoint, so the history's mean is over all the steps of the epoch, before and after the resume.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

import keras

from mpanet_tf.loss_terms import LOGGED_LOSSES

#: The loss terms of a history entry (``loss`` is the weighted total, Eq. 14 with the code's weights).
LOSS_KEYS = LOGGED_LOSSES


@dataclass
class RunProgress:
    """The position of a run and the bookkeeping of its current epoch.

    Attributes:
        epoch: the epoch in progress (1-based), or the last one when ``epoch_complete``.
        step_in_epoch: steps of ``epoch`` done.
        iterations: steps of ``epoch`` in all.
        global_step: steps done since the start of the run.
        epoch_complete: ``epoch`` is finished (its entry is in ``history``).
        history: one dict per finished epoch (the ``history.json`` entries).
        sums: loss term -> sum of the per-step values of the steps of ``epoch`` done before the
            current ``fit`` segment; ``count`` of them.
        seconds: training seconds of ``epoch`` before the current segment.
    """

    epoch: int = 1
    step_in_epoch: int = 0
    iterations: int = 0
    global_step: int = 0
    epoch_complete: bool = False
    history: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)
    count: int = 0
    seconds: float = 0.0

    def state(self) -> dict:
        """The JSON-ready position stored in a checkpoint."""
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "iterations": self.iterations,
                "global_step": self.global_step, "epoch_complete": self.epoch_complete,
                "history": list(self.history),
                "partial_epoch": {"sums": dict(self.sums), "count": self.count, "seconds": self.seconds}}

    @classmethod
    def from_state(cls, state: dict) -> "RunProgress":
        partial = state.get("partial_epoch") or {}
        return cls(epoch=int(state["epoch"]), step_in_epoch=int(state["step_in_epoch"]),
                   iterations=int(state.get("iterations", 0)), global_step=int(state["global_step"]),
                   epoch_complete=bool(state.get("epoch_complete", False)), history=list(state.get("history", [])),
                   sums={k: float(v) for k, v in (partial.get("sums") or {}).items()},
                   count=int(partial.get("count", 0)), seconds=float(partial.get("seconds", 0.0)))

    def next_position(self) -> tuple[int, int]:
        """(1-based epoch, step in it) where training continues."""
        if self.epoch_complete:
            return self.epoch + 1, 0
        return self.epoch, self.step_in_epoch

    def begin_epoch(self, epoch: int, iterations: int, first_step: int) -> None:
        """Start (or, with ``first_step > 0``, continue) ``epoch`` of ``iterations`` steps."""
        if first_step == 0:
            self.sums, self.count, self.seconds = {}, 0, 0.0
        self.epoch, self.iterations, self.step_in_epoch = int(epoch), int(iterations), int(first_step)
        self.epoch_complete = False


class InterruptFlag:
    """Turns the first Ctrl-C (SIGINT) into a flag the step monitor checks; a second one raises
    :class:`KeyboardInterrupt` at once. Use as a context manager around the training loop (the
    handler is only installed in the main thread)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False


class StepMonitor(keras.callbacks.Callback):
    """Keras callback: step bookkeeping, NaN guard, Ctrl-C and ``--save-every-steps`` checkpoints.

    Args:
        progress: the run's :class:`RunProgress` (updated in place).
        save_checkpoint: ``() -> path``, saves a checkpoint of the current state.
        save_every_steps: checkpoint every N global steps (0 = only at epoch ends).
        interrupt: the :class:`InterruptFlag` of the run, or None.
    """

    def __init__(self, progress: RunProgress, save_checkpoint, save_every_steps: int = 0, interrupt=None, log=None):
        super().__init__()
        self.progress = progress
        self.save_checkpoint = save_checkpoint
        self.save_every_steps = int(save_every_steps or 0)
        self.interrupt = interrupt
        self.log = log
        self.failure = None
        self.interrupted = None
        self._means: dict = {}
        self._steps = 0
        self._start = time.time()

    def on_train_begin(self, logs=None):
        self.failure = self.interrupted = None
        self._means, self._steps, self._start = {}, 0, time.time()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        p = self.progress
        p.step_in_epoch += 1
        p.global_step += 1
        self._steps += 1
        self._means = {key: float(logs[key]) for key in LOSS_KEYS if key in logs}
        bad = [key for key, value in self._means.items() if not math.isfinite(value)]
        if bad:
            # A running mean turns non-finite exactly at the step whose value is non-finite.
            self.failure = (f"loss term {bad[0]!r} became {self._means[bad[0]]} at epoch {p.epoch}, step "
                            f"{p.step_in_epoch} (global step {p.global_step})")
            self.model.stop_training = True
            return
        if self.interrupt is not None and self.interrupt.requested:
            self.interrupted = self.save_checkpoint()
            self.model.stop_training = True
            return
        if (self.save_every_steps and p.global_step % self.save_every_steps == 0
                and p.step_in_epoch < p.iterations):
            path = self.save_checkpoint()
            if self.log is not None:
                self.log(f"checkpoint {path}")

    # ------------------------------------------------------------ epoch means
    def epoch_sums(self) -> tuple[dict, int, float]:
        """(sums, count, seconds) of the epoch so far, the saved part included."""
        p = self.progress
        sums = {key: p.sums.get(key, 0.0) + mean * self._steps for key, mean in self._means.items()}
        return sums, p.count + self._steps, p.seconds + (time.time() - self._start)

    def epoch_means(self) -> dict:
        """{loss term: mean over every step of the epoch}."""
        sums, count, _ = self.epoch_sums()
        return {key: value / max(count, 1) for key, value in sums.items()}
