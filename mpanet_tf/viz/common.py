"""What every picture of ``mpanet-tf visualize`` shares: optional imports, exact-size PNGs, labels.

Plotting needs matplotlib (and the t-SNE scikit-learn), both in the ``viz`` extra of
pyproject.toml. When one is missing, :func:`require_matplotlib` / :func:`require_sklearn` raise
:class:`MissingDependencyError` (an :class:`MPANetError`, so the CLI prints one line and exits 2).

Figures are drawn on matplotlib's Agg canvas without pyplot (no global state, no display) at
``dpi = 100`` with ``figsize = (width / 100, height / 100)``; :func:`save_png` reads the canvas
pixels back and writes them with Pillow, so the PNG is exactly ``width x height`` pixels.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from mpanet_tf.data.images import load_image
from mpanet_tf.data.records import is_infrared_camera
from mpanet_tf.errors import ConfigError, MPANetError
from mpanet_tf.io.atomic import atomic_write_bytes
from mpanet_tf.io.output_checks import check_output_file
from mpanet_tf.runtimes.embedder import load_embedder

#: Pixels per matplotlib inch for every figure of this package.
DPI = 100
#: Border colours of the ranked lists: right identity, wrong identity, unknown, query.
RIGHT_COLOUR = "#1a9850"
WRONG_COLOUR = "#d73027"
UNKNOWN_COLOUR = "#9e9e9e"
QUERY_COLOUR = "#2166ac"
#: Smallest picture side we agree to draw, in pixels.
MIN_SIDE = 64
MAX_SIDE = 8000
_EXTRA_HINT = "install the plotting extra: pip install 'mpanet-tf[viz]'"


class MissingDependencyError(MPANetError):
    """An optional package of the ``viz`` extra (matplotlib, scikit-learn) is not installed."""


class VisualizationError(MPANetError):
    """A picture cannot be made from what was given (no history, too few identities, ...)."""


def require_matplotlib():
    """Import matplotlib with the Agg backend; :class:`MissingDependencyError` when absent."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(f"matplotlib is not installed, and visualize needs it; {_EXTRA_HINT}") from None
    matplotlib.use("Agg", force=True)
    return matplotlib


def require_sklearn_tsne():
    """``sklearn.manifold.TSNE``; :class:`MissingDependencyError` when scikit-learn is absent."""
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise MissingDependencyError(f"scikit-learn is not installed, and visualize tsne needs it; {_EXTRA_HINT}") from None
    return TSNE


def check_size(width, height) -> tuple[int, int]:
    """Validated picture size in pixels; :class:`ConfigError` outside [MIN_SIDE, MAX_SIDE]."""
    width, height = int(width), int(height)
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise ConfigError(f"picture {name} must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {value}; "
                              f"pass another --{name}")
    return width, height


def check_output(path) -> Path:
    """The output path of a picture: must end in ``.png``; its folder is created.

    Raises:
        ConfigError: the suffix is not ``.png``, or the folder cannot be created.
    """
    path = Path(os.path.expanduser(os.fspath(path)))
    if path.suffix.lower() != ".png":
        raise ConfigError(f"output {path} must end in .png (the pictures are PNG files); pass --output NAME.png")
    if path.is_dir():
        raise ConfigError(f"output {path} is a folder; pass a file name ending in .png")

    check_output_file(path, "--output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the folder of output {path} ({error.strerror or error}); "
                          "choose a writable --output") from None
    return path


def new_figure(width: int, height: int):
    """A matplotlib Figure on an Agg canvas that renders at exactly ``width x height`` pixels."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = check_size(width, height)
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)
    return figure


def render(figure) -> np.ndarray:
    """The figure's pixels: uint8 (height, width, 3)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def save_png(figure, path, width: int, height: int) -> Path:
    """Render ``figure`` and write it to ``path`` as a PNG of exactly ``width x height`` pixels.

    The file is written to a temporary name in the same folder and renamed, so a reader never sees
    half a picture. Returns the path.
    """
    from PIL import Image

    path = check_output(path)
    pixels = render(figure)
    image = Image.fromarray(pixels)
    if image.size != (int(width), int(height)):  # Agg rounds figsize * dpi; never expected here
        image = image.resize((int(width), int(height)), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    try:
        atomic_write_bytes(path, buffer.getvalue())
        umask = os.umask(0)      # the temporary file is 0600; give the picture the usual mode
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)
    except OSError as error:
        raise ConfigError(f"cannot write {path} ({error.strerror or error}); choose a writable --output") from None
    return path


def display_image(path, size) -> np.ndarray:
    """An image as the model sees it, for drawing: uint8 (h, w, 3) at ``size`` = (h, w).

    Goes through the one loading path (:func:`mpanet_tf.data.images.load_image`), so a corrupt
    file raises :class:`~mpanet_tf.errors.BadImageError`.
    """
    return np.clip(np.rint(load_image(path, size)), 0, 255).astype(np.uint8)


def modality_name(camera) -> str:
    """``"IR"`` for the infrared cameras 3 and 6 (design.md §2), ``"VIS"`` for the others, ``"?"`` if unknown."""
    if camera is None or int(camera) < 0:
        return "?"

    return "IR" if is_infrared_camera(int(camera)) else "VIS"


def image_caption(person_id, camera) -> str:
    """Short caption ``"id 12 | cam3 IR"`` (unknown parts shown as ``?``)."""
    pid = "?" if person_id is None or int(person_id) < 0 else str(int(person_id))
    cam = "cam?" if camera is None or int(camera) < 0 else f"cam{int(camera)}"
    return f"id {pid} | {cam} {modality_name(camera)}"


def identity_colours(count: int) -> list:
    """``count`` distinct RGBA colours (tab10/tab20, then evenly spaced hues)."""
    require_matplotlib()
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["hsv"](i / count) for i in range(count)]


#: Size at which images are shown when the model does not say its input size (a SavedModel that
#: resizes inside).
FALLBACK_IMAGE_SIZE = (256, 128)


def open_embedding(model):
    """``(embed_fn, image_size)`` for the feature pictures (ranks, t-SNE).

    ``model`` is a loaded :class:`~mpanet_tf.model.MPANet` (its ``embed``), an
    :class:`~mpanet_tf.runtimes.embedder.Embedder`, or a path that
    :func:`~mpanet_tf.runtimes.embedder.load_embedder` opens (run folder, ``.keras``, SavedModel,
    ``.onnx``). ``image_size`` is (h, w), :data:`FALLBACK_IMAGE_SIZE` when the artifact resizes
    inside and does not say.
    """
    if isinstance(model, (str, os.PathLike)):
        model = load_embedder(model)
    embed_fn = model.embed if hasattr(model, "embed") else model
    size = getattr(model, "image_size", None)
    return embed_fn, tuple(int(s) for s in size) if size else FALLBACK_IMAGE_SIZE
