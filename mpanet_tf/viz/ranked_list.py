"""The ranked-list picture: a query image followed by its top-k gallery matches.

::

    +-------+   +-------+-------+-------+
    | query |   |   1   |   2   |   3   |  ...
    |       |   | 0.412 | 0.587 | 0.601 |
    +-------+   +-------+-------+-------+

Each thumbnail is resized to ``thumb_size`` (H, W), ignoring the aspect ratio as the model does,
and captioned with its rank and distance. With ``matches`` (one bool per shown image) each frame
is green for a true match and red otherwise, as in re-ID papers' ranking figures. Pillow only.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.errors import ConfigError

MATCH_COLOUR = (40, 160, 40)
MISMATCH_COLOUR = (200, 40, 40)
PLAIN_COLOUR = (150, 150, 150)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pdf")


def _thumbnail(path, thumb_size):
    from PIL import Image

    height, width = thumb_size
    with Image.open(path) as image:
        return image.convert("RGB").resize((width, height), Image.BILINEAR)


def draw_ranked_list(query, ranked, distances, output, matches=None, thumb_size=(128, 64),
                     title: str | None = None) -> Path:
    """Draw ``query`` and the images ``ranked`` (best first) with their ``distances`` to ``output``.

    Args:
        query: path of the query image.
        ranked: paths of the gallery images to show, best first (the top-k).
        distances: one float per ranked image.
        output: picture file; the suffix picks the format (.png, .jpg, .bmp, .pdf).
        matches: optional bools, one per ranked image (True = same identity as the query).
        thumb_size: (height, width) of every thumbnail in pixels.
        title: optional line above the picture.

    Returns:
        the written path.

    Raises:
        ConfigError: an unsupported picture suffix or mismatched list lengths.
    """
    from PIL import Image, ImageDraw, ImageFont

    output = Path(output)
    if output.suffix.lower() not in PICTURE_SUFFIXES:
        raise ConfigError(f"cannot write a picture to {output}: use one of {', '.join(PICTURE_SUFFIXES)}")
    ranked, distances = list(ranked), [float(d) for d in distances]
    if len(ranked) != len(distances) or (matches is not None and len(matches) != len(ranked)):
        raise ConfigError(f"ranked list of {len(ranked)} images needs as many distances and matches, got "
                          f"{len(distances)} and {len(matches) if matches is not None else 'none'}")
    height, width = int(thumb_size[0]), int(thumb_size[1])
    font = ImageFont.load_default()
    pad, frame, caption = 6, 3, 16
    top = caption if title else 0
    cell_w, cell_h = width + 2 * frame + pad, height + 2 * frame + 2 * caption
    gap = 3 * pad  # extra space between the query and the ranked list
    canvas = Image.new("RGB", (pad + cell_w * (len(ranked) + 1) + gap, top + cell_h + pad), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 2), title, fill=TEXT_COLOUR, font=font)

    def put(index, path, colour, lines):
        left = pad + index * cell_w + (gap if index else 0)
        draw.rectangle([left, top, left + width + 2 * frame - 1, top + height + 2 * frame - 1], fill=colour)
        canvas.paste(_thumbnail(path, (height, width)), (left + frame, top + frame))
        for row, text in enumerate(lines):
            draw.text((left, top + height + 2 * frame + 2 + row * (caption - 4)), text, fill=TEXT_COLOUR,
                      font=font)

    put(0, query, PLAIN_COLOUR, ["query"])
    for rank, (path, distance) in enumerate(zip(ranked, distances), start=1):
        colour = PLAIN_COLOUR if matches is None else (MATCH_COLOUR if matches[rank - 1] else MISMATCH_COLOUR)
        put(rank, path, colour, [f"#{rank}", f"{distance:.3f}"])
    output.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(os.fspath(output))
    return output
