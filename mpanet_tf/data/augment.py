"""Training augmentations of MPANet (design.md §3.3), as small graph-safe TensorFlow functions.

Order, as the authors' ``get_train_loader``: (resize, done by the loader) -> :func:`random_flip` ->
:func:`pad_and_random_crop` -> ImageNet normalisation -> :func:`random_erasing`. The model
normalises its input itself (``mpanet_tf.layers.image_normalization``), so here everything stays
in [0, 255] and the erase fill is :data:`~mpanet_tf.layers.image_normalization.MEAN_PIXEL`, the colour that is 0
after normalisation: the same result as torchvision's erase with value 0 after ``Normalize``.

Every function takes one image, float32 ``(H, W, 3)`` in [0, 255], and a ``seed``: an int32/int64
tensor of shape ``[2]``. Randomness comes only from ``tf.random.stateless_*`` ops (Philox) with
sub-seeds split from that seed, so an augmentation is a pure function of ``(image, seed)``: the
same in eager mode, inside ``tf.data.Dataset.map`` and after a resume.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mpanet_tf.layers.image_normalization import MEAN_PIXEL

#: Padding colours of ``DataConfig.pad_fill`` (design.md §9 decision 8): grey as intended, or the dark
#: red that torchvision 0.4 + PIL produced from ``fill=127`` in the authors' run.
PAD_FILLS = {"grey": (127.0, 127.0, 127.0), "red": (127.0, 0.0, 0.0)}

_ALG = "philox"  # fixed, so CPU hosts and accelerators draw the same numbers


def _uniform(shape, seed, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform(shape, seed, minval=minval, maxval=maxval, alg=_ALG)


def _split(seed, num):
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num, alg=_ALG)


def random_flip(image, seed, prob=0.5):
    """Mirror left-right with probability ``prob`` (torchvision ``RandomHorizontalFlip``).

    Args:
        image: float32 (H, W, 3).
        seed: int tensor [2].
        prob: flip probability.

    Returns:
        float32 (H, W, 3): ``image`` or ``image[:, ::-1]``.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    fire = _uniform([], seed) < prob
    # tf.cond, not tf.where: the mirror is computed only when it is used (2x faster in tf.data).
    return tf.cond(fire, lambda: tf.reverse(image, axis=[1]), lambda: image)


def pad_and_random_crop(image, seed, pad=10, fill=PAD_FILLS["grey"]):
    """Pad ``pad`` pixels on every side with the constant colour ``fill``, crop a random H x W window.

    torchvision ``RandomCrop((H, W), padding=pad, fill=...)``: the top-left corner is uniform on
    ``{0, ..., 2*pad}`` in each direction (both ends included).

    Args:
        image: float32 (H, W, 3).
        seed: int tensor [2].
        pad: pixels added on each side (10).
        fill: RGB colour of the border, e.g. ``PAD_FILLS["grey"]`` = (127, 127, 127).

    Returns:
        float32 (H, W, 3), a window of the padded (H + 2*pad, W + 2*pad, 3) image.
    """
    if pad <= 0:
        return image
    image = tf.convert_to_tensor(image, tf.float32)
    offset = tf.random.stateless_uniform([2], seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32,
                                         alg=_ALG)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    # Output pixel (r, c) is padded[r + i, c + j] = image[r + i - pad, c + j - pad] when inside.
    # Built from the inside window and constant blocks (memory copies only, bit-exact).
    # Rows [top, top + rows) come from image rows [row0, row0 + rows); the rest is fill (pad may
    # exceed the image size, so everything is clipped to the image).
    top = tf.clip_by_value(pad - offset[0], 0, height)
    left = tf.clip_by_value(pad - offset[1], 0, width)
    rows = tf.clip_by_value(height + pad - offset[0], 0, height) - top
    cols = tf.clip_by_value(width + pad - offset[1], 0, width) - left
    row0 = tf.clip_by_value(offset[0] - pad, 0, height)
    col0 = tf.clip_by_value(offset[1] - pad, 0, width)
    core = image[row0:row0 + rows, col0:col0 + cols]
    colour = tf.constant(fill, tf.float32)
    block = lambda h, w: tf.broadcast_to(colour, tf.stack([h, w, 3]))  # noqa: E731
    band = tf.concat([block(rows, left), core, block(rows, width - cols - left)], axis=1)
    crop = tf.concat([block(top, width), band, block(height - rows - top, width)], axis=0)
    crop.set_shape(image.shape)
    return crop


def erase_params(image_shape, seed, prob=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts=10,
                 log_uniform_ratio=False):
    """The rectangle torchvision's ``RandomErasing`` picks: ``(apply, top, left, height, width)``.

    With probability ``prob``: up to ``attempts`` tries of area = U(scale) * H * W and aspect =
    U(ratio) (torchvision 0.4) or exp(U(log ratio)) (newer torchvision); h = round(sqrt(area *
    aspect)), w = round(sqrt(area / aspect)) (round half to even, as Python's ``round``). The first
    try with h < H and w < W wins; top ~ randint(0, H - h), left ~ randint(0, W - w), both ends
    included. If no try fits nothing is erased. The tries are drawn together and the first valid
    one picked with ``argmax``: no Python control flow on tensors.

    Returns:
        apply: bool scalar; top, left, height, width: int32 scalars.
    """
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    # One draw for everything (fewer ops per image): [fire, areas, aspects, tops, lefts].
    u = _uniform([1 + 4 * attempts], seed)
    fire = u[0] < prob
    area = (scale[0] + (scale[1] - scale[0]) * u[1:1 + attempts]) * height * width
    low, high = (float(np.log(ratio[0])), float(np.log(ratio[1]))) if log_uniform_ratio else ratio
    aspect = low + (high - low) * u[1 + attempts:1 + 2 * attempts]
    if log_uniform_ratio:
        aspect = tf.exp(aspect)
    h = tf.round(tf.sqrt(area * aspect))
    w = tf.round(tf.sqrt(area / aspect))
    valid = (h < height) & (w < width)
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)  # 0 when none is valid
    h, w = h[first], w[first]
    # randint(0, H - h) inclusive: floor(u * (H - h + 1)), u in [0, 1).
    top = tf.minimum(tf.floor(u[1 + 2 * attempts + first] * (height - h + 1.0)), height - h)
    left = tf.minimum(tf.floor(u[1 + 3 * attempts + first] * (width - w + 1.0)), width - w)
    apply = fire & tf.reduce_any(valid)
    as_int = lambda x: tf.cast(x, tf.int32)  # noqa: E731
    return apply, as_int(top), as_int(left), as_int(h), as_int(w)


def random_erasing(image, seed, prob=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), attempts=10,
                   fill=MEAN_PIXEL, log_uniform_ratio=False):
    """The re-ID random erasing of torchvision's ``RandomErasing`` (see :func:`erase_params`).

    The same rectangle is filled on all 3 channels with ``fill`` (the ImageNet mean colour, i.e. 0
    after normalisation, torchvision's ``value=0``). Not Keras' ``RandomErasing``, whose sampling
    differs (design.md §11).

    Args:
        image: float32 (H, W, 3) in [0, 255].
        seed: int tensor [2].

    Returns:
        float32 (H, W, 3).
    """
    image = tf.convert_to_tensor(image, tf.float32)
    shape = tf.shape(image)
    apply, top, left, h, w = erase_params(shape, seed, prob, scale, ratio, attempts, log_uniform_ratio)
    colour = tf.constant(fill, tf.float32)

    def erase():
        # The rectangle replaced by concatenating slices (memory copies only, bit-exact).
        block = tf.broadcast_to(colour, tf.stack([h, w, 3]))
        middle = image[top:top + h]
        band = tf.concat([middle[:, :left], block, middle[:, left + w:]], axis=1)
        return tf.concat([image[:top], band, image[top + h:]], axis=0)

    erased = tf.cond(apply, erase, lambda: image)
    erased.set_shape(image.shape)
    return erased


def augment(image, seed, config):
    """flip -> pad/crop -> erase with independent sub-seeds of ``seed`` (design.md §3.3).

    Args:
        image: float32 (H, W, 3) in [0, 255], already resized to the network size.
        seed: int tensor [2].
        config: :class:`mpanet_tf.config.DataConfig` (flip_prob, pad, pad_fill, erase_prob,
            erase_aspect).

    Returns:
        float32 (H, W, 3) in [0, 255].
    """
    seeds = _split(seed, 3)
    image = random_flip(image, seeds[0], config.flip_prob)
    image = pad_and_random_crop(image, seeds[1], config.pad, PAD_FILLS[config.pad_fill])
    return random_erasing(image, seeds[2], config.erase_prob,
                          log_uniform_ratio=config.erase_aspect == "log-uniform")
