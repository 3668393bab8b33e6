"""Helper processes of the training tests: ``python -m tests.training.workers MODE ...``.

Each mode runs in a fresh process because it needs a TensorFlow that is not initialised yet (two
logical CPU devices, a multi-worker cluster) or because the test kills it.

- ``mirrored DATA_ROOT RUN_DIR OUT_JSON``: 2 steps under MirroredStrategy over two logical CPUs,
  then the same 2 steps on one device by hand (per-replica halves, gradients averaged); writes
  the comparison to OUT_JSON.
- ``multi-worker DATA_ROOT RUN_DIR OUT_NPZ``: one worker of a MultiWorkerMirroredStrategy cluster
  (``TF_CONFIG`` set by the test); 2 steps; writes the trainable weights to OUT_NPZ.
- ``cli HOOK_JSON ARGS...``: ``mpanet-tf train ARGS`` with a test hook: ``{"signal": "SIGINT",
  "at_step": n}`` sends the signal to itself during the n-th step of this process; ``{"kill_during_save": n}``
  truncates the temporary weights file of step n's checkpoint and SIGKILLs itself before the
  rename, as a crash in the middle of the write would.
"""

from __future__ import annotations

import json
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from tests.training.support import IMAGE_SIZE  # noqa: E402


def tiny_config(data_root, **train):
    """SYSU preset shrunk for CPU tests: 64x32 images, P=2 x K=4, random init, no evaluation."""
    from mpanet_tf.config import MPANetConfig

    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = IMAGE_SIZE
    config.model.backbone_weights = "none"
    config.data.data_root = str(data_root)
    config.data.batch_ids, config.data.images_per_id = 2, 4
    config.train.epochs, config.train.steps_per_epoch = 1, 2
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def _split_cpu(count: int) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def mirrored(data_root, run_dir, out_json):
    _split_cpu(2)
    import keras
    import numpy as np
    import tensorflow as tf

    from mpanet_tf.data.pipeline import build_train_dataset
    from mpanet_tf.data.sampler import IdentityPairSampler
    from mpanet_tf.data.sysu import SYSUDataset
    from mpanet_tf.model import build_model
    from mpanet_tf.training import setup, train

    class Capture(keras.callbacks.Callback):
        """Initial weights, the optimizer state after step 1 and the running mean loss per step."""

        def on_train_begin(self, logs=None):
            self.initial = [v.numpy() for v in self.model.weights]
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))
            if len(self.losses) == 1:
                self.moments = [v.numpy() for v in self.model.optimizer.variables]

    config = tiny_config(data_root, strategy="mirrored")
    capture = Capture()
    result = train(config, run_dir, final_eval=False, callbacks=[capture], verbose=0, log=lambda m: None)
    model = result.model
    strategy = model.distribute_strategy

    def copies_identical(variable):
        local = strategy.experimental_local_results(variable.value)
        return len(local) == 2 and all(np.array_equal(local[0].numpy(), c.numpy()) for c in local)

    # The reference: one device, each replica's half of the global batch through the model in
    # training mode (Keras 3 BN uses per-replica batch statistics), gradients averaged.
    records = SYSUDataset(data_root).train_records()
    sampler = IdentityPairSampler.from_records(records, 2, 4, seed=config.train.seed, num_replicas=2)
    batches = list(build_train_dataset(records, sampler, 0, config).take(2))
    reference = build_model(config, len(SYSUDataset(data_root).train_ids))
    reference.compile(optimizer=setup.make_optimizer(config))
    reference.optimizer.build(reference.trainable_variables)
    for variable, value in zip(reference.weights, capture.initial):
        variable.assign(value)
    # Control: the full-batch gradient (BN statistics over all 8 images) at the same weights.
    images, labels, infrared = batches[0]
    with tf.GradientTape() as tape:
        terms = reference.loss_terms(images, labels, infrared, training=True)
        objective = terms["total"] + reference.l2_penalty()
    full_batch = np.concatenate([g.numpy().ravel() for g in tape.gradient(objective, reference.trainable_variables)])
    losses = []
    for step, (images, labels, infrared) in enumerate(batches):
        gradients, total = None, 0.0
        for half in (slice(0, 4), slice(4, 8)):
            with tf.GradientTape() as tape:
                terms = reference.loss_terms(images[half], labels[half], infrared[half], training=True)
                objective = (terms["total"] + reference.l2_penalty()) / 2
            grads = tape.gradient(objective, reference.trainable_variables)
            gradients = grads if gradients is None else [a + b for a, b in zip(gradients, grads)]
            total += float(terms["total"]) / 2
        losses.append(total)
        reference.update_mean_classifiers()
        reference.optimizer.apply(gradients, reference.trainable_variables)
        if step == 0:
            reference_moments = [v.numpy() for v in reference.optimizer.variables]

    def flat(arrays, paths, key):
        return np.concatenate([a.ravel() for a, p in zip(arrays, paths) if key in p])

    paths = [v.path for v in model.optimizer.variables]
    ref_paths = [v.path for v in reference.optimizer.variables]
    moment_rel = {}
    for key in ("momentum", "velocity"):
        got, want = flat(capture.moments, paths, key), flat(reference_moments, ref_paths, key)
        moment_rel[key] = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    step1 = flat(capture.moments, paths, "momentum") / 0.1
    full_batch_rel = float(np.linalg.norm(step1 - full_batch) / np.linalg.norm(full_batch))
    run_losses = [capture.losses[0], 2 * capture.losses[1] - capture.losses[0]]
    heads = {name: float(np.abs(getattr(model, name).numpy() - getattr(reference, name).numpy()).max())
             for name in ("visible_classifier_mean", "infrared_classifier_mean")}
    report = {
        "replicas": int(strategy.num_replicas_in_sync),
        "strategy": type(strategy).__name__,
        "moment_rel": moment_rel,
        "full_batch_moment_rel": full_batch_rel,
        "run_losses": run_losses,
        "reference_losses": losses,
        "mean_heads_max_abs": heads,
        "mean_head_copies_identical": all(copies_identical(getattr(model, n)) for n in heads),
        "trainable_copies_identical": all(copies_identical(v) for v in model.trainable_variables),
        "max_weight_diff": float(max(np.abs(a.numpy() - b.numpy()).max()
                                     for a, b in zip(model.trainable_variables, reference.trainable_variables))),
        "lr": config.train.lr,
    }
    with open(out_json, "w", encoding="utf-8") as handle:
        json.dump(report, handle)


def multi_worker(data_root, run_dir, out_npz):
    import numpy as np

    from mpanet_tf.training import train

    config = tiny_config(data_root, strategy="multi-worker")
    result = train(config, run_dir, final_eval=False, verbose=0, log=lambda m: None)
    model = result.model
    np.savez(out_npz, replicas=model.distribute_strategy.num_replicas_in_sync,
             global_step=result.global_step,
             **{f"w{i:04d}": v.numpy() for i, v in enumerate(model.trainable_variables)},
             visible_mean=model.visible_classifier_mean.numpy())


def cli(hook_json, *args):
    import keras

    from mpanet_tf.cli.main import main
    from mpanet_tf.io import atomic
    from mpanet_tf.training import trainer

    hook = json.loads(hook_json)
    if "signal" in hook:
        class SendSignal(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.steps = 0

            def on_train_batch_begin(self, batch, logs=None):
                self.steps += 1
                if self.steps == hook["at_step"]:   # arrives while step `at_step` runs
                    os.kill(os.getpid(), getattr(signal, hook["signal"]))

        original = trainer.train

        def train_with_hook(*a, **k):
            k["callbacks"] = [SendSignal()]
            return original(*a, **k)

        trainer.train = train_with_hook
    if "kill_during_save" in hook:
        original_fsync = atomic.fsync_file

        def crash(path):
            if f"ckpt-{hook['kill_during_save']:09d}" in str(path):
                size = os.path.getsize(path)
                with open(path, "r+b") as handle:
                    handle.truncate(size // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            return original_fsync(path)

        atomic.fsync_file = crash
    return main(list(args))


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "mirrored":
        mirrored(*rest)
    elif mode == "multi-worker":
        multi_worker(*rest)
    elif mode == "cli":
        sys.exit(cli(*rest))
    else:
        sys.exit(f"unknown mode {mode}")
