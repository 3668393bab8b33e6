"""Images/s of the training input pipeline alone (no model): decode path vs on-disk cache path.

Writes synthetic JPEGs (default 2,000 of 288x144, 100 identities x 10 IR + 10 VIS) to a temporary
folder, builds the sampler and ``build_train_dataset`` at 384x128 with the full augmentation
(SYSU batch layout 16 x 8), and times whole epochs after one warm-up batch. Prints a table.

Three image loaders are timed back to back in one run (so machine load affects them alike):

- ``pil-exact``: the project's loader (:mod:`mpanet_tf.data.images`, PIL's pixels bit for bit,
  in-graph);
- ``legacy``: the loader before issue 13 (TensorFlow's fast-IDCT ``decode_image`` and antialiased
  ``tf.image.resize``, rounded), kept here only as a baseline;
- ``pil-numpy-function``: PIL itself called through ``tf.numpy_function`` (the alternative to the
  in-graph resize for training; the SavedModel cannot use it).

    python benchmarks/pipeline_throughput.py [--images 2000] [--size 384x128] [--epochs 2]

Results go to benchmarks/RESULTS.md with the machine named (``nproc``, ``lscpu``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
    """(images, seconds) over ``epochs`` full epochs, excluding the first batch of each (warm-up)."""
    total_images, total_seconds = 0, 0.0
    for epoch in range(epochs):
        iterator = iter(build(epoch))
        next(iterator)
        start = time.perf_counter()
        for images, _, _ in iterator:
            total_images += int(images.shape[0])
        total_seconds += time.perf_counter() - start
    return total_images, total_seconds


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
    """Swap the pipeline's and the cache's image functions for the named variant."""
    from mpanet_tf.data import images, pipeline

    saved = (images.decode_image_tensor, images.resize_image_tensor, pipeline.decode_image_tensor,
             pipeline.resize_image_tensor, pipeline._file_loader)
    if name == "legacy":
        images.decode_image_tensor = pipeline.decode_image_tensor = legacy_decode
        images.resize_image_tensor = pipeline.resize_image_tensor = legacy_resize
    elif name == "pil-numpy-function":
        pipeline._file_loader = pil_file_loader
    try:
        yield
    finally:
        (images.decode_image_tensor, images.resize_image_tensor, pipeline.decode_image_tensor,
         pipeline.resize_image_tensor, pipeline._file_loader) = saved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="synthetic JPEGs to write")
    parser.add_argument("--size", default="384x128", help="network input HxW")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per path")
    args = parser.parse_args()

    import tensorflow as tf

    from mpanet_tf.config import MPANetConfig, parse_image_size
    from mpanet_tf.data.cache import open_cache, prepare_cache
    from mpanet_tf.data.pipeline import build_train_dataset
    from mpanet_tf.data.sampler import IdentityPairSampler

    size = parse_image_size(args.size)
    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = size
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpanet_bench_") as folder:
        root = Path(folder)
        records = write_jpegs(root / "data", args.images)
        mean_kb = np.mean([os.path.getsize(r.path) for r in records]) / 1024
        sampler = IdentityPairSampler.from_records(records, config.data.batch_ids, config.data.images_per_id)

        for variant in ("pil-exact", "legacy", "pil-numpy-function"):
            with loader(variant):
                images, seconds = time_epochs(
                    lambda e: build_train_dataset(records, sampler, e, config), args.epochs)
                rows.append((f"decode (JPEG), {variant}", images, seconds))
                if variant == "pil-numpy-function":
                    continue
                start = time.perf_counter()
                prepare_cache(records, size, root / f"cache-{variant}", progress=False)
                rows.append((f"prepare_cache (decode+resize+write, one-off), {variant}", args.images,
                             time.perf_counter() - start))
        cache = open_cache(root / "cache-pil-exact", records, size)
        images, seconds = time_epochs(
            lambda e: build_train_dataset(records, sampler, e, config, cache=cache), args.epochs)
        rows.append(("cache (memmap uint8 rows; same for every loader)", images, seconds))

    print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, {args.images} JPEGs of 288x144 "
          f"(mean {mean_kb:.1f} KB) -> {size[0]}x{size[1]}, batch "
          f"{config.data.batch_ids}x{config.data.images_per_id}, full augmentation")
    print(f"| path | images timed | seconds | images/s |\n|---|---|---|---|")
    for name, images, seconds in rows:
        print(f"| {name} | {images} | {seconds:.2f} | {images / seconds:.0f} |")


if __name__ == "__main__":
    main()
