"""``train(config, output_dir)``: the MPANet training run (facts §3; issue 4).

One epoch is one full pass of the identity/pair sampler regenerated for that epoch (facts §3.6,
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
- the run folder (:mod:`mpanet_tf.run_folder`): ``config.json``, ``run.json``, ``history.json``,
  ``tensorboard/``, ``checkpoints/``, ``model.keras``. Everything that can fail at start-up (the
  output folder, the dataset, the backbone weights, the model) is checked before anything is
  written; under multi-worker only the chief writes there, the other workers write to a
  temporary folder.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras

from mpanet_tf import run_folder
from mpanet_tf.config import MPANetConfig
from mpanet_tf.errors import ConfigError, TrainingError
from mpanet_tf.training import setup
from mpanet_tf.training.checkpoints import CheckpointManager
from mpanet_tf.training.history import TensorBoardLog, make_entry, write_history
from mpanet_tf.training.progress import InterruptFlag, RunProgress, StepMonitor
from mpanet_tf.training.schedules import EpochSchedule
from mpanet_tf.training.strategy import is_chief_task


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


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar without its "Epoch e/e" header (the trainer prints its own line)."""

    def set_params(self, params):
        super().set_params({**params, "epochs": 1})


# --------------------------------------------------------------------------- building
def _build(config: MPANetConfig, num_classes: int, strategy):
    """Model and optimizer inside ``strategy.scope()`` (the policy is already set)."""
    from mpanet_tf.model import build_model

    with strategy.scope():
        model = build_model(config, num_classes)
        model.compile(optimizer=setup.make_optimizer(config), jit_compile=bool(config.train.jit))
        model.optimizer.build(model.trainable_variables)
    # Model and optimizer are built here, so Keras' fit need not build them from a batch. Under a
    # distribution strategy its TensorFlowTrainer._maybe_symbolic_build would pull one batch per
    # fit and average it across replicas with strategy.reduce, which fails on the bool infrared
    # flags and, under MultiWorkerMirroredStrategy, on the per-replica batch itself (Keras 3.15).
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    if strategy.extended._in_multi_worker_mode():
        # Keras 3.15 averages the step's logged values across workers with
        # strategy.reduce("MEAN", value, axis=0), which fails on scalars: hand them over as (1,).
        step = model.train_step

        def train_step(data):
            return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

        model.train_step = train_step
    return model


def _epoch_data(strategy, records, sampler, epoch, config, first_step, steps, cache):
    """The batches ``first_step ..`` of 1-based ``epoch`` (global batches, or per-worker slices
    through ``distribute_datasets_from_function`` under multi-worker)."""
    from mpanet_tf.data.pipeline import build_train_dataset

    def make(input_context=None):
        return build_train_dataset(records, sampler, epoch - 1, config, start_step=first_step,
                                   input_context=input_context, cache=cache).take(steps)

    if strategy.extended._in_multi_worker_mode():
        return strategy.distribute_datasets_from_function(make)
    return make()


# ---------------------------------------------------------------------------- train
@run_folder.holding_lock("run folder", when=is_chief_task)  # the whole run holds the folder's lock
def train(config: MPANetConfig, output_dir, *, resume: bool = False, force: bool = False, verbose: int = 1,
          final_eval: bool = True, callbacks=(), log=None, detail_log=None) -> TrainResult:
    """Train MPANet into the run folder ``output_dir``.

    Args:
        config: the resolved :class:`MPANetConfig` (``data.data_root`` names the dataset).
        output_dir: the run folder; must be empty or absent unless ``resume``/``force``.
        resume: continue the run in ``output_dir`` from its newest checkpoint, with its
            ``config.json`` (the fields of :data:`setup.RESUMABLE_FIELDS` may change); an
            absent or empty folder starts a new run.
        force: delete what an earlier run wrote in ``output_dir`` first.
        verbose: Keras ``fit`` output: 0 none, 1 progress bar, 2 one line per epoch.
        final_eval: evaluate the last epoch's model at the end.
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
    from mpanet_tf.training.strategy import describe, is_chief, make_strategy

    log = log or _print
    config.validate()
    output = Path(output_dir).expanduser().absolute()
    saved_config = setup.check_output(output, resume=resume, force=force)
    if saved_config is not None:
        config = setup.merge_resume_config(saved_config, config)
    strategy = make_strategy(config.train.strategy)
    chief = is_chief(strategy)
    reader = CheckpointManager(output)
    state = reader.latest() if resume else None

    dataset, records, sampler, cache = setup.load_training_data(config, strategy.num_replicas_in_sync, log)
    num_classes = len(dataset.train_ids)
    resolved = None
    if state is None:
        from mpanet_tf.weights import resolve_backbone

        resolved = resolve_backbone(config.model.backbone_weights, progress=verbose > 0)

    with setup.precision_policy(config.train.mixed_precision):
        # Seeded initialisation, as the authors seed torch (facts §3.1): a run is reproducible.
        keras.utils.set_random_seed(int(config.train.seed))
        model = _build(config, num_classes, strategy)
        if state is None:
            from mpanet_tf.weights import initialize_backbone

            init = initialize_backbone(model, config.model.backbone_weights, resolved=resolved)
            progress = RunProgress()
        else:
            reader.restore(model, state)
            init = run_folder.read_json(output / run_folder.RUN_FILE).get("backbone_init") \
                if (output / run_folder.RUN_FILE).is_file() else None
            progress = RunProgress.from_state(state)

        # Start-up is over: from here on the run folder is written.
        write_dir = output if chief else Path(tempfile.mkdtemp(prefix="mpanet-worker-"))
        if chief and force:
            setup.clear_run_folder(output)
        write_dir.mkdir(parents=True, exist_ok=True)
        manager = CheckpointManager(write_dir)
        manager.remove_incomplete()
        meta = setup.run_meta(config, dataset, num_classes, init, strategy, sampler, "running")
        if state is not None and (write_dir / run_folder.RUN_FILE).is_file():
            meta["started_at"] = run_folder.read_json(write_dir / run_folder.RUN_FILE).get("started_at")
        run_folder.atomic_write_json(write_dir / run_folder.CONFIG_FILE, config.to_dict())
        run_folder.atomic_write_json(write_dir / run_folder.RUN_FILE, meta)
        log(f"{model.summary_line()}; {num_classes} classes; {describe(strategy)}")
        if state is not None:
            log(f"resuming {output} from global step {progress.global_step} (epoch {progress.epoch}, "
                f"step {progress.step_in_epoch}{', complete' if progress.epoch_complete else ''})")

        try:
            evaluation = _train_loop(config, model, strategy, dataset, records, sampler, cache, progress, manager,
                                     write_dir, chief, verbose, final_eval, list(callbacks), log, detail_log)
        except TrainingInterrupted:
            meta.update(status="interrupted", global_step=progress.global_step)
            run_folder.atomic_write_json(write_dir / run_folder.RUN_FILE, meta)
            raise
        except Exception as error:
            meta.update(status="failed", error=" ".join(str(error).split())[:500], global_step=progress.global_step)
            run_folder.atomic_write_json(write_dir / run_folder.RUN_FILE, meta)
            raise

        final = write_dir / run_folder.FINAL_MODEL
        run_folder.atomic_save_model(model, final)
        meta.update(status="finished", global_step=progress.global_step, epochs_completed=len(progress.history),
                    finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
                    evaluation=None if evaluation is None else evaluation["results"])
        run_folder.atomic_write_json(write_dir / run_folder.RUN_FILE, meta)
    if not chief:
        shutil.rmtree(write_dir, ignore_errors=True)
    log(f"finished: {progress.global_step} steps, {len(progress.history)} epochs; model saved to {final}")
    return TrainResult(output, model, progress.history, evaluation, progress.global_step, "finished")


def _train_loop(config, model, strategy, dataset, records, sampler, cache, progress, manager, write_dir, chief,
                verbose, final_eval, extra_callbacks, log, detail_log):
    """The epochs; returns the final evaluation (or None)."""
    from mpanet_tf.data.pipeline import DECODE_ERRORS, locate_bad_image
    from mpanet_tf.inference import embedding_function
    from mpanet_tf.training.live_eval import evaluate_live_model

    train_cfg = config.train
    schedule = EpochSchedule(config)
    tensorboard = TensorBoardLog(write_dir)
    embed_fn = None
    evaluation = None
    monitor = None

    def save_checkpoint():
        state = progress.state()
        if monitor is not None and not progress.epoch_complete:
            sums, count, seconds = monitor.epoch_sums()
            state["partial_epoch"] = {"sums": sums, "count": count, "seconds": seconds}
        return manager.save(model, state)

    start_epoch, start_step = progress.next_position()
    try:
        with InterruptFlag() as interrupt:
            for epoch in range(start_epoch, train_cfg.epochs + 1):
                iterations = sampler.num_batches(epoch - 1)
                if train_cfg.steps_per_epoch:
                    iterations = min(iterations, int(train_cfg.steps_per_epoch))
                first_step = start_step if epoch == start_epoch else 0
                progress.begin_epoch(epoch, iterations, first_step)
                values = schedule.values_for(epoch)
                log(f"epoch {epoch}/{train_cfg.epochs}: {iterations} iterations (the authors' IR-only estimate: "
                    f"{sampler.estimated_iterations_ir_only}), lr {values['lr']:.3g}, EMA rate {values['ema_rate']:.4g}"
                    + (f", continuing at step {first_step}" if first_step else ""))
                monitor = StepMonitor(progress, save_checkpoint, train_cfg.save_every_steps, interrupt,
                                      log=detail_log)
                if first_step < iterations:
                    data = _epoch_data(strategy, records, sampler, epoch, config, first_step,
                                       iterations - first_step, cache)
                    fit_callbacks = [schedule, monitor, *extra_callbacks]
                    if verbose:
                        fit_callbacks.append(_EpochProgbar())
                    try:
                        model.fit(data, initial_epoch=epoch - 1, epochs=epoch, steps_per_epoch=iterations - first_step,
                                  callbacks=fit_callbacks, verbose=verbose, shuffle=False)
                    except DECODE_ERRORS as error:
                        step = progress.step_in_epoch
                        bad = locate_bad_image(records, sampler.epoch_batches(epoch - 1)[step:step + 2])
                        if bad is None:
                            raise
                        raise bad from error
                    if monitor.failure:
                        latest = manager.steps()
                        kept = (f"the last good checkpoint is step {latest[-1]} in {manager.folder}" if latest
                                else "no checkpoint was saved")
                        raise TrainingError(f"{monitor.failure}; stopped without saving, {kept}; lower --lr "
                                            "(or check the data) and resume with --resume")
                    if monitor.interrupted:
                        raise TrainingInterrupted(write_dir, progress, monitor.interrupted)
                else:
                    schedule.apply(model, epoch)
                means, seconds = monitor.epoch_means(), monitor.epoch_sums()[2]
                if first_step >= iterations:  # resumed exactly at the end of an epoch
                    means = {k: v / max(progress.count, 1) for k, v in progress.sums.items()}
                    seconds = progress.seconds
                entry = make_entry(epoch, progress.global_step, iterations, values["lr"], values["ema_rate"],
                                   means, seconds)
                last = epoch == train_cfg.epochs
                due = (final_eval and last) or (train_cfg.eval_every and epoch % train_cfg.eval_every == 0)
                if due and chief:
                    embed_fn = embed_fn or embedding_function(model, folded=False, jit=train_cfg.jit)
                    result = evaluate_live_model(model, dataset, config, final=last and final_eval,
                                                 embed_fn=embed_fn, log=log)
                    if result is not None:
                        entry["eval"] = {**result["summary"], "seconds": result["seconds"]}
                        log(f"epoch {epoch} evaluation: rank-1 {result['summary']['rank1']:.2f}, "
                            f"mAP {result['summary']['mAP']:.2f}, mINP {result['summary']['mINP']:.2f}")
                        if last:
                            evaluation = result
                progress.history.append(entry)
                progress.epoch_complete = True
                progress.sums, progress.count, progress.seconds = {}, 0, 0.0
                save_checkpoint()
                write_history(write_dir, progress.history)
                tensorboard.write_epoch(entry)
                log(_entry_line(entry))
                if interrupt.requested:
                    raise TrainingInterrupted(write_dir, progress, manager.latest())
    finally:
        tensorboard.close()
    if evaluation is None and final_eval and progress.history and "eval" in progress.history[-1] and chief:
        evaluation = {"summary": progress.history[-1]["eval"], "results": None}
    return evaluation


def _entry_line(entry: dict) -> str:
    terms = ", ".join(f"{k} {entry[k]:.4f}" for k in ("loss", "id", "cc", "sep", "sid", "kl"))
    return f"epoch {entry['epoch']} done in {entry['seconds']:.1f}s (global step {entry['global_step']}): {terms}"


# -------------------------------------------------------------------------- repeats
def seed_folder(output_dir, seed: int) -> Path:
    """``<output>/seed-<seed>``: the folder of one run of ``--repeat``."""
    return Path(output_dir) / f"seed-{int(seed)}"


def train_repeats(config: MPANetConfig, output_dir, repeat: int, **kwargs) -> list[TrainResult]:
    """``--repeat N``: N runs with seeds ``seed, seed+1, ...`` in ``<output>/seed-<seed>/``, one
    after the other (keyword arguments as :func:`train`)."""
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    output = Path(output_dir)
    if not kwargs.get("resume") and not kwargs.get("force") and not setup.is_empty_folder(output):
        setup.check_output(output, resume=False, force=False)
    results = []
    for offset in range(int(repeat)):
        run_config = MPANetConfig.from_dict(config.to_dict())
        run_config.train.seed = config.train.seed + offset
        results.append(train(run_config, seed_folder(output, run_config.train.seed), **kwargs))
        keras.backend.clear_session()
    return results
