"""Where the PAM pattern maps look: one image with each map overlaid as a heat map (paper Fig. 3).

The Pattern Alignment Module (paper Eq. 4-6, design.md §1.3) computes p = ``num_parts`` sigmoid maps
``M = sigmoid(Conv1x1(F))`` on the layer4 feature map F, (B, h, w, p) with h x w = H/16 x W/16
(24 x 8 for a 384 x 128 input). Each map is upsampled bilinearly to the input size and blended over
the image with the ``jet`` colour map, one panel per map, after a first panel with the image alone.

Scale: ``"per-map"`` (default) stretches each map to its own [min, max] so the shape of every map
is visible; ``"shared"`` colours the raw sigmoid values on the common scale [0, 1], so panels can be
compared in strength. Each panel's caption gives the raw range of its map either way.

Layout: the panels are ``p + 1`` equal-width columns across the picture, the image first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpanet_tf.data.images import load_image
from mpanet_tf.errors import BadImageError, CheckpointError, ConfigError, DatasetError, printable
from mpanet_tf.model import load_model
from mpanet_tf.viz.common import check_output, check_size, new_figure, require_matplotlib, save_png

SCALES = ("per-map", "shared")
#: Overlay opacity of the heat map.
ALPHA = 0.5
_PANEL_WIDTH = 120
_CAPTION = 44


def pattern_maps(model, image: np.ndarray) -> np.ndarray:
    """PAM maps of one image: float (H, W, 3) in [0, 255] at the model size -> (h, w, p) in (0, 1).

    Args:
        model: an :class:`~mpanet_tf.model.MPANet` (``forward(images, training=False)["masks"]``).
        image: the image as :func:`mpanet_tf.data.images.load_image` returns it.

    Raises:
        CheckpointError: the model has no PAM (``use_pam`` off), hence no pattern maps.
    """
    if not hasattr(model, "forward"):
        raise CheckpointError("the model has no forward() with pattern maps; pass a run folder or .keras file "
                              "written by `mpanet-tf train` (not an exported SavedModel or ONNX file)")
    masks = model.forward(np.asarray(image, dtype="float32")[None], training=False)["masks"]
    if masks is None:
        raise CheckpointError("the model was trained without PAM (model.use_pam false) and has no pattern maps; "
                              "pass a model with PAM")
    return np.asarray(masks, dtype=np.float32)[0]


def upsample_map(pattern: np.ndarray, size) -> np.ndarray:
    """Bilinear upsampling of one map: (h, w) -> (H, W) float32 for ``size`` = (H, W)."""
    from PIL import Image

    height, width = (int(s) for s in size)
    resized = Image.fromarray(np.asarray(pattern, dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def heat_values(pattern: np.ndarray, scale: str = "per-map") -> np.ndarray:
    """Map values -> colour positions in [0, 1].

    ``"per-map"``: ``(m - min) / (max - min)`` (a constant map stays at its raw value);
    ``"shared"``: the raw sigmoid values, clipped to [0, 1].
    """
    if scale not in SCALES:
        raise ConfigError(f"pattern scale must be one of {', '.join(SCALES)}, got {scale!r}")
    pattern = np.asarray(pattern, dtype=np.float32)
    if scale == "per-map":
        low, high = float(pattern.min()), float(pattern.max())
        if high - low > 1e-6:
            return (pattern - low) / (high - low)
    return np.clip(pattern, 0.0, 1.0)


def overlay_heat(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Blend the ``jet`` colours of ``heat`` (H, W) in [0, 1] over ``image`` uint8 (H, W, 3) -> uint8 (H, W, 3).

    ``out = (1 - alpha) * image + alpha * 255 * jet(heat)``.
    """
    require_matplotlib()
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    blended = (1.0 - alpha) * np.asarray(image, dtype=np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def pattern_overlays(image: np.ndarray, masks: np.ndarray, scale: str = "per-map") -> list[np.ndarray]:
    """One overlay per map: image uint8 (H, W, 3), masks (h, w, p) -> p arrays uint8 (H, W, 3)."""
    size = np.shape(image)[:2]
    return [overlay_heat(image, heat_values(upsample_map(masks[..., i], size), scale))
            for i in range(np.shape(masks)[-1])]


def default_size(image_size, num_parts: int) -> tuple[int, int]:
    """(width, height) in pixels: ``num_parts + 1`` panels 120 px wide, at the image's aspect."""
    height, width = image_size
    panel_height = int(round(_PANEL_WIDTH * height / width))
    return _PANEL_WIDTH * (num_parts + 1), panel_height + _CAPTION + 30


def draw_patterns(image: np.ndarray, masks: np.ndarray, output, width: int | None = None,
                  height: int | None = None, scale: str = "per-map", title: str = "") -> Path:
    """Write the picture: the image, then one heat-map panel per pattern map.

    Args:
        image: uint8 (H, W, 3), the image at the model's input size.
        masks: (h, w, p) pattern maps.
        output: ``.png`` path.
        width, height: picture size in pixels (default :func:`default_size`).
        scale: ``"per-map"`` or ``"shared"`` (module docstring).
        title: text above the panels.
    """
    output = check_output(output)
    num_parts = int(np.shape(masks)[-1])
    default_w, default_h = default_size(np.shape(image)[:2], num_parts)
    width, height = check_size(width or default_w, height or default_h)
    overlays = pattern_overlays(image, masks, scale)
    figure = new_figure(width, height)
    if title:
        figure.text(0.5, 1.0 - 6 / height, title, ha="center", va="top", fontsize=9)
    top = 1.0 - 26 / height
    bottom = _CAPTION / height
    columns = num_parts + 1
    for index, panel in enumerate([image] + overlays):
        axes = figure.add_axes((index / columns + 0.04 / columns, bottom, 0.92 / columns, top - bottom))
        axes.imshow(panel, interpolation="bilinear")
        axes.set_xticks([])
        axes.set_yticks([])
        if index == 0:
            caption = "image"
        else:
            raw = masks[..., index - 1]
            caption = f"map {index}\n{float(raw.min()):.2f}..{float(raw.max()):.2f}"
        axes.set_xlabel(caption, fontsize=8, labelpad=2)
    return save_png(figure, output, width, height)


def visualize_patterns(model, image_path, output, width: int | None = None, height: int | None = None,
                       scale: str = "per-map") -> Path:
    """``mpanet-tf visualize patterns``: load the model and the image, draw its pattern maps.

    Args:
        model: a loaded :class:`~mpanet_tf.model.MPANet`, or a run folder / ``.keras`` path.
        image_path: the image file (decoded and resized by the one loading path).
        output, width, height, scale: as :func:`draw_patterns`.
    """
    check_output(output)
    if scale not in SCALES:
        raise ConfigError(f"pattern scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if not Path(image_path).is_file():
        raise BadImageError(image_path, "no such file")
    if not hasattr(model, "forward"):
        model = load_model(model)

    try:
        pixels = load_image(image_path, model.image_size)      # (H, W, 3) float32 in [0, 255]
    except BadImageError as error:
        raise DatasetError(f"cannot draw the pattern maps of {image_path}: {error.reason}; pass a readable "
                           "JPEG/PNG/BMP file with --image") from None
    masks = pattern_maps(model, pixels)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    title = f"PAM pattern maps of {printable('/'.join(Path(image_path).parts[-3:]))} ({masks.shape[0]}x{masks.shape[1]} maps, {scale} colour scale)"
    return draw_patterns(image, masks, output, width, height, scale, title)
