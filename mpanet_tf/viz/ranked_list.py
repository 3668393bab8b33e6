"""The ranked-list picture of ``mpanet-tf search --output``: a query followed by its top-k matches.

Drawn by the one ranked-list drawer of the project, :func:`mpanet_tf.viz.ranks.draw_ranks` (the
picture of ``mpanet-tf visualize ranks``), as a single row: the query in a blue frame, then each
match captioned with its rank and distance, framed green for a true match and red otherwise when
``matches`` is given, grey when unknown. Needs matplotlib (the ``viz`` extra). The picture is a
PNG; other suffixes (.jpg, .bmp, .pdf) are converted from it with Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mpanet_tf.data.records import ImageRecord
from mpanet_tf.errors import ConfigError
from mpanet_tf.viz.common import RIGHT_COLOUR, UNKNOWN_COLOUR, WRONG_COLOUR
from mpanet_tf.viz.ranks import draw_ranks, RankedRow


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


MATCH_COLOUR = _rgb(RIGHT_COLOUR)
MISMATCH_COLOUR = _rgb(WRONG_COLOUR)
PLAIN_COLOUR = _rgb(UNKNOWN_COLOUR)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pdf")


def _record(path):
    path = Path(path)
    return ImageRecord(path=os.fspath(path), relpath=path.name, person_id=-1, camera=-1, infrared=False)


def draw_ranked_list(query, ranked, distances, output, matches=None, thumb_size=(128, 64),
                     title: str | None = None) -> Path:
    """Draw ``query`` and the images ``ranked`` (best first) with their ``distances`` to ``output``.

    Args:
        query: path of the query image.
        ranked: paths of the gallery images to show, best first (the top-k).
        distances: one float per ranked image.
        output: picture file; the suffix picks the format (.png, .jpg, .bmp, .pdf).
        matches: optional bools, one per ranked image (True = same identity as the query).
        thumb_size: (height, width) at which the images are loaded; the cells are 96 px wide at
            this aspect ratio (:func:`mpanet_tf.viz.ranks.default_size`).
        title: optional line above the picture.

    Returns:
        the written path.

    Raises:
        ConfigError: an unsupported picture suffix or mismatched list lengths.
    """
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in PICTURE_SUFFIXES:
        raise ConfigError(f"cannot write a picture to {output}: use one of {', '.join(PICTURE_SUFFIXES)}")
    ranked, distances = list(ranked), [float(d) for d in distances]
    if len(ranked) != len(distances) or (matches is not None and len(matches) != len(ranked)):
        raise ConfigError(f"ranked list of {len(ranked)} images needs as many distances and matches, got "
                          f"{len(distances)} and {len(matches) if matches is not None else 'none'}")
    correct = [None] * len(ranked) if matches is None else [bool(m) for m in matches]
    row = RankedRow(_record(query), [_record(p) for p in ranked], np.asarray(distances, np.float64), correct)
    size = (int(thumb_size[0]), int(thumb_size[1]))
    if suffix == ".png":
        return draw_ranks([row], output, size, title=title or "")
    from PIL import Image

    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.{os.getpid()}.png")
    try:
        draw_ranks([row], temp, size, title=title or "")
        with Image.open(temp) as picture:
            picture.convert("RGB").save(output)
    finally:
        temp.unlink(missing_ok=True)
    return output
