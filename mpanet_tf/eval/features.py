"""Feature sets: extraction through the one image-loading path, and the ``.npz`` feature file.

The test feature is the BN-neck output (design.md §1.5), extracted once per model and reused by every
trial and setting. A :class:`FeatureSet` holds the query and the gallery side:

- SYSU-MM01: query = every infrared test image (cams 3, 6); gallery = the *whole visible gallery
  pool* of the test ids (cams 1, 2, 4, 5). The protocols pick each trial's gallery from the pool
  by path (:mod:`mpanet_tf.eval.sysu_protocol`).
- RegDB: query = thermal test images (cam 3), gallery = visible test images (cam 2); the V->I
  direction swaps them (:mod:`mpanet_tf.eval.regdb_protocol`).

The ``.npz`` file holds the eight required fields of :class:`FeatureSet` (paths relative to the
dataset root, '/'-separated; ids and cameras as integers) and, when known, the two optional
modality fields :data:`MODALITY_KEYS` (needed by the manifest protocol, whose cameras may film in
both modalities; files without them still load).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass, fields

import numpy as np

from mpanet_tf.data.bad_images import image_error
from mpanet_tf.data.images import decode_image_tensor, image_file_problem, resize_image_tensor
from mpanet_tf.data.records import file_name_bytes
from mpanet_tf.errors import BadImageError, DatasetError
from mpanet_tf.io.atomic import atomic_open

FEATURE_KEYS = ("query_features", "query_ids", "query_cams", "query_paths",
                "gallery_features", "gallery_ids", "gallery_cams", "gallery_paths")
#: Optional per-image modality flags (True = infrared), saved and loaded when present.
MODALITY_KEYS = ("query_infrared", "gallery_infrared")


@dataclass
class FeatureSet:
    """Query and gallery embeddings with their identities, cameras and relative paths.

    Attributes:
        query_features: (Q, D) float32.
        query_ids, query_cams: (Q,) int64.
        query_paths: (Q,) str, relative to the dataset root, '/'-separated.
        gallery_features: (G, D) float32.
        gallery_ids, gallery_cams: (G,) int64.
        gallery_paths: (G,) str.
        query_infrared, gallery_infrared: optional (Q,) / (G,) bool, True for infrared images;
            None when unknown (files saved before these fields existed).
    """

    query_features: np.ndarray
    query_ids: np.ndarray
    query_cams: np.ndarray
    query_paths: np.ndarray
    gallery_features: np.ndarray
    gallery_ids: np.ndarray
    gallery_cams: np.ndarray
    gallery_paths: np.ndarray
    query_infrared: np.ndarray | None = None
    gallery_infrared: np.ndarray | None = None

    def __post_init__(self):
        for side in ("query", "gallery"):
            setattr(self, f"{side}_features", np.asarray(getattr(self, f"{side}_features"), dtype=np.float32))
            setattr(self, f"{side}_ids", np.asarray(getattr(self, f"{side}_ids"), dtype=np.int64).reshape(-1))
            setattr(self, f"{side}_cams", np.asarray(getattr(self, f"{side}_cams"), dtype=np.int64).reshape(-1))
            paths = [str(p).replace("\\", "/") for p in np.asarray(getattr(self, f"{side}_paths")).reshape(-1)]
            setattr(self, f"{side}_paths", np.array(paths, dtype=str))
            if getattr(self, f"{side}_infrared") is not None:
                setattr(self, f"{side}_infrared", np.asarray(getattr(self, f"{side}_infrared"), dtype=bool).reshape(-1))

    def problem(self) -> str | None:
        """None when the shapes agree, else a short description of the first mismatch."""
        dims = []
        for side in ("query", "gallery"):
            features = getattr(self, f"{side}_features")
            if features.ndim != 2:
                return f"{side}_features must be 2-D (N, D), got shape {features.shape}"
            for key in ("ids", "cams", "paths", "infrared"):
                values = getattr(self, f"{side}_{key}")
                if values is not None and len(values) != len(features):
                    return f"{side}_{key} has {len(values)} entries but {side}_features has {len(features)} rows"
            dims.append(features.shape[1])
        if dims[0] != dims[1]:
            return f"query features are {dims[0]}-d but gallery features are {dims[1]}-d"
        return None

    def swapped(self) -> "FeatureSet":
        """The same features with query and gallery exchanged (RegDB V->I)."""
        return FeatureSet(self.gallery_features, self.gallery_ids, self.gallery_cams, self.gallery_paths,
                          self.query_features, self.query_ids, self.query_cams, self.query_paths,
                          self.gallery_infrared, self.query_infrared)


def feature_set_from_records(query_records, query_features, gallery_records, gallery_features) -> FeatureSet:
    """A :class:`FeatureSet` from :class:`~mpanet_tf.data.records.ImageRecord` lists and their rows."""
    return FeatureSet(
        query_features=query_features,
        query_ids=[r.person_id for r in query_records],
        query_cams=[r.camera for r in query_records],
        query_paths=[r.relpath for r in query_records],
        gallery_features=gallery_features,
        gallery_ids=[r.person_id for r in gallery_records],
        gallery_cams=[r.camera for r in gallery_records],
        gallery_paths=[r.relpath for r in gallery_records],
        query_infrared=[r.infrared for r in query_records],
        gallery_infrared=[r.infrared for r in gallery_records],
    )


def save_features(path, features: FeatureSet) -> None:
    """Write ``features`` to ``path`` (``.npz`` with :data:`FEATURE_KEYS` and the known :data:`MODALITY_KEYS`)."""
    problem = features.problem()
    if problem:
        raise ValueError(f"refusing to save an inconsistent feature set: {problem}")
    # Written atomically: a failure never leaves half a file at ``path``; an open handle keeps
    # numpy from appending ".npz".
    with atomic_open(os.path.abspath(path), "wb") as handle:
        np.savez(handle, **{f.name: getattr(features, f.name) for f in fields(FeatureSet)
                            if getattr(features, f.name) is not None})


#: Compression ratio above which a member of a feature file is treated as a zip bomb (float
#: features barely compress; np.savez stores them uncompressed).
_MAX_COMPRESSION_RATIO = 200


def _read_member(archive: zipfile.ZipFile, key: str, path: str, fix: str) -> np.ndarray:
    """The ``key.npy`` member of a feature file, read only after its declared shape was checked
    against the member's size (a few hundred bytes must not make us allocate gigabytes)."""
    name = f"{key}.npy"
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise DatasetError(f"feature file {path} lacks {key} (no {name} member); {fix}") from None
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_COMPRESSION_RATIO * max(
            info.compress_size, 1) + (1 << 20):
        raise DatasetError(f"feature file {path}: member {name} declares {info.file_size} bytes from "
                           f"{info.compress_size} compressed bytes; {fix}")
    with archive.open(info) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        header = stream.tell() if stream.seekable() else None
    if dtype.hasobject:
        raise DatasetError(f"feature file {path}: member {name} holds Python objects; {fix}")
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    payload = info.file_size - (header if header is not None else 0)
    if declared > payload:
        raise DatasetError(f"feature file {path}: member {name} declares shape {tuple(shape)} "
                           f"({declared} bytes) but holds {payload} bytes; {fix}")
    with archive.open(info) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _check_values(features: "FeatureSet", path: str, fix: str) -> None:
    """Features must be at least 1-d, finite, and no row all zeros (it has no direction to rank by)."""
    for side in ("query", "gallery"):
        values = getattr(features, f"{side}_features")
        if values.shape[1] == 0:
            raise DatasetError(f"feature file {path}: {side}_features has zero-width rows (shape {values.shape}); {fix}")
        zero = ~np.any(values, axis=1)
        if zero.any():
            raise DatasetError(f"feature file {path}: {side}_features has {int(zero.sum())} all-zero rows (first row "
                               f"{int(np.argmax(zero))}), which cannot be ranked; {fix}")
        if values.size and not np.all(np.isfinite(values)):
            rows = np.unique(np.nonzero(~np.isfinite(values))[0])
            raise DatasetError(f"feature file {path}: {side}_features has NaN or infinite values in "
                               f"{len(rows)} rows (first row {int(rows[0])}); {fix}")


def load_features(path) -> FeatureSet:
    """Read a feature file written by :func:`save_features`.

    The file is read member by member: each of :data:`FEATURE_KEYS` must be a ``.npy`` member whose
    declared shape fits the bytes it holds (other members are never read); features must be finite
    numbers, ids and cameras integers, paths text.

    Raises:
        DatasetError: the file is missing, not an ``.npz``, lacks a key, holds non-finite features,
            non-integer ids or cameras, or has inconsistent lengths (one line naming the file).
    """
    path = os.fspath(path)
    fix = "re-create it with `mpanet-tf eval ... --save-features FILE`"
    if not os.path.isfile(path):
        raise DatasetError(f"feature file {path} does not exist; {fix}")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {key: _read_member(archive, key, path, fix) for key in FEATURE_KEYS}
            names = set(archive.namelist())
            arrays.update({key: _read_member(archive, key, path, fix) for key in MODALITY_KEYS
                           if f"{key}.npy" in names})
    except DatasetError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
        raise DatasetError(f"feature file {path} is not a readable .npz ({type(error).__name__}); {fix}") from None
    for key in FEATURE_KEYS:
        kind = arrays[key].dtype.kind
        expected = {"features": "fiu", "ids": "iu", "cams": "iu", "paths": "US"}[key.split("_", 1)[1]]
        if kind not in expected:
            what = {"features": "numbers", "ids": "integers", "cams": "integers", "paths": "text"}[key.split("_", 1)[1]]
            raise DatasetError(f"feature file {path}: {key} must hold {what}, got dtype {arrays[key].dtype}; {fix}")
    for key in MODALITY_KEYS:
        if key in arrays and arrays[key].dtype.kind != "b":
            raise DatasetError(f"feature file {path}: {key} must hold true/false values, got dtype "
                               f"{arrays[key].dtype}; {fix}")
    features = FeatureSet(**arrays)
    problem = features.problem()
    if problem:
        raise DatasetError(f"feature file {path} is inconsistent: {problem}; {fix}")
    _check_values(features, path, fix)
    return features


def _paths_of(records) -> list[str]:
    return [r.path if hasattr(r, "path") else os.fspath(r) for r in records]


def _image_dataset(paths, image_size, batch_size: int, wants_bytes: bool):
    """tf.data: (index, path) -> (index, image or bytes, shape), bad files dropped, batched."""
    import tensorflow as tf

    if not wants_bytes and image_size is None:
        raise ValueError("extract_features needs image_size (H, W) for an embedder that takes images")
    size = tuple(int(s) for s in image_size) if image_size is not None else None

    def load(index, path):
        data = tf.io.read_file(path)
        image = decode_image_tensor(data)  # fails (and the element is dropped) on a bad file
        if wants_bytes:
            return index, data, tf.shape(image)
        return index, resize_image_tensor(image, size), tf.shape(image)

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64),
                                                  tf.constant(file_name_bytes(paths), tf.string)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.ignore_errors().batch(batch_size).prefetch(2)


def _bad_image(path: str) -> BadImageError:
    """The error for a file the pipeline dropped, with the decoder's reason when it has one."""
    return image_error(path) or BadImageError(path, "failed in the input pipeline")


def extract_features(embed_fn, records, image_size, batch_size: int = 64, progress: bool = True,
                     skip_bad_images: bool = False):
    """Embed every image of ``records`` (ImageRecord or paths), in order.

    Images go through the one loading path (:mod:`mpanet_tf.data.images`: decode to 3 channels,
    bilinear resize to ``image_size`` = (h, w), float32 in [0, 255]) in a parallel tf.data
    pipeline. ``embed_fn(batch (N, h, w, 3) float32) -> (N, D)``; an ``embed_fn`` whose attribute
    ``wants_bytes`` is True (a SavedModel's ``serve_encoded``) receives the file bytes (N,) instead
    (every file is still decoded once in the pipeline, so bad images are caught the same way) and
    ``image_size`` may be None.

    Returns:
        (N, D) float32 array; with ``skip_bad_images`` a tuple (array of the decodable images' rows,
        list of skipped indices into ``records``).

    Raises:
        BadImageError: a file is missing or undecodable (unless ``skip_bad_images``).
    """
    from tqdm.auto import tqdm

    paths = _paths_of(records)
    wants_bytes = bool(getattr(embed_fn, "wants_bytes", False))
    chunks, skipped = [], []
    expected = 0

    def handle_missing(indices):
        for index in indices:
            if not skip_bad_images:
                raise _bad_image(paths[index])
            skipped.append(int(index))

    with tqdm(total=len(paths), desc="features", unit="img", disable=not progress, leave=False) as bar:
        if paths:
            # A device, pipe or oversized file is never read: it enters the pipeline as "" (dropped
            # as missing) and is then named by _bad_image with its reason.
            readable = ["" if image_file_problem(p) else p for p in paths]
            for indices, batch, _ in _image_dataset(readable, image_size, batch_size, wants_bytes):
                indices = indices.numpy()
                present = set(indices.tolist())
                handle_missing([i for i in range(expected, int(indices[-1])) if i not in present])
                embedded = np.asarray(embed_fn(batch.numpy() if wants_bytes else batch), dtype=np.float32)
                if embedded.shape[0] != len(indices):
                    raise ValueError(f"embed_fn returned {embedded.shape[0]} rows for a batch of {len(indices)}")
                chunks.append(embedded.reshape(len(indices), -1))
                bar.update(int(indices[-1]) + 1 - expected)
                expected = int(indices[-1]) + 1
        handle_missing(range(expected, len(paths)))
        bar.update(len(paths) - expected)
    features = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    return (features, skipped) if skip_bad_images else features


def extract_feature_set(embed_fn, query_records, gallery_records, image_size, batch_size: int = 64,
                        progress: bool = True, skip_bad_images: bool = False, log=None) -> FeatureSet:
    """Embed query and gallery records into a :class:`FeatureSet` (skipped images are left out).

    With ``skip_bad_images`` each side that lost images is reported in one line, "skipped N
    undecodable query images (first: PATH)", through ``log(str)`` (default: a warning).
    """
    sides = []
    for side, records in (("query", query_records), ("gallery", gallery_records)):
        result = extract_features(embed_fn, records, image_size, batch_size, progress, skip_bad_images)
        if skip_bad_images:
            features, skipped = result
            dropped = set(skipped)
            if dropped:
                first = _paths_of([records[min(dropped)]])[0]
                (log or warnings.warn)(f"skipped {len(dropped)} undecodable {side} images (first: {first})")
            records = [r for i, r in enumerate(records) if i not in dropped]
        else:
            features = result
        sides.append((records, features))
    (query, query_features), (gallery, gallery_features) = sides
    return feature_set_from_records(query, query_features, gallery, gallery_features)
