"""``train(config, output_dir)``: the MPANet training run (design.md §3; issue 4).

One epoch is one full pass of the identity/pair sampler regenerated for that epoch (design.md §3.6,
decision 5), optionally capped by ``train.steps_per_epoch``; each epoch is one ``model.fit`` call
on that epoch's ``tf.data`` pipeline, so the step is Keras' (``MPANet.train_step``) and the
progress bar shows every loss term. Around it:

- schedules at every epoch start (:mod:`.schedules`): MultiStep LR, EMA rate;
- checkpoints (:mod:`.checkpoints`) at every epoch end and every ``save_every_steps`` steps,
  ``--resume`` continuing from the newest at the exact step (the pipeline is a pure function of
  (seed, epoch, step));
- Ctrl-C saves a checkpoint and raises :class:`TrainingInterrupted`; a NaN/inf loss raises
  :class:`~mpanet_tf.errors.TrainingError` without saving the bad state;
- evaluation every ``eval_every`` epochs and of the last epoch's model at the end (:mod:`.evaluation`);
- the run folder (:mod:`mpanet_tf.run_folder`): ``config.json``, ``run.json``, ``history.json``
  (:mod:`.history`), ``tensorboard/``, ``checkpoints/``, ``model.keras``. Everything that can fail
  at start-up (the output folder, the dataset, the backbone weights, the model) is checked before
  anything is written; under multi-worker only the chief writes there, the other workers write to
  a temporary folder.

The run's state (config, strategy, data, model, position, checkpoints, folder) is one
:class:`TrainingRun`; its methods are the steps of a run. The Keras workarounds ``fit`` needs under
``tf.distribute`` live in :mod:`.keras_workarounds`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from mpanet_tf import run_folder
from mpanet_tf.config import MAX_SEED, MPANetConfig
from mpanet_tf.data.bad_images import locate_bad_image
from mpanet_tf.data.pipeline import DECODE_ERRORS, build_train_dataset
from mpanet_tf.errors import ConfigError, TrainingError
from mpanet_tf.inference import embedding_function
from mpanet_tf.interop.backbone_init import initialize_backbone, resolve_backbone
from mpanet_tf.io import atomic, locks
from mpanet_tf.training import setup
from mpanet_tf.training.checkpoints import CheckpointManager
from mpanet_tf.training.history import TensorBoardLog, epoch_line, make_entry, write_history
from mpanet_tf.training.keras_workarounds import in_multi_worker_mode
from mpanet_tf.training.live_eval import evaluate_live_model
from mpanet_tf.training.progress import InterruptFlag, RunProgress, StepMonitor
from mpanet_tf.training.schedules import EpochSchedule
from mpanet_tf.training.strategy import describe, is_chief, is_chief_task, make_strategy


class TrainingInterrupted(Exception):
    """Ctrl-C: a checkpoint was saved; ``str(error)`` is one line saying how to resume."""

    def __init__(self, run_dir, progress: RunProgress, checkpoint):
        self.run_dir, self.checkpoint = Path(run_dir), checkpoint
        self.epoch, self.step, self.global_step = progress.epoch, progress.step_in_epoch, progress.global_step
        super().__init__(f"interrupted at epoch {self.epoch}, step {self.step} (global step {self.global_step}); "
                         f"checkpoint saved in {self.run_dir / run_folder.CHECKPOINT_DIR}")


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    run_dir: Path
    model: object
    history: list
    evaluation: dict | None
    global_step: int
    status: str


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass
class TrainOptions:
    """How a run reports and what it adds to ``fit``, besides its config (see :func:`train`)."""

    verbose: int = 1
    final_eval: bool | None = True   # None: a resumed run keeps what its run.json says (default True)
    callbacks: tuple = ()
    log: Callable[[str], None] = _print
    detail_log: Callable[[str], None] | None = None


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without its "Epoch e/e" header (the trainer prints its own line)."""

    def set_params(self, params):
        super().set_params({**params, "epochs": 1})


# ---------------------------------------------------------------------------- train
@locks.holding_lock("run folder", when=is_chief_task)  # the whole run holds the folder's lock
def train(config: MPANetConfig, output_dir, *, dataset=None, resume: bool = False, force: bool = False,
          verbose: int = 1, final_eval: bool | None = True, callbacks=(), log=None, detail_log=None) -> TrainResult:
    """Train MPANet into the run folder ``output_dir``.

    Args:
        config: the resolved :class:`MPANetConfig` (``data.data_root`` names the dataset).
        output_dir: the run folder; must be empty or absent unless ``resume``/``force``.
        dataset: the :class:`~mpanet_tf.data.registry.DatasetSpec` of ``config.data.dataset``
            (the CLI resolves ``--dataset`` once); None looks it up.
        resume: continue the run in ``output_dir`` from its newest checkpoint, with its
            ``config.json`` (the fields of :data:`setup.RESUMABLE_FIELDS` may change); an
            absent or empty folder starts a new run.
        force: delete what an earlier run wrote in ``output_dir`` first.
        verbose: Keras ``fit`` output: 0 none, 1 progress bar, 2 one line per epoch.
        final_eval: evaluate the last epoch's model at the end; None keeps the choice the run was
            started with (its ``run.json``; True for a new run).
        callbacks: extra Keras callbacks for every ``fit`` call (after the trainer's own).
        log: ``str -> None`` for the run's messages (default: print).
        detail_log: ``str -> None`` for detail lines (every step checkpoint), or None.

    Returns:
        :class:`TrainResult`.

    Raises:
        ConfigError, DatasetError, WeightsUnavailableError, CheckpointError: start-up problems,
            before anything is written.
        TrainingError: a non-finite loss (the last good checkpoint is kept).
        TrainingInterrupted: Ctrl-C (a checkpoint was saved).
    """
    options = TrainOptions(verbose, final_eval, tuple(callbacks), log or _print, detail_log)
    config.validate()
    output = Path(output_dir).expanduser().absolute()
    saved_config = setup.check_output(output, resume=resume, force=force)
    if saved_config is not None:
        config = setup.merge_resume_config(saved_config, config)
    run = TrainingRun(config, setup.dataset_spec(config, dataset), output, options)
    run.load(resume)
    with setup.precision_policy(config.train.mixed_precision):
        run.build_model()
        # Start-up is over: from here on the run folder is written.
        run.open_folder(force)
        try:
            evaluation = run.train_epochs()
        except TrainingInterrupted:
            run.write_status("interrupted")
            raise
        except Exception as error:
            run.write_status("failed", error=" ".join(str(error).split())[:500])
            raise
        final = run.finish(evaluation)
    run.close()
    progress = run.progress
    options.log(f"finished: {progress.global_step} steps, {len(progress.history)} epochs; model saved to {final}")
    return TrainResult(output, run.model, progress.history, evaluation, progress.global_step, "finished")


class TrainingRun:
    """The state of one training run, and the steps that advance it.

    Built by :func:`train`: :meth:`load` and :meth:`build_model` (nothing written yet), then
    :meth:`open_folder`, :meth:`train_epochs`, :meth:`finish` and :meth:`close`.

    Attributes:
        config: the run's resolved :class:`MPANetConfig`.
        spec: the :class:`~mpanet_tf.data.registry.DatasetSpec` of its dataset.
        output: the run folder named by the user.
        options: :class:`TrainOptions`.
        strategy: the ``tf.distribute`` strategy; ``chief``: this process writes ``output``.
        data: :class:`~mpanet_tf.training.setup.TrainingData` (dataset, records, sampler, cache).
        model: the compiled MPANet.
        progress: :class:`~mpanet_tf.training.progress.RunProgress`, the position and history.
        folder: where this process writes: ``output`` for the chief, a temporary folder otherwise.
        checkpoints: the :class:`CheckpointManager` of ``folder``.
        meta: the ``run.json`` contents.
    """

    def __init__(self, config: MPANetConfig, spec, output: Path, options: TrainOptions):
        self.config, self.spec, self.output, self.options = config, spec, output, options
        self.strategy = make_strategy(config.train.strategy)
        self.chief = is_chief(self.strategy)
        self.schedule = EpochSchedule(config)
        self.data = self.model = self.progress = self.folder = self.checkpoints = self.meta = None
        self.monitor = None          # the StepMonitor of the epoch in progress
        self._state = None           # the checkpoint state a resumed run starts from
        self._backbone = None        # the resolved backbone weights of a new run
        self._init = None            # run.json's "backbone_init"
        self._embed_fn = None        # the evaluation's embedding function, reused across epochs

    # ------------------------------------------------------ start-up (nothing is written)
    def load(self, resume: bool) -> None:
        """Read the newest checkpoint's state (``resume``), the data and, for a new run, the
        backbone weights."""
        self._state = CheckpointManager(self.output).latest() if resume else None
        self.data = setup.load_training_data(self.config, self.spec, self.strategy.num_replicas_in_sync,
                                             self.options.log)
        if self._state is None:
            self._backbone = resolve_backbone(self.config.model.backbone_weights, progress=self.options.verbose > 0)
        if self.options.final_eval is None:   # a resumed run keeps its --final-eval/--no-final-eval
            run_file = self.output / run_folder.RUN_FILE
            saved = run_folder.read_json(run_file).get("final_eval") if resume and run_file.is_file() else None
            self.options.final_eval = True if saved is None else bool(saved)

    def build_model(self) -> None:
        """Build the model (the dtype policy is set) and initialise it, or restore the checkpoint."""
        # Seeded initialisation, as the authors seed torch (design.md §3.1): a run is reproducible.
        keras.utils.set_random_seed(int(self.config.train.seed))
        self.model = setup.build_training_model(self.config, self.data.num_classes, self.strategy)
        if self._state is None:
            self._init = initialize_backbone(self.model, self.config.model.backbone_weights, resolved=self._backbone)
            self.progress = RunProgress()
        else:
            CheckpointManager(self.output).restore(self.model, self._state)
            run_file = self.output / run_folder.RUN_FILE
            self._init = run_folder.read_json(run_file).get("backbone_init") if run_file.is_file() else None
            self.progress = RunProgress.from_state(self._state)

    # ------------------------------------------------------------------ the run folder
    def open_folder(self, force: bool) -> None:
        """Clear the folder (``force``), drop incomplete checkpoints, write ``config.json`` and ``run.json``."""
        self.folder = self.output if self.chief else Path(tempfile.mkdtemp(prefix="mpanet-worker-"))
        if self.chief and force:
            setup.clear_run_folder(self.output)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.checkpoints = CheckpointManager(self.folder)
        self.checkpoints.remove_incomplete()
        self.meta = setup.run_meta(self.config, self.data, self._init, self.strategy, "running")
        self.meta["final_eval"] = bool(self.options.final_eval)
        run_file = self.folder / run_folder.RUN_FILE
        if self._state is not None and run_file.is_file():
            self.meta["started_at"] = run_folder.read_json(run_file).get("started_at")
        atomic.atomic_write_json(self.folder / run_folder.CONFIG_FILE, self.config.to_dict())
        atomic.atomic_write_json(run_file, self.meta)
        self.options.log(f"{self.model.summary_line()}; {self.data.num_classes} classes; {describe(self.strategy)}")
        if self._state is not None:
            p = self.progress
            self.options.log(f"resuming {self.output} from global step {p.global_step} (epoch {p.epoch}, "
                             f"step {p.step_in_epoch}{', complete' if p.epoch_complete else ''})")

    def write_status(self, status: str, **fields) -> None:
        """Update ``run.json``: ``status``, the global step and ``fields``."""
        self.meta.update(status=status, global_step=self.progress.global_step, **fields)
        atomic.atomic_write_json(self.folder / run_folder.RUN_FILE, self.meta)

    def save_checkpoint(self) -> Path:
        """Checkpoint the model and the position, with the running sums of an unfinished epoch."""
        state = self.progress.state()
        if self.monitor is not None and not self.progress.epoch_complete:
            sums, count, seconds = self.monitor.epoch_sums()
            state["partial_epoch"] = {"sums": sums, "count": count, "seconds": seconds}
        return self.checkpoints.save(self.model, state)

    def finish(self, evaluation) -> Path:
        """Save the final ``model.keras`` and mark the run finished; returns the model's path."""
        final = self.folder / run_folder.FINAL_MODEL
        atomic.atomic_save_model(self.model, final)
        self.write_status("finished", epochs_completed=len(self.progress.history),
                          finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                          evaluation=None if evaluation is None else evaluation["results"])
        return final

    def close(self) -> None:
        """Remove the temporary folder of a worker that is not the chief."""
        if not self.chief:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ---------------------------------------------------------------------- the epochs
    def train_epochs(self):
        """Train from where the run stands to ``train.epochs``; returns the final evaluation (or None)."""
        tensorboard = TensorBoardLog(self.folder)
        start_epoch, start_step = self.progress.next_position()
        last_epoch = self.config.train.epochs
        evaluation = None
        try:
            with InterruptFlag() as interrupt:
                for epoch in range(start_epoch, last_epoch + 1):
                    entry = self._train_epoch(epoch, start_step if epoch == start_epoch else 0, interrupt)
                    result = self._evaluate_if_due(entry)
                    if result is not None and epoch == last_epoch:
                        evaluation = result
                    self._record_epoch(entry, tensorboard)
                    if interrupt.requested:
                        raise TrainingInterrupted(self.folder, self.progress, self.checkpoints.latest())
        finally:
            tensorboard.close()
        history = self.progress.history
        if evaluation is None and self.options.final_eval and history and "eval" in history[-1] and self.chief:
            evaluation = {"summary": history[-1]["eval"], "results": None}
        return evaluation

    def _train_epoch(self, epoch: int, first_step: int, interrupt) -> dict:
        """Train 1-based ``epoch`` from ``first_step``; returns its history entry."""
        train_cfg, progress, sampler = self.config.train, self.progress, self.data.sampler
        iterations = sampler.num_batches(epoch - 1)
        if train_cfg.steps_per_epoch:
            iterations = min(iterations, int(train_cfg.steps_per_epoch))
        progress.begin_epoch(epoch, iterations, first_step)
        values = self.schedule.values_for(epoch)
        self.options.log(f"epoch {epoch}/{train_cfg.epochs}: {iterations} iterations (the authors' IR-only estimate: "
                         f"{sampler.estimated_iterations_ir_only}), lr {values['lr']:.3g}, EMA rate "
                         f"{values['ema_rate']:.4g}" + (f", continuing at step {first_step}" if first_step else ""))
        self.monitor = StepMonitor(progress, self.save_checkpoint, train_cfg.save_every_steps, interrupt,
                                   log=self.options.detail_log)
        if first_step < iterations:
            self._fit(epoch, first_step, iterations)
            means, seconds = self.monitor.epoch_means(), self.monitor.epoch_sums()[2]
        else:  # resumed exactly at the end of an epoch
            self.schedule.apply(self.model, epoch)
            means = {k: v / max(progress.count, 1) for k, v in progress.sums.items()}
            seconds = progress.seconds
        return make_entry(progress, values, means, seconds)

    def _fit(self, epoch: int, first_step: int, iterations: int) -> None:
        """One ``fit`` over the steps ``first_step ..`` of ``epoch``; a decode error names the
        image, a non-finite loss or Ctrl-C stops the run."""

        steps = iterations - first_step
        callbacks = [self.schedule, self.monitor, *self.options.callbacks]
        if self.options.verbose:
            callbacks.append(_EpochProgbar())
        try:
            self.model.fit(self._epoch_data(epoch, first_step, steps), initial_epoch=epoch - 1, epochs=epoch,
                           steps_per_epoch=steps, callbacks=callbacks, verbose=self.options.verbose, shuffle=False)
        except DECODE_ERRORS as error:
            step = self.progress.step_in_epoch
            bad = locate_bad_image(self.data.records, self.data.sampler.epoch_batches(epoch - 1)[step:step + 2])
            if bad is None:
                raise
            raise bad from error
        if self.monitor.failure:
            latest = self.checkpoints.steps()
            if latest:
                advice = (f"stopped without saving; the last good checkpoint is step {latest[-1]} in "
                          f"{self.checkpoints.folder}: lower --lr (or check the data) and continue from it with --resume")
            else:
                advice = ("stopped before any checkpoint was saved, so there is nothing to resume: lower --lr (or "
                          "check the data) and start again with --force")
            raise TrainingError(f"{self.monitor.failure}; {advice}")
        if self.monitor.interrupted:
            raise TrainingInterrupted(self.folder, self.progress, self.monitor.interrupted)

    def _epoch_data(self, epoch: int, first_step: int, steps: int):
        """The batches ``first_step ..`` of 1-based ``epoch`` (global batches, or per-worker slices
        through ``distribute_datasets_from_function`` under multi-worker)."""
        data = self.data

        def make(input_context=None):
            return build_train_dataset(data.records, data.sampler, epoch - 1, self.config, start_step=first_step,
                                       input_context=input_context, cache=data.cache).take(steps)

        if in_multi_worker_mode(self.strategy):
            return self.strategy.distribute_datasets_from_function(make)
        return make()

    def _evaluate_if_due(self, entry: dict):
        """Evaluate after the epoch of ``entry`` when due (``eval_every``, the final evaluation; the
        chief only), adding the summary to ``entry``; returns the result or None."""
        train_cfg, epoch = self.config.train, entry["epoch"]
        final = self.options.final_eval and epoch == train_cfg.epochs
        due = final or (train_cfg.eval_every and epoch % train_cfg.eval_every == 0)
        if not (due and self.chief):
            return None
        self._embed_fn = self._embed_fn or embedding_function(self.model, folded=False, jit=train_cfg.jit)
        result = evaluate_live_model(self.model, self.spec, self.data.dataset, self.config, final=final,
                                     embed_fn=self._embed_fn, log=self.options.log)
        if result is not None:
            summary = result["summary"]
            entry["eval"] = {**summary, "seconds": result["seconds"]}
            self.options.log(f"epoch {epoch} evaluation: rank-1 {summary['rank1']:.2f}, mAP {summary['mAP']:.2f}, "
                             f"mINP {summary['mINP']:.2f}")
        return result

    def _record_epoch(self, entry: dict, tensorboard: TensorBoardLog) -> None:
        """Close the epoch of ``entry``: history, checkpoint, ``history.json``, TensorBoard, log line."""
        progress = self.progress
        progress.history.append(entry)
        progress.epoch_complete = True
        progress.sums, progress.count, progress.seconds = {}, 0, 0.0
        self.save_checkpoint()
        write_history(self.folder, progress.history)
        tensorboard.write_epoch(entry)
        self.options.log(epoch_line(entry))


# -------------------------------------------------------------------------- repeats
def train_repeats(config: MPANetConfig, output_dir, repeat: int, **kwargs) -> list[TrainResult]:
    """``--repeat N``: N runs with seeds ``seed, seed+1, ...`` in ``<output>/seed-<seed>/``, one
    after the other (keyword arguments as :func:`train`)."""
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    if config.train.seed + int(repeat) - 1 > MAX_SEED:
        raise ConfigError(f"--repeat {repeat} from --seed {config.train.seed} needs seeds up to "
                          f"{config.train.seed + int(repeat) - 1}, above the largest seed {MAX_SEED}; lower --seed "
                          "or --repeat")
    output = Path(output_dir)
    if not kwargs.get("resume") and not kwargs.get("force") and not setup.is_empty_folder(output):
        setup.check_output(output, resume=False, force=False)
    results = []
    for offset in range(int(repeat)):
        run_config = MPANetConfig.from_dict(config.to_dict())
        run_config.train.seed = config.train.seed + offset
        results.append(train(run_config, run_folder.seed_folder(output, run_config.train.seed), **kwargs))
        keras.backend.clear_session()
    return results
