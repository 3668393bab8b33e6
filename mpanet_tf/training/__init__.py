"""Training MPANet: strategy, schedules, checkpoints, the run loop (design.md §3; issue 4).

Public API::

    from mpanet_tf.training import train, train_repeats, TrainingInterrupted

- :func:`~mpanet_tf.training.trainer.train` ``(config, output_dir, *, resume, force, verbose,
  final_eval, callbacks, log) -> TrainResult``
- :func:`~mpanet_tf.training.trainer.train_repeats` ``(config, output_dir, repeat, **kwargs)``
- :mod:`.strategy` (``--strategy``), :mod:`.schedules` (LR and EMA rate per epoch),
  :mod:`.checkpoints` (atomic checkpoints, resume), :mod:`.progress` (step bookkeeping, NaN guard,
  Ctrl-C), :mod:`.history` (history.json, TensorBoard), :mod:`.evaluation` (``--eval-every``),
  :mod:`.setup` (output folder, resume config, data, precision policy, optimizer, model),
  :mod:`.keras_workarounds` (what ``fit`` under ``tf.distribute`` needs with Keras 3.15).
- :class:`~mpanet_tf.training.trainer.TrainingRun`: the state of one run and its steps.

TensorFlow is imported when a function is first used, not by this package.
"""

__all__ = ["train", "train_repeats", "TrainingInterrupted", "TrainResult"]


def __getattr__(name):
    if name in __all__:
        from mpanet_tf.training import trainer  # deferred: TensorFlow (the trainer imports keras); importing the package stays light

        return getattr(trainer, name)
    raise AttributeError(f"module 'mpanet_tf.training' has no attribute {name!r}")
