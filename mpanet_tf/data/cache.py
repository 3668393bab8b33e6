"""An on-disk cache of decoded, resized training images: one ``images.npy`` + ``index.json``.

Decoding tens of thousands of JPEGs every epoch can starve an accelerator. ``mpanet-tf prepare``
(:func:`prepare_cache`) decodes every image once with the pipeline's own functions
(:func:`~mpanet_tf.data.images.decode_image_tensor`, :func:`~mpanet_tf.data.images.resize_image_tensor`),
rounds to uint8 and stores the rows in a ``.npy`` file that the training pipeline memory-maps
(:func:`open_cache`). The augmentations are applied afterwards, identically on both paths.

Rounding: the resize returns PIL's uint8 pixels (as the authors' pipeline), so the cached and the
decoded pipelines give identical pixels (tested).

Layout of ``cache_dir``::

    images.npy   uint8 (N, H, W, 3), row r = image of entry r
    index.json   {"version", "size": [H, W], "count", "entries": {relpath: [row, bytes, mtime_ns]},
                  "bad": [relpath, ...]}

The folder is written under a temporary name next to ``cache_dir`` and renamed into place, so a
crash never leaves a half-written cache behind (:func:`mpanet_tf.io.staging.staging_folder`; the
next ``prepare`` removes what a killed one left), and ``cache_dir`` is locked meanwhile, so two
``prepare`` runs never write one cache. Opening checks each source file's size and
modification time against the index and refuses a stale cache in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mpanet_tf.data.images import decode_error_reason, decode_image_tensor, resize_image_tensor
from mpanet_tf.data.records import file_name_bytes
from mpanet_tf.errors import BadImageError, DatasetError
from mpanet_tf.io import locks, staging

INDEX_VERSION = 1


class CacheError(DatasetError):
    """The image cache is missing, stale, of another size, or lacks a record."""


class ImageCache:
    """A read-only, memory-mapped image cache (see :func:`open_cache`).

    Attributes:
        directory: the cache folder.
        size: (H, W) of the stored images.
        images: np.memmap uint8 (N, H, W, 3).
        rows: dict relpath -> row.
    """

    def __init__(self, directory, size, images, rows):
        self.directory = Path(directory)
        self.size = tuple(size)
        self.images = images
        self.rows = rows

    def rows_for(self, records) -> np.ndarray:
        """int64 (len(records),): the cache row of every record; :class:`CacheError` if one is absent."""
        try:
            return np.array([self.rows[r.relpath] for r in records], np.int64)
        except KeyError as error:
            raise CacheError(
                f"image {error.args[0]} is not in the cache {self.directory}; rerun "
                "`mpanet-tf prepare` for this dataset or train without the cache") from None

    def read(self, row) -> np.ndarray:
        """uint8 (H, W, 3) of one row."""
        return np.asarray(self.images[int(row)])


def default_cache_dir(data_root, size) -> Path:
    """``<data-root>/.mpanet_cache/<H>x<W>``."""
    return Path(data_root) / ".mpanet_cache" / f"{size[0]}x{size[1]}"


def _stat(path):
    info = os.stat(path)
    return int(info.st_size), int(info.st_mtime_ns)


def _decode_dataset(paths, size):
    """tf.data of uint8 (H, W, 3) images, in the order of ``paths``, decoded in parallel."""
    import tensorflow as tf

    def load(path):
        image = resize_image_tensor(decode_image_tensor(tf.io.read_file(path)), size)
        return tf.cast(tf.round(image), tf.uint8)

    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(file_name_bytes(paths), tf.string))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(64)


def prepare_cache(records, size, cache_dir, progress=True, skip_bad_images=False) -> Path:
    """Decode and resize every record once and write the cache folder atomically.

    Args:
        records: ``ImageRecord``-like objects (``path``, ``relpath``); duplicates by relpath are
            stored once.
        size: (H, W) of the network input.
        cache_dir: the folder to create (replaced if it exists).
        progress: show a tqdm bar.
        skip_bad_images: record undecodable files under ``"bad"`` instead of raising.

    Returns:
        ``Path(cache_dir)``.

    Raises:
        BadImageError: an image cannot be read or decoded (unless ``skip_bad_images``).
    """
    import tensorflow as tf
    from tqdm import tqdm

    decode_errors = (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError)
    size = (int(size[0]), int(size[1]))
    unique = {}
    for record in records:
        unique.setdefault(record.relpath, record.path)
    relpaths = list(unique)
    paths = [unique[r] for r in relpaths]
    stats = []
    for path in paths:
        try:
            stats.append(_stat(path))
        except OSError as error:
            raise BadImageError(path, error.strerror or "cannot stat") from None

    cache_dir = Path(cache_dir)
    with locks.folder_lock(cache_dir, "image cache"), \
            staging.staging_folder(cache_dir) as temp:
        images = np.lib.format.open_memmap(temp / "images.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(paths), size[0], size[1], 3))
        good = np.ones(len(paths), bool)
        bar = tqdm(total=len(paths), desc=f"caching {size[0]}x{size[1]}", unit="img",
                   disable=not progress)
        start = 0
        while start < len(paths):
            position = start
            try:
                for image in _decode_dataset(paths[start:], size):
                    images[position] = image.numpy()
                    position += 1
                    bar.update(1)
                start = len(paths)
            except decode_errors as error:
                # Deterministic order: the failure belongs to element `position`.
                detail = decode_error_reason(error)
                if not skip_bad_images:
                    raise BadImageError(paths[position], detail) from None
                good[position] = False
                bar.update(1)
                start = position + 1
        bar.close()
        images.flush()
        del images
        # Rows of bad images stay in the file (zeros), so row i is always relpaths[i].
        index = {
            "version": INDEX_VERSION,
            "size": list(size),
            "count": len(paths),
            "entries": {rel: [i, *stats[i]] for i, rel in enumerate(relpaths) if good[i]},
            "bad": [rel for i, rel in enumerate(relpaths) if not good[i]],
        }
        (temp / "index.json").write_text(json.dumps(index), encoding="utf-8")
        staging.replace_folder(temp, cache_dir)
    return cache_dir


def open_cache(cache_dir, records=None, size=None, check_sources=True) -> ImageCache:
    """Open a cache written by :func:`prepare_cache`, refusing it when it does not fit.

    Args:
        cache_dir: the cache folder.
        records: the records that will be read; each must be in the cache and, with
            ``check_sources``, unchanged on disk (same byte size and mtime).
        size: expected (H, W); ``None`` skips the check.

    Raises:
        CacheError: missing or unreadable cache, another image size, a missing record or a
            changed source file.
    """
    cache_dir = Path(cache_dir)
    rerun = "rerun `mpanet-tf prepare` or train without the cache"
    try:
        index = json.loads((cache_dir / "index.json").read_text(encoding="utf-8"))
        images = np.load(cache_dir / "images.npy", mmap_mode="r")
    except FileNotFoundError:
        raise CacheError(f"no image cache in {cache_dir} (index.json/images.npy missing); {rerun}") from None
    except (OSError, ValueError) as error:
        raise CacheError(f"image cache {cache_dir} is unreadable ({error}); {rerun}") from None
    if index.get("version") != INDEX_VERSION or images.ndim != 4 or images.shape[0] != index.get("count"):
        raise CacheError(f"image cache {cache_dir} is from another version or damaged; {rerun}")
    stored = tuple(index["size"])
    if size is not None and stored != tuple(int(s) for s in size):
        raise CacheError(
            f"image cache {cache_dir} holds {stored[0]}x{stored[1]} images, the model needs "
            f"{size[0]}x{size[1]}; {rerun} with --image-size {size[0]}x{size[1]}")
    entries = index["entries"]
    if records is not None:
        for record in records:
            entry = entries.get(record.relpath)
            if entry is None:
                why = "could not be decoded" if record.relpath in index.get("bad", ()) else "is not cached"
                raise CacheError(f"image {record.relpath} {why} in {cache_dir}; {rerun}")
            if check_sources:
                try:
                    current = _stat(record.path)
                except OSError:
                    raise CacheError(f"cached image source {record.path} is missing; {rerun}") from None
                if list(current) != entry[1:]:
                    raise CacheError(
                        f"image cache {cache_dir} is stale: {record.path} changed since it was "
                        f"written; {rerun}")
    rows = {rel: int(entry[0]) for rel, entry in entries.items()}
    return ImageCache(cache_dir, stored, images, rows)
