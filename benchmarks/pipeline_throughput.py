"""Images/s of the training input pipeline alone (no model): decode path vs on-disk cache path.

Writes synthetic JPEGs (default 2,000 of 288x144, 100 identities x 10 IR + 10 VIS) to a temporary
folder, builds the sampler and ``build_train_dataset`` at 384x128 with the full augmentation
(SYSU batch layout 16 x 8), and times whole epochs after one warm-up batch.

Three image loaders, each timed in a fresh process, one after the other, A B C A B C
(``--rounds``), never two at once:

- ``pil-exact``: the project's loader (:mod:`mpanet_tf.data.images` + :mod:`mpanet_tf.data.resample`,
  PIL's pixels bit for bit, in-graph);
- ``legacy``: the loader before issue 13 (TensorFlow's fast-IDCT ``decode_image`` and antialiased
  ``tf.image.resize``, rounded; not PIL's pixels), kept here only as a baseline;
- ``pil-numpy-function``: PIL itself called through ``tf.numpy_function`` (the alternative to the
  in-graph resize for training; the SavedModel cannot use it).

Each run reports images/s and images per CPU-second of its own process (all threads: the figure
that load from other processes moves least). ``prepare_cache`` (decode + resize + write) and the
cache read path are timed once per loader / once.

    python benchmarks/pipeline_throughput.py [--images 2000] [--size 384x128] [--epochs 2] [--rounds 2]

Results go to benchmarks/RESULTS.md with the machine named (printed first and last).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def write_jpegs(root: Path, images: int, shape=(288, 144)):
    """Person-like smooth JPEGs (blocky colour regions + noise), about the size of SYSU's files."""
    from mpanet_tf.data.records import ImageRecord

    rng = np.random.default_rng(0)
    per_id = 20
    records = []
    for index in range(images):
        label, number = divmod(index, per_id)
        infrared = number % 2 == 1
        coarse = rng.integers(0, 256, (12, 6, 3), dtype=np.uint8)
        if infrared:
            coarse[..., 1] = coarse[..., 2] = coarse[..., 0]
        pixels = np.asarray(Image.fromarray(coarse).resize(shape[::-1], Image.BILINEAR), np.int16)
        pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
        relpath = f"cam{3 if infrared else 1}/{label:04d}/{number:04d}.jpg"
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        records.append(ImageRecord(str(path), relpath, label + 1, 3 if infrared else 1, infrared, label))
    return records


def time_epochs(build, epochs):
    """(images, wall seconds, CPU seconds of this process) over ``epochs`` full epochs, excluding
    the first batch of each (warm-up)."""
    total_images, total_seconds, total_cpu = 0, 0.0, 0.0
    for epoch in range(epochs):
        iterator = iter(build(epoch))
        next(iterator)
        start, cpu = time.perf_counter(), time.process_time()
        for images, _, _ in iterator:
            total_images += int(images.shape[0])
        total_seconds += time.perf_counter() - start
        total_cpu += time.process_time() - cpu
    return total_images, total_seconds, total_cpu


def legacy_decode(data):
    """Baseline only: the decoder before issue 13 (TensorFlow's default fast integer IDCT)."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def legacy_resize(image, size):
    """Baseline only: the resize before issue 13 (antialiased ``tf.image.resize``, rounded)."""
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear", antialias=True)
    return tf.round(tf.clip_by_value(resized, 0.0, 255.0))


def pil_file_loader(size):
    """PIL through ``tf.numpy_function``: decode, convert("RGB"), bilinear resize."""
    import tensorflow as tf

    def read(path):
        with Image.open(path.decode()) as image:
            return np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR))

    def load(path):
        image = tf.numpy_function(read, [path], tf.uint8, stateful=False)
        image.set_shape([size[0], size[1], 3])
        return tf.cast(image, tf.float32)

    return load


@contextlib.contextmanager
def loader(name):
    """Swap the pipeline's and the cache's image functions for the named variant (each module
    imported them by name, so each module's names are swapped)."""
    from mpanet_tf.data import cache, images, pipeline

    modules = (images, pipeline, cache)
    saved = [(module.decode_image_tensor, module.resize_image_tensor) for module in modules]
    saved_loader = pipeline._file_loader
    if name == "legacy":
        for module in modules:
            module.decode_image_tensor, module.resize_image_tensor = legacy_decode, legacy_resize
    elif name == "pil-numpy-function":
        pipeline._file_loader = pil_file_loader
    try:
        yield
    finally:
        for module, (decode, resize) in zip(modules, saved):
            module.decode_image_tensor, module.resize_image_tensor = decode, resize
        pipeline._file_loader = saved_loader


LOADERS = ("pil-exact", "legacy", "pil-numpy-function")


def setup(size_text):
    from mpanet_tf.config import MPANetConfig, parse_image_size

    size = parse_image_size(size_text)
    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    return size, config


def worker(args):
    """One loader in this (fresh) process; prints one JSON line of rows [name, images, wall, cpu]."""
    from mpanet_tf.data.cache import open_cache, prepare_cache
    from mpanet_tf.data.pipeline import build_train_dataset
    from mpanet_tf.data.records import ImageRecord
    from mpanet_tf.data.sampler import IdentityPairSampler

    size, config = setup(args.size)
    root = Path(args.data)
    records = [ImageRecord(*fields) for fields in json.loads((root / "records.json").read_text())]
    sampler = IdentityPairSampler.from_records(records, config.data.batch_ids, config.data.images_per_id)
    rows = []
    with loader(args.worker):
        images, seconds, cpu = time_epochs(lambda e: build_train_dataset(records, sampler, e, config), args.epochs)
        rows.append((f"decode (JPEG), {args.worker}", images, seconds, cpu))
        if args.cache_rows and args.worker != "pil-numpy-function":
            with tempfile.TemporaryDirectory(prefix="mpanet_cache_") as folder:
                start, cpu = time.perf_counter(), time.process_time()
                prepare_cache(records, size, Path(folder) / "cache", progress=False)
                rows.append((f"prepare_cache (decode+resize+write, one-off), {args.worker}", len(records),
                             time.perf_counter() - start, time.process_time() - cpu))
                if args.worker == "pil-exact":
                    cache = open_cache(Path(folder) / "cache", records, size)
                    images, seconds, cpu = time_epochs(
                        lambda e: build_train_dataset(records, sampler, e, config, cache=cache), args.epochs)
                    rows.append(("cache (memmap uint8 rows; same for every loader)", images, seconds, cpu))
    print(json.dumps(rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic JPEGs to write")
    parser.add_argument("--size", default="384x128", help="network input HxW")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run")
    parser.add_argument("--rounds", type=int, default=2, help="A B C rounds, each loader in a fresh process")
    parser.add_argument("--loaders", default=",".join(LOADERS), help=f"comma-separated subset of {LOADERS}")
    parser.add_argument("--worker", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--cache-rows", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from machine import alternate, describe

    import tensorflow as tf

    size, config = setup(args.size)
    print(describe(), flush=True)
    with tempfile.TemporaryDirectory(prefix="mpanet_bench_") as folder:
        root = Path(folder)
        records = write_jpegs(root, args.images)
        (root / "records.json").write_text(json.dumps([dataclasses.astuple(r) for r in records]))
        mean_kb = np.mean([os.path.getsize(r.path) for r in records]) / 1024
        loaders = args.loaders.split(",")
        common = [sys.executable, __file__, "--data", folder, "--size", args.size, "--epochs", str(args.epochs)]
        runs = alternate({name: [*common, "--worker", name] for name in loaders}, args.rounds,
                         report=lambda line: print(line, flush=True))
        extra = alternate({name: [*common, "--worker", name, "--cache-rows"] for name in loaders
                           if name != "pil-numpy-function"}, 1, report=lambda line: print(line, flush=True))

    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, {args.images} JPEGs of 288x144 "
          f"(mean {mean_kb:.1f} KB) -> {size[0]}x{size[1]}, batch "
          f"{config.data.batch_ids}x{config.data.images_per_id}, full augmentation; "
          f"{args.rounds} rounds, each loader in a fresh process")
    print("| path | images timed | seconds | images/s | images/CPU-s |\n|---|---|---|---|---|")
    totals = {}
    for name in loaders:
        images = sum(rows[0][1] for rows in runs[name])
        seconds = sum(rows[0][2] for rows in runs[name])
        cpu = sum(rows[0][3] for rows in runs[name])
        totals[name] = (images / seconds, images / cpu)
        print(f"| decode (JPEG), {name}, {args.rounds} runs | {images} | {seconds:.2f} | {images / seconds:.0f} "
              f"| {images / cpu:.0f} |")
    for rows in extra.values():
        for name, images, seconds, cpu in rows[0][1:]:
            print(f"| {name} | {images} | {seconds:.2f} | {images / seconds:.0f} | {images / cpu:.0f} |")
    if "pil-exact" in totals and "legacy" in totals:
        wall = totals["legacy"][0] / totals["pil-exact"][0]
        cpu = totals["legacy"][1] / totals["pil-exact"][1]
        print(f"legacy / pil-exact decode path: {wall:.2f}x images/s, {cpu:.2f}x images/CPU-s")
    print(describe())


if __name__ == "__main__":
    sys.exit(main())
