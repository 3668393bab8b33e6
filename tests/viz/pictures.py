"""Helpers of the visualisation tests: read a written PNG back."""

from __future__ import annotations

import numpy as np
from PIL import Image


def png_size(path):
    """(width, height) of a PNG file, checking it is one."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        return image.size


def png_pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
