"""Finding undecodable images: the one check behind ``--skip-bad-images``, ``dataset-info --verify``
and every error that names a broken file.

An image is bad when its file cannot be read or does not decode (missing, truncated, not an image):
exactly the files that stop the tf.data pipelines. tf.data cannot catch a decode error per element
and its message does not name the file, so:

- :func:`find_bad_images` decodes every distinct file once in a parallel tf.data pipeline and lists
  the bad ones (``train --skip-bad-images``);
- :func:`image_error` gives the reason for one file (its OS error, or
  :data:`~mpanet_tf.data.images.UNDECODABLE`) through the one loading path,
  :func:`mpanet_tf.data.images.load_image`;
- :func:`bad_image_errors` is both: every bad file with its reason (``dataset-info --verify``);
- :func:`locate_bad_image` finds the file behind a pipeline's decode error, checking the failing
  batch's images first.

TensorFlow is imported when a function is first used, not by this module.
"""

from __future__ import annotations

import os

import numpy as np

from mpanet_tf.data.images import decode_image_tensor, load_image
from mpanet_tf.data.records import file_name_bytes
from mpanet_tf.errors import BadImageError


def _path(record) -> str:
    return record.path if hasattr(record, "path") else os.fspath(record)


def image_error(path) -> BadImageError | None:
    """The :class:`BadImageError` of ``path`` (naming the file and why), or None if it decodes."""
    try:
        load_image(path, (8, 8))
    except BadImageError as error:
        return error
    return None


def find_bad_images(records, progress: bool = True, desc: str = "checking images") -> list[str]:
    """Sorted paths of the records (or paths) whose file cannot be read or decoded; each distinct
    file is decoded once, in parallel. ``progress`` shows a tqdm bar (``desc``) on stderr."""
    import tensorflow as tf
    from tqdm import tqdm

    paths = sorted({_path(r) for r in records})
    if not paths:
        return []

    def probe(index, path):
        image = decode_image_tensor(tf.io.read_file(path))
        return index, tf.shape(image)[0]

    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), tf.constant(file_name_bytes(paths), tf.string)))
    dataset = dataset.map(probe, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    ok = np.zeros(len(paths), bool)
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for index, _ in dataset:
            ok[int(index)] = True
            bar.update(1)
    return [p for p, good in zip(paths, ok) if not good]


def bad_image_errors(records, progress: bool = True, desc: str = "checking images") -> list[BadImageError]:
    """One :class:`BadImageError` per bad file of ``records``, in path order."""
    errors = []
    for path in find_bad_images(records, progress=progress, desc=desc):
        errors.append(image_error(path) or BadImageError(path, "failed in the input pipeline"))
    return errors


def locate_bad_image(records, candidates=None, progress: bool = False) -> BadImageError | None:
    """The :class:`BadImageError` of the first undecodable record, or None if all decode.

    Args:
        records: the records of the dataset.
        candidates: record indices to check first (e.g. the failing batch); then all records.
    """
    if candidates is not None:
        for index in dict.fromkeys(int(i) for i in np.asarray(candidates).reshape(-1)):
            error = image_error(_path(records[index]))
            if error is not None:
                return error
    errors = bad_image_errors(records, progress=progress)
    return errors[0] if errors else None


def verify_images(records, progress: bool = True) -> list[str]:
    """Decode every record's image; return one line per file that fails (``dataset-info --verify``).

    ``progress`` shows a tqdm bar on stderr.
    """
    return [str(error) for error in bad_image_errors(records, progress=progress, desc="verifying images")]
