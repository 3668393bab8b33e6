"""Workarounds for Keras 3.15 / TensorFlow 2.21 behaviour that breaks MPANet's ``fit`` under
``tf.distribute``, each with the failure it avoids, so it can be dropped when Keras fixes it.

Checked on Keras 3.15.1 and TensorFlow 2.21.0 (``keras/src/backend/tensorflow/trainer.py``). When
upgrading, delete a workaround and run ``tests/training/test_distributed.py`` (mirrored and
multi-worker runs on two logical CPUs): if it passes, the workaround is no longer needed.

1. :func:`skip_symbolic_build` (Keras 3.15). ``TensorFlowTrainer.fit`` calls
   ``_maybe_symbolic_build(iterator=...)`` at every ``fit`` call. Under a distribution strategy it
   pulls one batch and averages it across replicas with ``strategy.reduce("MEAN", batch,
   axis=None)``, which fails on our bool ``infrared`` flags and, under
   ``MultiWorkerMirroredStrategy``, on the per-replica batch itself. MPANet is fully built
   (model and optimizer) before ``fit``, so the symbolic build has nothing to do.
2. :func:`reduce_logs_as_vectors` (Keras 3.15). Under multi-worker, ``reduce_per_replica`` averages
   the step's logged values across workers with ``strategy.reduce("MEAN", value, axis=0)``, which
   fails on the scalars ``train_step`` returns (they have no axis 0); handing them over with
   shape ``(1,)`` gives the same means.
3. :func:`in_multi_worker_mode` (TensorFlow 2.21). There is no public way to ask whether a
   strategy spans several workers (a ``MultiWorkerMirroredStrategy`` without ``TF_CONFIG`` runs
   on one); Keras itself asks ``strategy.extended._in_multi_worker_mode()``
   (``_collective_all_reduce_multi_worker``), and so do we, in this one place.
"""

from __future__ import annotations


def in_multi_worker_mode(strategy) -> bool:
    """True when ``strategy`` runs across several workers (False for None or any other object)."""
    extended = getattr(strategy, "extended", None)
    return bool(getattr(extended, "_in_multi_worker_mode", lambda: False)())


def skip_symbolic_build(model) -> None:
    """Stop ``fit`` from building ``model`` from a reduced batch (workaround 1); ``model`` and its
    optimizer must already be built."""
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def reduce_logs_as_vectors(model) -> None:
    """Make ``model.train_step`` return its logged values with shape (1,) instead of () (workaround 2)."""
    import keras  # deferred: Keras/TensorFlow; the multi-worker check above needs neither

    step = model.train_step

    def train_step(data):
        return {name: keras.ops.reshape(value, (1,)) for name, value in step(data).items()}

    model.train_step = train_step


def prepare_for_fit(model, strategy) -> None:
    """Apply the workarounds ``model`` needs before ``fit`` under ``strategy``."""
    skip_symbolic_build(model)
    if in_multi_worker_mode(strategy):
        reduce_logs_as_vectors(model)
