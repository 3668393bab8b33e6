"""Pillow's bilinear resize rebuilt in TensorFlow ops, bit for bit (design.md §3.3).

``PIL.Image.resize((w, h), Image.BILINEAR)`` on an 8-bit RGB image is ``ImagingResample`` of
Pillow's libImaging/Resample.c (Pillow 13; ``reducing_gap=None``, so no reduce step first). For one
axis and a given (input size, output size) it is a fixed sparse matrix: output pixel ``o`` reads
the input pixels ``first[o] .. first[o] + taps - 1`` with integer weights ``fixed[o, :]``:

- ``precompute_coeffs``: a triangle filter whose support grows with the downscale factor
  (``support = max(in / out, 1)``), evaluated in double precision; each row divided by its sum,
  the sum accumulated tap by tap (the order of a float sum matters);
- ``normalize_coeffs_8bpc``: each weight to fixed point with :data:`PRECISION_BITS` = 22
  fractional bits, ``(int)(0.5 + w * (1 << 22))``;
- ``ImagingResampleHorizontal_8bpc`` / ``..Vertical_8bpc``: per output pixel and channel
  ``clip8((1 << 21) + sum(pixel * weight)) >> 22`` in 32-bit integers, one pass per axis, each
  rounded to uint8, the vertical one first when the height shrinks by more than twice as many
  pixels as the width does (``ImagingResampleInner``), else the horizontal one first.

Here each pass gathers its taps along the *outermost* axis (the resampled axis moved to the front,
so each gathered slice is a whole contiguous row or column, not one 3-byte pixel) and sums the
int32 products over the taps with one batched int32 matmul (an output's taps times its gathered
input rows). Everything is TensorFlow ops on dynamic sizes, so the tf.data
pipeline and the SavedModel signatures run the same code without Python.
"""

from __future__ import annotations

#: Pillow's fixed-point precision of resampling coefficients (libImaging/Resample.c: 32 - 8 - 2).
PRECISION_BITS = 22

#: Above this many int32 products a pass loops over the taps instead of gathering them all at
#: once (64 MB of products; only huge downscales get there).
_GATHER_LIMIT = 1 << 24


def _filter_weights(in_size, out_size):
    """Pillow's unnormalised bilinear weights for one axis (``precompute_coeffs`` before the
    division): int32 (out,) first input index, float64 (out, taps) weights, 0 past the window."""
    import tensorflow as tf

    in_size = tf.cast(in_size, tf.int32)
    out_size = tf.cast(out_size, tf.int32)
    scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
    filterscale = tf.maximum(scale, 1.0)
    support = filterscale  # the bilinear filter's support is 1.0
    taps = tf.cast(tf.math.ceil(support), tf.int32) * 2 + 1
    center = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    inverse = 1.0 / filterscale
    first = tf.maximum(tf.cast(center - support + 0.5, tf.int32), 0)  # C's (int): truncation
    count = tf.minimum(tf.cast(center + support + 0.5, tf.int32), in_size) - first
    tap = tf.range(taps)
    position = tf.cast(first[:, None] + tap[None, :], tf.float64)
    distance = tf.abs((position - center[:, None] + 0.5) * inverse)
    inside = tf.logical_and(distance < 1.0, tap[None, :] < count[:, None])
    return first, tf.where(inside, 1.0 - distance, tf.zeros_like(distance))


def _fixed_point(weights):
    """float64 (rows, taps) -> int32 (rows, taps): each row divided by its sum, then
    ``normalize_coeffs_8bpc``.

    The sum is a running sum along the taps (``cumsum``: each row accumulated left to right from
    0, Pillow's ``ww += w`` order; the tests compare every coefficient with Pillow's arithmetic).
    """
    import tensorflow as tf

    total = tf.math.cumsum(weights, axis=1)[:, -1]
    safe = tf.where(total == 0.0, tf.ones_like(total), total)
    weights = tf.where(total[:, None] != 0.0, weights / safe[:, None], weights)
    return tf.cast(tf.floor(0.5 + weights * float(1 << PRECISION_BITS)), tf.int32)


def bilinear_coefficients(in_size, out_size):
    """Pillow's bilinear resampling coefficients for one axis, computed in-graph.

    Reproduces ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` of libImaging/Resample.c in the
    same double-precision operations, in the same order.

    Args:
        in_size, out_size: int scalars (Python or tensors).

    Returns:
        ``(first, weights)``: int32 (out_size,), the first input index each output reads, and
        int32 (out_size, taps), its fixed-point weights (22 fractional bits; 0 past the window).
    """
    first, weights = _filter_weights(in_size, out_size)
    return first, _fixed_point(weights)


def _both_coefficients(in_height, height, in_width, width):
    """The coefficients of both axes with one running sum (rows of both tables, zero-padded to
    the wider one: adding 0.0 leaves a sum unchanged)."""
    import tensorflow as tf

    first_h, weights_h = _filter_weights(in_height, height)
    first_w, weights_w = _filter_weights(in_width, width)
    taps_h, taps_w = tf.shape(weights_h)[1], tf.shape(weights_w)[1]
    taps = tf.maximum(taps_h, taps_w)
    fixed = _fixed_point(tf.concat([tf.pad(weights_h, [[0, 0], [0, taps - taps_h]]),
                                    tf.pad(weights_w, [[0, 0], [0, taps - taps_w]])], 0))
    return (first_h, fixed[:height, :taps_h]), (first_w, fixed[height:, :taps_w])


def _resample_axis(image, first, fixed, axis):
    """One Pillow pass along ``axis`` (-3: height, -2: width) of uint8 ``image`` (..., H, W, C)
    -> uint8, the axis resized to ``fixed``'s rows.

    The axis is moved to the front and the rest flattened, so that gathering a tap reads whole
    contiguous rows: (in, rest) -> (out, taps, rest) int32 products summed over the taps.
    """
    import tensorflow as tf

    rank = image.shape.rank
    axis %= rank
    perm = [axis] + [i for i in range(rank) if i != axis]
    moved = image if axis == 0 else tf.transpose(image, perm)
    shape = tf.shape(moved)
    in_size = shape[0]
    rows = tf.reshape(moved, [in_size, -1])
    out_size, taps = tf.shape(fixed)[0], tf.shape(fixed)[1]

    def gather_all():
        index = tf.minimum(first[:, None] + tf.range(taps)[None, :], in_size - 1)  # weight 0 past the window
        pixels = tf.reshape(tf.gather(rows, tf.reshape(index, [-1])), [out_size, taps, -1])
        # (out, 1, taps) @ (out, taps, rest): products and sums in one int32 kernel, exact (below 2**31)
        return tf.linalg.matmul(fixed[:, None, :], tf.cast(pixels, tf.int32))[:, 0]

    def loop():
        def step(tap, acc):
            pixels = tf.gather(rows, tf.minimum(first + tap, in_size - 1))
            return tap + 1, acc + tf.cast(pixels, tf.int32) * fixed[:, tap, None]

        start = tf.zeros([out_size, tf.shape(rows)[1]], tf.int32)
        return tf.while_loop(lambda tap, acc: tap < taps, step, [tf.constant(0), start])[1]

    products = tf.cast(tf.size(rows), tf.int64) // tf.cast(in_size, tf.int64) * tf.cast(out_size * taps, tf.int64)
    acc = tf.cond(products <= _GATHER_LIMIT, gather_all, loop)
    # Pillow's clip8: the weights are >= 0, so only the top can overflow (rounded weights may sum
    # to a little over 2**22).
    rounded = tf.bitwise.right_shift(acc + (1 << (PRECISION_BITS - 1)), PRECISION_BITS)
    resized = tf.cast(tf.minimum(rounded, 255), tf.uint8)
    resized = tf.reshape(resized, tf.concat([[out_size], shape[1:]], 0))
    return resized if axis == 0 else tf.transpose(resized, [perm.index(i) for i in range(rank)])


def resample(image, height, width):
    """uint8 (..., H, W, C) -> uint8 (..., height, width, C), Pillow's two passes in its order.

    Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    pixels as the width does (``ImagingResampleInner``: ``in_h - h > 0 and in_h - h > 2 * (in_w -
    w)``), else the horizontal pass first; the order changes the uint8 rounding in between.
    ``height`` and ``width`` may be tensors; the rank of ``image`` must be known.
    """
    import tensorflow as tf

    in_height, in_width = tf.shape(image)[-3], tf.shape(image)[-2]
    vertical, horizontal = _both_coefficients(in_height, height, in_width, width)
    shrink = in_height - height
    vertical_first = tf.logical_and(shrink > 0, shrink > (in_width - width) * 2)
    return tf.cond(vertical_first,
                   lambda: _resample_axis(_resample_axis(image, *vertical, -3), *horizontal, -2),
                   lambda: _resample_axis(_resample_axis(image, *horizontal, -2), *vertical, -3))


def resize_image_tensor(image, size):
    """uint8 (H, W, 3) or (B, H, W, 3) -> float32 at ``size`` = (h, w), whole values in [0, 255].

    Bit for bit PIL's ``Image.resize((w, h), Image.BILINEAR)`` of the uint8 image (:func:`resample`).
    Any H and W (dynamic); graph-safe. A float input is rounded and clipped to uint8 first.
    """
    import tensorflow as tf

    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        image = tf.cast(tf.clip_by_value(tf.round(tf.cast(image, tf.float32)), 0.0, 255.0), tf.uint8)
    height, width = int(size[0]), int(size[1])
    resized = tf.cast(resample(image, height, width), tf.float32)
    resized.set_shape([*image.shape[:-3], height, width, image.shape[-1]])
    return resized
