"""Finding the image files under a folder (a search gallery, an index source, calibration images).

Image files are named as the dataset readers count them (:func:`mpanet_tf.data.records.is_image_name`:
.jpg/.jpeg/.png/.bmp in any case, hidden files skipped).
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.data.records import IMAGE_SUFFIXES, is_image_name
from mpanet_tf.errors import DatasetError


def find_images(folder, what: str = "gallery") -> list[Path]:
    """Every image file under ``folder`` (recursive; .jpg/.jpeg/.png/.bmp in any case, hidden files
    skipped, as the dataset readers count them), sorted.

    Args:
        folder: the folder to search (``~`` expanded).
        what: the folder's role in the error message ("gallery", "calibration", "image").

    Raises:
        DatasetError: ``folder`` is not a folder or holds no image.
    """
    folder = Path(os.path.expanduser(os.fspath(folder)))
    if not folder.is_dir():
        raise DatasetError(f"{what} folder {folder} does not exist or is not a folder; pass a folder of images")
    images = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p.name))
    if not images:
        raise DatasetError(f"{what} folder {folder} holds no {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} "
                           "image (searched recursively)")
    return images
