"""The distribution strategy of a training run (``--strategy``), and who writes the run folder.

- ``auto``: :class:`tf.distribute.MirroredStrategy` over all GPUs when more than one is visible,
  else TensorFlow's default strategy (one device).
- ``one-device``: the default strategy (the first GPU, else the CPU).
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over every visible GPU; without GPUs,
  over every logical CPU device (one unless ``tf.config.set_logical_device_configuration`` split
  the CPU, as the tests do).
- ``multi-worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, cluster from the
  ``TF_CONFIG`` environment variable. Only the chief writes the run folder; every other worker
  runs the same code against a temporary folder (the pattern of the TensorFlow multi-worker
  tutorial), so the workers stay in lock step.

A global batch is P identities x K images; tf.distribute cuts it into ``num_replicas_in_sync``
contiguous slices, so P must be a multiple of the replica count for every slice to hold whole
identity blocks with both modalities (design.md §11, "Per-replica batch layout"; the
centre-cluster loss takes one anchor every K rows, design.md §2.3).
"""

from __future__ import annotations

import json
import os

from mpanet_tf.config import STRATEGIES
from mpanet_tf.errors import ConfigError
from mpanet_tf.training.keras_workarounds import in_multi_worker_mode


def make_strategy(name: str = "auto"):
    """The ``tf.distribute.Strategy`` for ``--strategy name``.

    Must be called before TensorFlow runs any op when ``name`` is ``"multi-worker"`` (the
    collective ops are configured when the eager context starts).

    Raises:
        ConfigError: unknown name, or ``multi-worker`` without a usable ``TF_CONFIG``.
    """
    import tensorflow as tf  # deferred: TensorFlow; read_tf_config and check_replica_layout need none

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multi-worker":
        cluster = read_tf_config()
        if cluster is None:
            raise ConfigError("--strategy multi-worker needs the TF_CONFIG environment variable "
                              "(cluster and task) on every worker; set it or use --strategy mirrored")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one-device":
        return tf.distribute.get_strategy()
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def read_tf_config() -> dict | None:
    """The parsed ``TF_CONFIG`` (``{"cluster": ..., "task": {"type", "index"}}``) or None.

    Raises:
        ConfigError: ``TF_CONFIG`` is set but is not JSON with a ``cluster`` and a ``task``.
    """
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error}); fix the environment variable") from None
    if not isinstance(config, dict) or "cluster" not in config or "task" not in config:
        raise ConfigError("TF_CONFIG must hold 'cluster' and 'task' (see the tf.distribute "
                          "multi-worker guide); fix the environment variable")
    return config


def is_chief(strategy=None) -> bool:
    """True for the process that writes the run folder: the only process of a single-worker run;
    under multi-worker the ``chief`` task, or worker 0 when the cluster has no chief."""
    return not in_multi_worker_mode(strategy) or is_chief_task()


def is_chief_task() -> bool:
    """:func:`is_chief` from ``TF_CONFIG`` alone, before a strategy exists (True without one):
    whether this process will write, and so lock, the run folder."""
    config = read_tf_config()
    if config is None:
        return True
    task = config.get("task", {})
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    has_chief = bool(config.get("cluster", {}).get("chief"))
    return task_type == "worker" and index == 0 and not has_chief


def check_replica_layout(batch_ids: int, images_per_id: int, num_replicas: int) -> None:
    """Refuse a batch whose per-replica slices would not hold whole identity blocks.

    Raises:
        ConfigError: ``batch_ids`` is not a multiple of ``num_replicas``.
    """
    if num_replicas < 1 or batch_ids % num_replicas:
        raise ConfigError(
            f"--batch-ids {batch_ids} is not a multiple of the {num_replicas} replicas; each replica "
            f"needs whole identity blocks of {images_per_id} images (e.g. --batch-ids "
            f"{max(num_replicas, batch_ids - batch_ids % num_replicas)})")


def describe(strategy) -> str:
    """One line naming the strategy and its replicas, for the start-up log."""
    kind = type(strategy).__name__
    if kind == "_DefaultDistributionStrategy":
        kind = "one device"
    return f"{kind}, {strategy.num_replicas_in_sync} replica(s) in sync"
