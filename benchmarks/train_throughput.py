"""Images/s of MPANet's train step and of test-time embedding, float32 vs XLA vs mixed precision.

The full model (torchvision ResNet-50 with last stride 1, two MAMs, PAM, BN neck, 395-class heads,
every loss term, the coupled L2 term) at the SYSU input size 384x128, Adam as the trainer builds it.
A fixed synthetic batch (P identities x K=4 images, IR/VIS interleaved) is repeated, so the input
pipeline is out of the measurement (``benchmarks/pipeline_throughput.py`` times it). Each
configuration: one warm-up ``fit`` (tracing, XLA compilation), then ``--steps`` timed steps in a
second ``fit``. Inference: ``model.embed`` (``predict_on_batch``) on a batch of 32, after a warm-up.
"images/CPU-s" divides by the CPU time of this process (all its threads): on a shared machine it
shows what the code costs independently of the other processes; times the core count it bounds
the throughput on an idle machine.

    python benchmarks/train_throughput.py [--batches 8,16] [--modes fp32,jit,bf16] [--steps 5]

Defaults: batches 8,16 on CPU, 8..128 on a GPU; modes fp32, jit, bf16 (+ fp16 on a GPU: CPUs have no
fast float16 kernels). Results and the machine go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

NUM_CLASSES = 395
IMAGES_PER_ID = 4


def make_batch(batch_size, size, seed=0):
    """(images float32 [B,H,W,3] in 0..255, labels int32 [B], infrared bool [B]) in the sampler's layout."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (batch_size, *size, 3)).astype(np.float32)
    labels = np.repeat(np.arange(batch_size // IMAGES_PER_ID), IMAGES_PER_ID).astype(np.int32)
    infrared = (np.arange(batch_size) % 2 == 0)
    return images, labels, infrared


def build(config, mode):
    from mpanet_tf.model import build_model
    from mpanet_tf.training.setup import make_optimizer

    model = build_model(config, NUM_CLASSES)
    model.compile(optimizer=make_optimizer(config), jit_compile=(mode == "jit"))
    return model


def time_train(batch_size, size, mode, steps):
    """(images/s, images per CPU-second of this process, warm-up seconds) of the train step."""
    import keras
    import tensorflow as tf

    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.training.setup import precision_policy

    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    config.data.batch_ids, config.data.images_per_id = batch_size // IMAGES_PER_ID, IMAGES_PER_ID
    config.train.mixed_precision = {"bf16": "bf16", "fp16": "fp16"}.get(mode, "")
    keras.backend.clear_session()
    with precision_policy(config.train.mixed_precision):
        model = build(config, mode)
        data = tf.data.Dataset.from_tensors(make_batch(batch_size, size)).repeat()
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
        warmup = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return batch_size * steps / elapsed, batch_size * steps / cpu, warmup


def time_embed(batch_size, size, repeats, mode="fp32"):
    """(images/s, images per CPU-second) of ``model.embed`` under the ``mode`` policy."""
    import keras

    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.model import build_model
    from mpanet_tf.training.setup import precision_policy

    keras.backend.clear_session()
    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    with precision_policy({"bf16": "bf16", "fp16": "fp16"}.get(mode, "")):
        model = build_model(config, NUM_CLASSES)
    images = make_batch(batch_size, size)[0]
    model.embed(images)
    model.embed(images)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        model.embed(images)
    images_done = batch_size * repeats
    return images_done / (time.perf_counter() - start), images_done / (time.process_time() - cpu)


def machine() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = platform.processor() or platform.machine()
    return (f"{os.cpu_count()} CPU cores ({cpu}), "
            f"{len(gpus)} GPU(s) {[g.name for g in gpus]}, TensorFlow {tf.__version__}")


def main(argv=None):
    import tensorflow as tf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x128", help="input HxW (default 384x128, the SYSU size)")
    parser.add_argument("--batches", default=None, help="comma-separated batch sizes (multiples of 4)")
    parser.add_argument("--modes", default=None, help="comma-separated: fp32, jit, bf16, fp16")
    parser.add_argument("--mode-batch", type=int, default=16,
                        help="batch size for the jit/bf16/fp16 rows on CPU (default 16)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default 5)")
    parser.add_argument("--embed-batch", type=int, default=32, help="inference batch (default 32; 0 skips)")
    parser.add_argument("--embed-modes", default="fp32,bf16", help="precisions of the inference rows (default fp32,bf16)")
    parser.add_argument("--embed-repeats", type=int, default=5, help="timed inference batches (default 5)")
    args = parser.parse_args(argv)

    from mpanet_tf.config import parse_image_size

    size = parse_image_size(args.size)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    batches = [int(b) for b in (args.batches or ("8,16,32,64,128" if gpu else "8,16")).split(",")]
    modes = (args.modes or ("fp32,jit,bf16,fp16" if gpu else "fp32,jit,bf16")).split(",")
    print(f"machine: {machine()}", flush=True)
    print(f"train step, {size[0]}x{size[1]}, {NUM_CLASSES} classes, K={IMAGES_PER_ID}, {args.steps} timed steps",
          flush=True)
    rows = []
    for mode in modes:
        for batch in batches:
            if not gpu and mode != "fp32" and batch != args.mode_batch:
                continue
            try:
                rate, per_cpu, warmup = time_train(batch, size, mode, args.steps)
                rows.append((f"train {mode}", batch, f"{rate:.2f}", f"{per_cpu:.2f}", f"{warmup:.0f}"))
            except Exception as error:  # report and go on (e.g. out of memory at 128)
                rows.append((f"train {mode}", batch, f"failed: {type(error).__name__}", "-", "-"))
            print("  ".join(str(c) for c in rows[-1]), flush=True)
    for mode in (args.embed_modes.split(",") if args.embed_batch else []):
        rate, per_cpu = time_embed(args.embed_batch, size, args.embed_repeats, mode)
        rows.append((f"embed {mode}", args.embed_batch, f"{rate:.2f}", f"{per_cpu:.2f}", "-"))
        print("  ".join(str(c) for c in rows[-1]), flush=True)

    header = ("what", "batch", "images/s", "images/CPU-s", "warm-up s")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
