"""Images/s of MPANet test-time embedding: predict_on_batch vs a fixed-signature tf.function, with
and without BatchNorm folding (:mod:`mpanet_tf.inference`), float32 and bfloat16.

The full SYSU model (ResNet-50 last stride 1, two MAMs, PAM, BN neck) at 384x128 with random
weights and random, non-trivial BN statistics; one fixed batch of random images. Each variant:
2 warm-up calls, then ``--repeats`` timed calls; the best of ``--rounds`` rounds is reported, with
the CPU time of this process (all threads) for the same round ("images/CPU-s": fair on a shared
machine). Each variant also reports its embeddings' difference from the float32 unfolded model.

    python benchmarks/inference_speed.py [--batch 32] [--variants ...] [--inter-op N] [--intra-op N]

Results and the machine go to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

VARIANTS = ("predict", "function", "folded", "folded_bf16", "predict_bf16")


def randomize_batch_norms(model, seed=0):
    """Random gamma/beta/moving statistics in every BN of the backbone and the neck."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in [*model.backbone.layers, model.bn_neck]:
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            channels = weights[0].shape[0]
            new = [rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.2, channels),
                   rng.normal(0, 0.3, channels), rng.uniform(0.5, 2.0, channels)]
            layer.set_weights(new[-len(weights):] if len(weights) == 3 else new)


def make_embedder(model, variant):
    """variant -> embed(images) -> (N, D) numpy float32."""
    from mpanet_tf.inference import EmbeddingFunction, embedding_function, fold_batch_norms

    if variant == "predict":
        return lambda images: np.asarray(model.predict_on_batch(images), np.float32)
    if variant == "function":
        return embedding_function(model, folded=False)
    if variant == "folded":
        return embedding_function(model, folded=True)
    if variant == "folded_bf16":
        return EmbeddingFunction(fold_batch_norms(model, dtype="mixed_bfloat16"), model.image_size)
    if variant == "predict_bf16":
        from mpanet_tf.model import MPANet

        with _policy("mixed_bfloat16"):
            twin = MPANet.from_config(model.get_config())  # the same architecture, bfloat16 compute
        twin.set_weights(model.get_weights())
        return lambda images: np.asarray(twin.predict_on_batch(images), np.float32)
    raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")


class _policy:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        import keras

        self.previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.name)

    def __exit__(self, *exc):
        import keras

        keras.config.set_dtype_policy(self.previous)


def time_variant(embed, images, repeats, rounds):
    """(best images/s, images/CPU-s of that round)."""
    embed(images)
    embed(images)
    best = None
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeats):
            embed(images)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        row = (len(images) * repeats / wall, len(images) * repeats / cpu)
        if best is None or row[0] > best[0]:
            best = row
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="384x128", help="input HxW (default 384x128, the SYSU size)")
    parser.add_argument("--batch", type=int, default=32, help="images per call (default 32)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per variant, best kept (default 2)")
    parser.add_argument("--inter-op", type=int, default=0, help="inter-op threads (0: TensorFlow's default)")
    parser.add_argument("--intra-op", type=int, default=0, help="intra-op threads (0: TensorFlow's default)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    if args.intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)

    import keras

    from mpanet_tf.config import MPANetConfig, parse_image_size
    from mpanet_tf.model import build_model

    size = parse_image_size(args.size)
    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    keras.utils.set_random_seed(0)
    model = build_model(config, 395)
    randomize_batch_norms(model)
    images = np.random.default_rng(1).uniform(0, 255, (args.batch, *size, 3)).astype(np.float32)
    reference = None
    print(f"{size[0]}x{size[1]}, batch {args.batch}, inter-op {args.inter_op or 'default'}, "
          f"intra-op {args.intra_op or 'default'}, {os.cpu_count()} CPUs, TF {tf.__version__}", flush=True)
    print("variant  images/s  images/CPU-s  max|diff|/max|ref|  ||diff||/||ref||", flush=True)
    for variant in args.variants.split(","):
        embed = make_embedder(model, variant)
        out = np.asarray(embed(images), dtype=np.float64)
        if reference is None:
            reference = np.asarray(model(images, training=False), dtype=np.float64)
        diff = out - reference
        rate, per_cpu = time_variant(embed, images, args.repeats, args.rounds)
        print(f"{variant}  {rate:.2f}  {per_cpu:.2f}  {np.abs(diff).max() / np.abs(reference).max():.2e}  "
              f"{np.linalg.norm(diff) / np.linalg.norm(reference):.2e}", flush=True)


if __name__ == "__main__":
    main()
