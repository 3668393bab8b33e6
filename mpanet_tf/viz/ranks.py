"""Ranked lists: for a few queries, the query and its top-k gallery images, right ones in green.

Where the queries and the gallery come from (the rankings follow the evaluators, they are not
re-implemented here; each dataset's protocol gives them,
:meth:`~mpanet_tf.eval.protocol.EvalProtocol.ranked_list_sources`):

- SYSU-MM01 (design.md §5.1): queries are infrared test images; the gallery is the first trial of the
  official single-shot gallery (``rand_perm_cam.mat``, :func:`~mpanet_tf.eval.sysu_protocol.sysu_trial_galleries`)
  when the file exists, else the whole visible gallery pool of the mode. Features are
  L2-normalised, the distance is squared Euclidean, and the same-location rule drops cam-2 images
  from the lists of cam-3 queries (:func:`~mpanet_tf.eval.metrics.same_location_junk`).
- RegDB (design.md §5.3): thermal test queries against the visible test gallery (``i2v``) or the
  reverse (``v2i``), plain squared Euclidean on the raw features, no camera rule.
- Folders: every image under the query folder against every image under the gallery folder,
  L2-normalised features. Identity and camera are read from the path when it follows the datasets'
  layouts (``.../cam3/0012/x.jpg``, ``.../Thermal/12/x.bmp``, or any ``<id>/`` parent folder),
  else they are unknown and the borders grey.

Drawing (:func:`draw_ranks`): one row per query; the query in the first column with a blue
border, then the top-k gallery images with a green border when the identity is right, red when
wrong, grey when unknown. Each image is captioned with its identity, camera and modality.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mpanet_tf.data.image_files import find_images
from mpanet_tf.data.records import ImageRecord, make_record
from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.features import extract_features
from mpanet_tf.eval.metrics import l2_normalize, no_junk, pairwise_squared_distance
from mpanet_tf.viz.common import (
    QUERY_COLOUR, RIGHT_COLOUR, UNKNOWN_COLOUR, WRONG_COLOUR, check_output, check_size, display_image,
    image_caption, new_figure, open_embedding, save_png,
)

_CELL_WIDTH = 96
_CAPTION = 30
_HEADER = 28
_QUERY_GAP = 16
#: Width of the coloured frame around every image, in pixels.
BORDER = 4


@dataclass
class RankedRow:
    """One query and its ranked gallery images.

    Attributes:
        query: the query record.
        gallery: the top-k gallery records, best first.
        distances: (k,) their distances to the query.
        correct: per gallery image True/False for right/wrong identity, None when an identity is unknown.
    """

    query: ImageRecord
    gallery: list
    distances: np.ndarray
    correct: list


def rank_queries(query_features, gallery_features, query_records, gallery_records, top_k: int,
                 normalize: bool, junk=None) -> list[RankedRow]:
    """Rank the gallery for every query and keep the top ``top_k`` (stable ascending distance).

    Args:
        query_features: (Q, D); gallery_features: (G, D).
        query_records, gallery_records: the Q and G records (ids and cameras).
        normalize: L2-normalise the features first (SYSU and folders) or not (RegDB).
        junk: a junk rule of :mod:`mpanet_tf.eval.metrics` (True = drop from the list); None keeps all.
    """
    prepare = l2_normalize if normalize else (lambda x: np.asarray(x, dtype=np.float32))
    distance = pairwise_squared_distance(prepare(query_features), prepare(gallery_features))
    query_cams = np.array([r.camera for r in query_records], dtype=np.int64)
    gallery_cams = np.array([r.camera for r in gallery_records], dtype=np.int64)
    dropped = (junk or no_junk)(query_cams, gallery_cams)
    rows = []
    for q, query in enumerate(query_records):
        order = [g for g in np.argsort(distance[q], kind="stable") if not dropped[q, g]][:top_k]
        gallery = [gallery_records[g] for g in order]
        correct = [None if query.person_id < 0 or item.person_id < 0 else item.person_id == query.person_id
                   for item in gallery]
        rows.append(RankedRow(query, gallery, distance[q, order].astype(np.float64), correct))
    return rows


def pick_queries(count: int, num_queries: int, seed: int | None = None) -> np.ndarray:
    """Indices of ``count`` queries out of ``num_queries``: evenly spaced, or random with ``seed``."""
    count = min(int(count), int(num_queries))
    if seed is None:
        return np.unique(np.linspace(0, num_queries - 1, count).round().astype(np.int64))
    return np.sort(np.random.default_rng(seed).choice(num_queries, size=count, replace=False))


# ------------------------------------------------------------------ sources
_CAMERA_FOLDER = re.compile(r"^cam(\d+)$", re.IGNORECASE)
_MODALITY_FOLDERS = {"visible": 2, "thermal": 3}


def folder_record(root: Path, path: Path) -> ImageRecord:
    """A record for an image of a folder, identity and camera read from its path when possible.

    ``<id>`` = the parent folder's name when it is a decimal number; camera = ``cam<c>`` grandparent
    (SYSU layout) or 2 / 3 for a ``Visible`` / ``Thermal`` grandparent (RegDB layout); -1 otherwise.
    """
    relpath = path.relative_to(root).as_posix()
    parts = relpath.split("/")
    pid = int(parts[-2]) if len(parts) >= 2 and parts[-2].isascii() and parts[-2].isdigit() else -1
    camera = -1
    if len(parts) >= 3:
        match = _CAMERA_FOLDER.match(parts[-3])
        camera = int(match.group(1)) if match else _MODALITY_FOLDERS.get(parts[-3].lower(), -1)
    return make_record(root, relpath, pid, camera)


def folder_records(folder, what: str) -> list[ImageRecord]:
    """Every image under ``folder`` (recursive, sorted by path) as records; DatasetError when none."""
    root = Path(os.path.expanduser(os.fspath(folder))).absolute()
    return [folder_record(root, p) for p in find_images(root, what)]


# ------------------------------------------------------------------ drawing
def default_size(rows: int, top_k: int, image_size) -> tuple[int, int]:
    """(width, height) in pixels: cells 96 px wide at the image's aspect (capped at 2.5:1) plus captions."""
    image_h = int(round(_CELL_WIDTH * min(image_size[0] / image_size[1], 2.5)))
    return _CELL_WIDTH * (top_k + 1) + _QUERY_GAP + 8, _HEADER + rows * (image_h + _CAPTION) + 4


def grid_layout(rows: int, columns: int, width: int, height: int) -> list[list[tuple[int, int, int, int]]]:
    """Pixel frames (left, top, right, bottom; right and bottom exclusive) of every cell, ``[row][column]``.

    Column 0 is the query. The picture has a header band, then ``rows`` equal bands, each a frame
    above a caption; column 0 is followed by a gap. The coloured border is the outer
    ``BORDER`` pixels of the frame, the image fills the rest.
    """
    cell_w = (width - _QUERY_GAP - 8) / columns
    band = (height - _HEADER - 4) / rows
    boxes = []
    for r in range(rows):
        top = _HEADER + r * band
        line = []
        for c in range(columns):
            left = 4 + c * cell_w + (_QUERY_GAP if c > 0 else 0)
            line.append((int(round(left + 3)), int(round(top + 2)),
                         int(round(left + cell_w - 3)), int(round(top + band - _CAPTION))))
        boxes.append(line)
    return boxes


def _paste(canvas: np.ndarray, box, pixels: np.ndarray, colour: str) -> None:
    """Fill ``box`` of ``canvas`` with ``colour`` and the image, resized, inside a BORDER-pixel frame."""
    from PIL import Image

    left, top, right, bottom = box
    canvas[top:bottom, left:right] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    inner_w, inner_h = right - left - 2 * BORDER, bottom - top - 2 * BORDER
    if inner_w > 0 and inner_h > 0:
        resized = Image.fromarray(pixels).resize((inner_w, inner_h), Image.BILINEAR)
        canvas[top + BORDER:bottom - BORDER, left + BORDER:right - BORDER] = np.asarray(resized)


def draw_ranks(rows: list[RankedRow], output, image_size, width: int | None = None, height: int | None = None,
               title: str = "") -> Path:
    """Write the ranked-list picture of ``rows`` (module docstring) to ``output`` (PNG).

    The images and frames are composed into one pixel array shown 1:1 on the figure (one axes, so
    drawing stays fast for long lists); matplotlib adds the captions and the title.

    Args:
        rows: from :func:`rank_queries` (rows may hold fewer images than the longest).
        output: ``.png`` path.
        image_size: (h, w) at which the images are loaded (the model's input size).
        width, height: picture size in pixels (default :func:`default_size`).
        title: the header text.
    """
    output = check_output(output)
    if not rows:
        raise ConfigError("no query to draw; pass --queries 1 or more")
    top_k = max(1, max(len(row.gallery) for row in rows))
    default_w, default_h = default_size(len(rows), top_k, image_size)
    width, height = check_size(width or default_w, height or default_h)
    boxes = grid_layout(len(rows), top_k + 1, width, height)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    captions = []
    for r, row in enumerate(rows):
        query = row.query
        _paste(canvas, boxes[r][0], display_image(query.path, image_size), QUERY_COLOUR)
        captions.append((boxes[r][0], "query\n" + image_caption(query.person_id, query.camera)))
        for c, (item, dist, right) in enumerate(zip(row.gallery, row.distances, row.correct), start=1):
            colour = UNKNOWN_COLOUR if right is None else (RIGHT_COLOUR if right else WRONG_COLOUR)
            _paste(canvas, boxes[r][c], display_image(item.path, image_size), colour)
            captions.append((boxes[r][c], f"#{c}  d={dist:.3g}\n" + image_caption(item.person_id, item.camera)))
    figure = new_figure(width, height)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(canvas, interpolation="nearest", extent=(0, width, height, 0))
    axes.set_axis_off()
    for (left, top, right, bottom), text in captions:
        figure.text((left + right) / 2 / width, 1 - (bottom + 2) / height, text, ha="center", va="top",
                    fontsize=6.5, linespacing=1.1)
    if title:
        figure.text(0.5, 1 - 5 / height, title, ha="center", va="top", fontsize=8)
    return save_png(figure, output, width, height)


def visualize_ranks(model, output, dataset=None, data_root=None, query_folder=None,
                    gallery_folder=None, queries: int = 4, top_k: int = 5, trial: int = 1,
                    dataset_options: dict | None = None, seed: int | None = None,
                    width: int | None = None, height: int | None = None, batch_size: int = 64,
                    progress: bool = False) -> list[RankedRow]:
    """``mpanet-tf visualize ranks``: rank the gallery for ``queries`` queries and draw the top ``top_k``.

    Args:
        model: a loaded model or embedder, or a run folder / ``.keras`` / SavedModel / ``.onnx`` path
            (:func:`~mpanet_tf.viz.common.open_embedding`).
        output: ``.png`` path.
        dataset, data_root: a dataset's :class:`~mpanet_tf.data.registry.DatasetSpec` and its
            folder; or instead
        query_folder, gallery_folder: two folders of images.
        queries: number of queries (rows), picked by :func:`pick_queries`.
        top_k: gallery images per row.
        trial: the dataset's split (datasets with :attr:`~mpanet_tf.data.registry.DatasetSpec.splits`).
        dataset_options: ``{dest: value}`` of the protocol's
            :attr:`~mpanet_tf.eval.protocol.EvalProtocol.visualize_options` (SYSU ``mode``,
            RegDB/LLCM ``direction``); missing ones take their defaults.
        seed: None picks evenly spaced queries, an integer a random choice.
        width, height: picture size in pixels.

    Returns:
        the drawn rows.
    """
    output = check_output(output)
    if int(queries) < 1 or int(top_k) < 1:
        raise ConfigError(f"--queries and --top-k must be >= 1, got {queries} and {top_k}")
    from_folders = query_folder is not None or gallery_folder is not None
    if from_folders == (dataset is not None):
        raise ConfigError("pass either --dataset with --data-root, or --query-folder with --gallery")
    junk = None
    if from_folders:
        if query_folder is None or gallery_folder is None:
            raise ConfigError("--query-folder and --gallery go together; pass both folders")
        query_records, gallery_records = folder_records(query_folder, "query"), folder_records(gallery_folder, "gallery")
        normalize, source = True, f"{Path(gallery_folder).name} ({len(gallery_records)} gallery images)"
    else:
        if data_root is None:
            raise ConfigError(f"--dataset {dataset.name} needs --data-root, the dataset folder")
        protocol = dataset.get_protocol()
        reader = dataset.load(data_root, trial=dataset.check_split(trial))
        options = {**protocol.option_defaults("visualize_options"), **(dataset_options or {})}
        query_records, gallery_records, source, normalize, junk = protocol.ranked_list_sources(reader, options)
    embed_fn, size = open_embedding(model)
    chosen = [query_records[i] for i in pick_queries(queries, len(query_records), seed)]
    query_features = extract_features(embed_fn, chosen, size, batch_size, progress)
    gallery_features = extract_features(embed_fn, gallery_records, size, batch_size, progress)
    rows = rank_queries(query_features, gallery_features, chosen, gallery_records, int(top_k), normalize, junk)
    draw_ranks(rows, output, size, width, height, title=f"top-{int(top_k)} of {source}")
    return rows
