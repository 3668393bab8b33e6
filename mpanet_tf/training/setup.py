"""Start-up of a training run: output folder, resuming, data, precision policy, optimizer, run.json.

Everything here runs before the trainer writes anything to the run folder, so a start-up failure
(a missing dataset, unavailable weights, a bad option) leaves it untouched.

- A new run refuses a non-empty ``--output`` unless ``--force`` (which deletes what an earlier run
  wrote there) or ``--resume`` (which continues the run in it).
- ``--resume`` trains with the run's own ``config.json``. Options that only steer the run
  (:data:`RESUMABLE_FIELDS`: more epochs, another evaluation or checkpoint cadence, another
  strategy, a moved dataset or cache) may differ; anything else that differs is refused, since
  the result would be neither run.
- The optimizer is PyTorch's Adam (betas 0.9/0.999, eps 1e-8) *without* Keras' decoupled
  ``weight_decay``: ``MPANet.train_step`` adds the coupled L2 term (wd/2)·Σ‖w‖² over the trainable
  weights to the loss, whose gradient is PyTorch's wd·w (design.md §3.1, §8.9, decision 4).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from mpanet_tf import __version__, run_folder
from mpanet_tf.config import MPANetConfig
from mpanet_tf.data.bad_images import find_bad_images
from mpanet_tf.data.cache import open_cache
from mpanet_tf.data.registry import DatasetSpec, get_dataset
from mpanet_tf.data.sampler import IdentityPairSampler
from mpanet_tf.errors import ConfigError
from mpanet_tf.io import locks
from mpanet_tf.model import build_model
from mpanet_tf.training.keras_workarounds import prepare_for_fit
from mpanet_tf.training.strategy import check_replica_layout, describe

#: (section, field) pairs that may change when a run is resumed.
RESUMABLE_FIELDS = frozenset({
    ("train", "epochs"), ("train", "eval_every"), ("train", "save_every_steps"), ("train", "strategy"),
    ("train", "jit"), ("train", "sync_bn_neck"), ("data", "data_root"), ("data", "cache"),
    ("data", "skip_bad_images"),
})

#: What a run writes into its folder; ``--force`` deletes exactly these.
RUN_ENTRIES = (run_folder.CONFIG_FILE, run_folder.RUN_FILE, run_folder.FINAL_MODEL, run_folder.CHECKPOINT_DIR,
               run_folder.HISTORY_FILE, run_folder.TENSORBOARD_DIR)

POLICIES = {"": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def is_empty_folder(path: Path) -> bool:
    """Absent, or a folder holding nothing but the lock file (:data:`locks.LOCK_FILE`)."""
    return not path.exists() or (path.is_dir() and not any(p.name != locks.LOCK_FILE for p in path.iterdir()))


def check_output(output: Path, *, resume: bool, force: bool) -> MPANetConfig | None:
    """Validate ``--output`` for a new or resumed run; returns the saved config when resuming.

    Raises:
        ConfigError: ``output`` is a file; not empty without ``--resume``/``--force``; both flags.
    """
    if resume and force:
        raise ConfigError("--resume and --force exclude each other: --resume continues the run in "
                          f"{output}, --force deletes it")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; pass a folder")
    if resume:
        return MPANetConfig.from_json_file(output / run_folder.CONFIG_FILE) if run_folder.is_run_folder(output) else None
    if not is_empty_folder(output) and not force:
        raise ConfigError(f"--output {output} is not empty; pass --resume to continue the run in it, --force to "
                          "overwrite it, or choose another folder")
    if force and not is_empty_folder(output):
        foreign = sorted(p.name for p in output.iterdir() if not is_run_entry(p.name))
        if foreign:
            shown = ", ".join(repr(name) for name in foreign[:3]) + (f" and {len(foreign) - 3} more"
                                                                    if len(foreign) > 3 else "")
            raise ConfigError(f"--force refuses to clear {output}: it holds {shown}, not written by a run "
                              "(--force deletes only a run's own files); move them or choose another --output")
    return None


#: Hidden temporaries a run leaves beside its entries when killed mid-write (:mod:`mpanet_tf.io.atomic`):
#: ``.tmp-<pid>-<random>-<entry>``, and the older ``.<entry>.<random>.tmp`` / ``.tmp-<pid>-<entry>``.
_ENTRY_NAMES = "|".join(re.escape(name) for name in RUN_ENTRIES)
_RUN_TEMPORARY = re.compile(rf"\.tmp-\d+-(?:[0-9a-f]+-)?(?:{_ENTRY_NAMES})|\.(?:{_ENTRY_NAMES})\.[^/]*\.tmp")


def is_run_entry(name: str) -> bool:
    """True for what a run writes at the top of its folder (:data:`RUN_ENTRIES`, their temporaries,
    the lock): the only names ``--force`` deletes. Anything else (``.git/``, ``.env``, notes) is the
    user's, and ``--force`` refuses to run beside it (:func:`check_output`)."""
    return name in RUN_ENTRIES or name == locks.LOCK_FILE or bool(_RUN_TEMPORARY.fullmatch(name))


def clear_run_folder(output: Path) -> None:
    """Delete the entries an earlier run wrote in ``output`` (``--force``): :func:`is_run_entry`
    names only, never the lock."""
    if not output.is_dir():
        return
    for entry in output.iterdir():
        if is_run_entry(entry.name) and entry.name != locks.LOCK_FILE:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def merge_resume_config(saved: MPANetConfig, requested: MPANetConfig) -> MPANetConfig:
    """The config a resumed run trains with: ``saved`` with the resumable fields of ``requested``.

    Raises:
        ConfigError: a field outside :data:`RESUMABLE_FIELDS` differs (names the first one).
    """
    old, new = saved.to_dict(), requested.to_dict()
    for section, values in new.items():
        for name, value in values.items():
            if old[section][name] != value:
                if (section, name) not in RESUMABLE_FIELDS:
                    raise ConfigError(
                        f"cannot resume with {section}.{name} = {value!r}: the run was trained with "
                        f"{old[section][name]!r}; drop the option or train into a new --output")
                old[section][name] = value
    return MPANetConfig.from_dict(old)


@contextlib.contextmanager
def precision_policy(mixed_precision: str):
    """Set Keras' global dtype policy for ``--mixed-precision`` ('' | 'bf16' | 'fp16') while
    building and training (it must be set before the model is built), restoring it afterwards."""
    if mixed_precision not in POLICIES:
        raise ConfigError(f"--mixed-precision must be bf16 or fp16, got {mixed_precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[mixed_precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_optimizer(config: MPANetConfig):
    """PyTorch-equivalent Adam with the run's base learning rate; no Keras ``weight_decay``."""
    return keras.optimizers.Adam(learning_rate=float(config.train.lr), beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def dataset_spec(config: MPANetConfig, spec: DatasetSpec | None = None) -> DatasetSpec:
    """The spec of ``config.data.dataset``: ``spec`` when given (the CLI's, resolved once), else
    looked up.

    Raises:
        ConfigError: ``spec`` is another dataset than the config's.
    """
    if spec is None:
        return get_dataset(config.data.dataset)
    if spec.name != config.data.dataset:
        raise ConfigError(f"the run's config trains on {config.data.dataset}, not {spec.name}; "
                          f"pass --dataset {config.data.dataset} or train into a new --output")
    return spec


@dataclass
class TrainingData:
    """The data of a run: the dataset's reader (its test split is evaluated), the training records
    (bad images left out with ``skip_bad_images``), the identity/pair sampler, the image cache (or
    None) and the dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`."""

    dataset: object
    records: list
    sampler: object
    cache: object = None
    spec: DatasetSpec | None = None

    @property
    def num_classes(self) -> int:
        return len(self.dataset.train_ids)


def load_training_data(config: MPANetConfig, spec: DatasetSpec, num_replicas: int, log) -> TrainingData:
    """The :class:`TrainingData` of a run, before anything is written.

    The sampler knows the replica count (whole identity blocks per replica); with
    ``skip_bad_images`` every image is decoded once and the undecodable ones are left out.

    Raises:
        DatasetError, ConfigError, CacheError: the dataset, the batch layout or the cache.
    """
    data = config.data
    check_replica_layout(data.batch_ids, data.images_per_id, num_replicas)
    dataset = spec.load(data.data_root or ".", trial=data.trial)
    records = dataset.train_records()
    if data.skip_bad_images:
        bad = set(find_bad_images(records, progress=False))
        if bad:
            log(f"skipping {len(bad)} undecodable training images (first: {sorted(bad)[0]})")
            records = [r for r in records if r.path not in bad]
    sampler = IdentityPairSampler.from_records(records, data.batch_ids, data.images_per_id, seed=config.train.seed,
                                               num_replicas=num_replicas)
    cache = None
    if data.cache:
        cache = open_cache(data.cache, records, (config.model.image_height, config.model.image_width))
    return TrainingData(dataset, records, sampler, cache, spec)


def build_training_model(config: MPANetConfig, num_classes: int, strategy):
    """MPANet compiled with :func:`make_optimizer`, model and optimizer built inside
    ``strategy.scope()`` (the dtype policy must already be set), ready for ``fit`` under
    ``strategy`` (:func:`~mpanet_tf.training.keras_workarounds.prepare_for_fit`)."""
    with strategy.scope():
        model = build_model(config, num_classes)
        model.compile(optimizer=make_optimizer(config), jit_compile=bool(config.train.jit))
        model.optimizer.build(model.trainable_variables)
    prepare_for_fit(model, strategy)
    return model


def run_meta(config, data: TrainingData, init, strategy, status) -> dict:
    """The ``run.json`` of a run (facts: dataset, classes, backbone init and its SHA-256, status)."""
    has_splits = bool(data.spec.splits)
    return {"status": status, "dataset": data.spec.name, "data_root": str(getattr(data.dataset, "root", "")),
            "trial": config.data.trial if has_splits else None,
            "num_classes": data.num_classes, "backbone_init": init, "strategy": describe(strategy),
            "replicas": int(strategy.num_replicas_in_sync),
            "iterations_per_epoch_ir_only_estimate": int(data.sampler.estimated_iterations_ir_only),
            "versions": {"mpanet_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
