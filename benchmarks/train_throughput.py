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
    python benchmarks/train_throughput.py --compare-torch [--torch-python /tmp/torchvenv/bin/python]

Defaults: batches 8,16 on CPU; on a GPU batches 64,128 and modes fp32, bf16, fp16 each with and
without XLA (``bf16+jit``; ``jit`` alone is float32 + XLA), plus the model-FLOP utilisation
(TensorFlow's FLOP count of the forward pass x 3, over the GPU's dense peak: TF32 for float32,
tensor-core bf16/fp16 otherwise; ``--peak-tflops`` for unlisted GPUs) and the projected time of
the authors' 140-epoch SYSU schedule (140 x ~165 batches of 128 images) at the measured rate.
CPUs have no fast float16 kernels, so fp16 is a GPU row. ``--compare-torch`` runs only the float32
train step against the authors' PyTorch step, each side alone in fresh processes, A B A B (see
``benchmarks/compare_torch.py``; ``--steps`` defaults to 8 there).
Results and the machine go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import mpanet_tf  # noqa: E402,F401  (before TensorFlow: sets its oneDNN default)

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
    model.compile(optimizer=make_optimizer(config), jit_compile=mode.endswith("jit"))
    return model


def precision_of(mode):
    """'' (float32) | 'bf16' | 'fp16' of a mode such as ``fp32``, ``jit``, ``bf16``, ``fp16+jit``."""
    return {"bf16": "bf16", "fp16": "fp16"}.get(mode.split("+")[0], "")


def training_config(batch_size, size, mode):
    from mpanet_tf.config import MPANetConfig

    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    config.data.batch_ids, config.data.images_per_id = batch_size // IMAGES_PER_ID, IMAGES_PER_ID
    config.train.mixed_precision = precision_of(mode)
    return config


def build_for_training(batch_size, size, mode):
    """The compiled SYSU model for ``mode`` (fp32 | jit | bf16 | fp16). Call it, and train, under
    ``mode_policy(mode)``."""
    return build(training_config(batch_size, size, mode), mode)


def mode_policy(mode):
    """The Keras dtype-policy context of ``mode`` (bf16/fp16: mixed precision; else float32)."""
    from mpanet_tf.training.setup import precision_policy

    return precision_policy(precision_of(mode))


def time_train(batch_size, size, mode, steps):
    """(images/s, images per CPU-second of this process, warm-up seconds) of the train step."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    with mode_policy(mode):
        model = build_for_training(batch_size, size, mode)
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


#: Dense tensor-core peaks (TFLOP/s) for model-FLOP utilisation: (bf16/fp16, TF32 = TensorFlow's
#: default for float32 matmuls and convolutions on Ampere and later). Others: --peak-tflops.
GPU_PEAK_TFLOPS = {"H200": (989.0, 494.5), "H100": (989.0, 494.5), "A100": (312.0, 156.0), "L4": (121.0, 60.0)}
#: The authors' SYSU schedule: 140 epochs of ~150-180 batches of 128 (design.md §3.6); 165 taken.
SYSU_IMAGES_140_EPOCHS = 140 * 165 * 128


def forward_flops_per_image(size):
    """Float operations (2 per multiply-add) of one image's forward pass, TensorFlow's own count."""
    import keras
    import tensorflow as tf

    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.model import build_model

    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    model = build_model(config, NUM_CLASSES)
    spec = tf.TensorSpec([1, *size, 3], tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    del model
    keras.backend.clear_session()
    return flops


def gpu_peak(mode, override):
    """Peak TFLOP/s of the first GPU for ``mode`` (None when unknown)."""
    import tensorflow as tf

    if override:
        return override
    name = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get("device_name", "")
    for key, (half, tf32) in GPU_PEAK_TFLOPS.items():
        if key in name:
            return half if precision_of(mode) else tf32
    return None


def machine() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    cpu = platform.processor() or platform.machine()
    from tensorflow.python.util import _pywrap_util_port

    return (f"{os.cpu_count()} CPU cores ({cpu}), "
            f"{len(gpus)} GPU(s) {[g.name for g in gpus]}, TensorFlow {tf.__version__}, "
            f"oneDNN {'on' if _pywrap_util_port.IsMklEnabled() else 'off'}")


def main(argv=None):
    import sys

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
    parser.add_argument("--compare-torch", action="store_true",
                        help="only the float32 train step against the authors' PyTorch step (torch_mpanet.py), "
                             "each side alone in fresh processes, A B A B, and their ratio")
    parser.add_argument("--torch-python", default="/tmp/torchvenv/bin/python",
                        help="python of a venv with torch for --compare-torch (default /tmp/torchvenv/bin/python)")
    parser.add_argument("--rounds", type=int, default=2, help="--compare-torch: A B rounds (default 2)")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="GPU peak TFLOP/s for the utilisation column (default: known GPUs only)")
    args = parser.parse_args(argv)

    from mpanet_tf.config import parse_image_size

    size = parse_image_size(args.size)
    if args.compare_torch:
        from compare_torch import compare

        if not os.path.exists(args.torch_python):
            sys.exit(f"--torch-python {args.torch_python} does not exist; create it with: python3 -m venv "
                     "/tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0+cpu numpy")
        compare(args.torch_python, int((args.batches or "16").split(",")[0]), size,
                steps=args.steps if args.steps != 5 else 8, rounds=args.rounds)
        return
    gpu = bool(tf.config.list_physical_devices("GPU"))
    batches = [int(b) for b in (args.batches or ("64,128" if gpu else "8,16")).split(",")]
    modes = (args.modes or ("fp32,fp32+jit,bf16,bf16+jit,fp16,fp16+jit" if gpu else "fp32,jit,bf16")).split(",")
    train_flops = 3 * forward_flops_per_image(size) if gpu else 0  # backward ~ 2x forward
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
                peak = gpu_peak(mode, args.peak_tflops) if gpu else None
                mfu = f"{100 * rate * train_flops / (peak * 1e12):.1f} %" if peak else "-"
                sysu_h = f"{SYSU_IMAGES_140_EPOCHS / rate / 3600:.1f}"
                rows.append((f"train {mode}", batch, f"{rate:.2f}", f"{per_cpu:.2f}", f"{warmup:.0f}", mfu, sysu_h))
            except Exception as error:  # report and go on (e.g. out of memory at 128)
                rows.append((f"train {mode}", batch, f"failed: {type(error).__name__}", "-", "-", "-", "-"))
            print("  ".join(str(c) for c in rows[-1]), flush=True)
    for mode in (args.embed_modes.split(",") if args.embed_batch else []):
        rate, per_cpu = time_embed(args.embed_batch, size, args.embed_repeats, mode)
        rows.append((f"embed {mode}", args.embed_batch, f"{rate:.2f}", f"{per_cpu:.2f}", "-", "-", "-"))
        print("  ".join(str(c) for c in rows[-1]), flush=True)

    if train_flops:
        print(f"model FLOPs: {train_flops / 3e9:.1f} GFLOP forward, ~{train_flops / 1e9:.0f} GFLOP per trained image")
    header = ("what", "batch", "images/s", "images/CPU-s", "warm-up s", "model-FLOP util.", "SYSU 140 ep. h")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print()
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
