"""Pillow's bilinear resize rebuilt in TensorFlow ops, bit for bit (facts §3.3).

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

Here the coefficients of both axes are computed in-graph in one table (:func:`_coefficients`),
and each pass works on its axis moved to the front: it gathers its taps' whole rows (contiguous,
not 3-byte pixels) and sums them with one batched int32 matmul, exact (:func:`_gathered_pass`);
a huge downscale's first pass computes what would not fit :data:`_GATHER_LIMIT` as a sparse
matrix product (:func:`_bounded_pass`). Everything is TensorFlow ops on dynamic sizes, with no
``tf.cond`` or loop and no transpose of integers (see :func:`resample`), so the tf.data pipeline
and the SavedModel signatures run the same code without Python and without a line on stderr.
"""

from __future__ import annotations

#: Pillow's fixed-point precision of resampling coefficients (libImaging/Resample.c: 32 - 8 - 2).
PRECISION_BITS = 22


def _fixed_point(weights):
    """float64 (rows, taps) -> int32 (rows, taps): each row divided by its sum, then
    ``normalize_coeffs_8bpc``.

    The sum is a running sum along the taps (``cumsum``: each row accumulated left to right from
    0, Pillow's ``ww += w`` order; the tests compare every coefficient with Pillow's arithmetic).
    Pillow divides only when the sum is not 0; a row summing to 0 is all zeros (the weights are
    >= 0), so dividing it by 1 leaves it as Pillow does. ``(int)(0.5 + w * (1 << 22))`` truncates
    a positive number: the cast to int32 does the same.
    """
    import tensorflow as tf

    total = tf.math.cumsum(weights, axis=1)[:, -1:]
    weights = weights / tf.where(total == 0.0, tf.ones_like(total), total)
    return tf.cast(0.5 + weights * float(1 << PRECISION_BITS), tf.int32)


def _coefficients(in_sizes, out_sizes):
    """Pillow's bilinear coefficients of two axes at once (``precompute_coeffs`` +
    ``normalize_coeffs_8bpc``, the same double-precision operations in the same order).

    Args:
        in_sizes, out_sizes: int32 (2,), the input and output sizes of axis 0 and axis 1.

    Returns:
        ``(index, fixed, taps)``, rows = ``out_sizes[0] + out_sizes[1]`` (axis 0's outputs, then
        axis 1's): int32 (rows, width), the input index each output's taps read (``first + t``,
        clamped to the last input: past the window the weight is 0); int32 (rows, width), the
        fixed-point weights (22 fractional bits; 0 past the window); int32 (2,), the columns
        each axis needs (its widest window). ``width`` is the wider of the two, not Pillow's
        ``ksize = 2 * ceil(support) + 1``: the columns past every window hold only zeros, and a
        pass multiplies by every column it keeps.
    """
    import tensorflow as tf

    scale = tf.cast(in_sizes, tf.float64) / tf.cast(out_sizes, tf.float64)
    support = tf.maximum(scale, 1.0)  # filterscale; the bilinear filter's support is 1.0
    row = tf.range(tf.reduce_sum(out_sizes))
    axis = tf.cast(row >= out_sizes[0], tf.int32)
    center = (tf.cast(row - axis * out_sizes[0], tf.float64) + 0.5) * tf.gather(scale, axis)
    row_support, row_in = tf.gather(support, axis), tf.gather(in_sizes, axis)
    first = tf.maximum(tf.cast(center - row_support + 0.5, tf.int32), 0)  # C's (int): truncation
    count = tf.minimum(tf.cast(center + row_support + 0.5, tf.int32), row_in) - first
    taps = tf.math.unsorted_segment_max(count, axis, 2)
    tap = tf.range(tf.reduce_max(taps))
    position = first[:, None] + tap
    distance = tf.abs((tf.cast(position, tf.float64) - center[:, None] + 0.5) * tf.gather(1.0 / support, axis)[:, None])
    weights = tf.where(tf.logical_and(distance < 1.0, tap < count[:, None]), 1.0 - distance, 0.0)
    return tf.minimum(position, row_in[:, None] - 1), _fixed_point(weights), taps


def bilinear_coefficients(in_size, out_size):
    """Pillow's bilinear resampling coefficients for one axis, computed in-graph.

    Args:
        in_size, out_size: int scalars (Python or tensors).

    Returns:
        ``(first, weights)``: int32 (out_size,), the first input index each output reads, and
        int32 (out_size, ksize), its fixed-point weights (22 fractional bits; 0 past the window),
        ``ksize = 2 * ceil(max(in / out, 1)) + 1`` columns as Pillow's table.
    """
    import tensorflow as tf

    in_size, out_size = tf.cast(in_size, tf.int32), tf.cast(out_size, tf.int32)
    index, fixed, _ = _coefficients(tf.stack([in_size, 1]), tf.stack([out_size, 1]))
    ksize = tf.cast(tf.math.ceil(tf.maximum(tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64), 1.0)),
                    tf.int32) * 2 + 1
    fixed = fixed[:out_size]
    return index[:out_size, 0], tf.pad(fixed, [[0, 0], [0, ksize - tf.shape(fixed)[1]]])


#: At most this many int32 products (64 MB) are gathered at once in the first pass; its output
#: rows past them are computed by a sparse matrix product instead (only huge downscales get
#: there: a pass gathers about twice as many values as its input has).
_GATHER_LIMIT = 1 << 24


def _round(total):
    """int32 sums -> float32: Pillow's ``clip8((total + 2**21) >> 22)``, the shift done in float64
    (exact; TensorFlow's integer shift is not vectorised). The weights are >= 0, so only the top
    can overflow (rounded weights may sum to a little over 2**22)."""
    import tensorflow as tf

    total = tf.cast(total + (1 << (PRECISION_BITS - 1)), tf.float64)
    return tf.cast(tf.minimum(tf.floor(total * 2.0 ** -PRECISION_BITS), 255.0), tf.float32)


def _gathered_pass(rows, index, fixed):
    """One Pillow pass along the outermost axis: int32 ``rows`` (in, rest) -> int32 (out, 1, rest)
    sums ``sum_t fixed[o, t] * rows[index[o, t]]``, exact in int32 (products and sums stay below
    2**31: 255 times weights summing to about 2**22). The taps' rows are gathered, each a whole
    contiguous row (not one 3-byte pixel), as (out, taps, rest), and summed by one batched matmul
    (out, 1, taps) @ (out, taps, rest)."""
    import tensorflow as tf

    return tf.linalg.matmul(fixed[:, None, :], tf.gather(rows, index))


def _bounded_pass(rows, index, fixed, rest):
    """:func:`_gathered_pass` for the outputs whose gathered rows fit :data:`_GATHER_LIMIT`, the
    sparse (out, in) matrix times ``rows`` (``tf.sparse.sparse_dense_matmul``: no intermediate,
    slower per product) for the others -> int32 (out, 1, rest). Both always run, one of them on
    nothing unless the limit splits the outputs: a ``tf.cond`` costs more than that inside
    ``tf.data``."""
    import tensorflow as tf

    out_size, taps = tf.shape(index)[0], tf.shape(index)[1]
    near = tf.minimum(out_size, _GATHER_LIMIT // tf.maximum(taps * rest, 1))
    head, tail = tf.stack([near, -1]), tf.stack([near, 0])
    total = _gathered_pass(rows, tf.slice(index, [0, 0], head), tf.slice(fixed, [0, 0], head))
    far_index, far_fixed = tf.slice(index, tail, [-1, -1]), tf.slice(fixed, tail, [-1, -1])
    entry = tf.range(tf.size(far_index))
    indices = tf.stack([entry // taps, tf.reshape(far_index, [-1])], 1)
    matrix = tf.sparse.SparseTensor(tf.cast(indices, tf.int64), tf.reshape(far_fixed, [-1]),
                                    tf.cast(tf.stack([out_size - near, tf.shape(rows)[0]]), tf.int64))
    far = tf.sparse.sparse_dense_matmul(matrix, rows)  # repeated (clamped) entries add 0
    return tf.concat([total, far[:, None, :]], 0)


def resample(image, height, width):
    """uint8 (..., H, W, C) -> float32 (..., height, width, C), whole values in [0, 255]: Pillow's
    two passes in its order.

    Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    pixels as the width does (``ImagingResampleInner``: ``in_h - h > 0 and in_h - h > 2 * (in_w -
    w)``), else the horizontal pass first; the order changes the uint8 rounding in between.

    Layout (B: the leading axes, none for a 3-D image): the first pass's axis is moved to the
    front, (in1, B, in2, C) -> rows (in1, rest) -> (out1, B, in2, C) (:func:`_bounded_pass`); the
    other axis is moved to the front, (in2, B, out1, C) -> (out2, B, out1, C)
    (:func:`_gathered_pass`); a last transpose gives (B, height, width, C). Which axis comes first
    is a choice of sizes and permutations (``tf.where`` on small tensors), not a ``tf.cond``
    (about a millisecond per image inside ``tf.data``); every op counts (a few microseconds each
    there), so the graph is kept small. The transposes are of float32 (whole values, exact): with
    oneDNN on (``import mpanet_tf`` sets it) a transpose of uint8 or int32 prints an error line
    on CPUs without AVX-512, and grappler moves a widening cast after a transpose
    (``ReorderCastLikeAndValuePreserving``), so the uint8 -> float32 cast is followed by a
    ``maximum`` with 0 (a no-op here, but not an op that only moves values). Memory: float32 and
    int32 copies of the input, at most :data:`_GATHER_LIMIT` gathered products in the first pass
    and about twice the intermediate image in the second.

    ``height`` and ``width`` may be tensors; the rank of ``image`` (3 or 4) must be known.
    """
    import tensorflow as tf

    shape = tf.shape(image)
    in_height, in_width, channels = shape[-3], shape[-2], shape[-1]
    shrink = in_height - height
    vertical_first = tf.logical_and(shrink > 0, shrink > (in_width - width) * 2)
    in_sizes = tf.where(vertical_first, tf.stack([in_height, in_width]), tf.stack([in_width, in_height]))
    out_sizes = tf.where(vertical_first, tf.stack([height, width]), tf.stack([width, height]))
    (in1, in2), (out1, out2) = tf.unstack(in_sizes), tf.unstack(out_sizes)
    index, fixed, taps = _coefficients(in_sizes, out_sizes)
    taps1, taps2 = tf.unstack(taps)

    pixels = tf.maximum(tf.cast(image, tf.float32), 0.0)  # (B, H, W, C)
    if image.shape.rank == 3:  # (in, rest) rows, rest = (other, C); the last permutation
        first_perm, middle_perm = tf.where(vertical_first, [0, 1, 2], [1, 0, 2]), [1, 0, 2]
        last_perm, rest_shape = tf.where(vertical_first, [1, 0, 2], [0, 1, 2]), []
    else:  # rest = (B, other, C)
        first_perm, middle_perm = tf.where(vertical_first, [1, 0, 2, 3], [2, 0, 1, 3]), [2, 1, 0, 3]
        last_perm, rest_shape = tf.where(vertical_first, [1, 2, 0, 3], [1, 0, 2, 3]), [shape[0]]
    rows = tf.cast(tf.reshape(tf.transpose(pixels, first_perm), [in1, -1]), tf.int32)  # (in1, rest)
    size = tf.stack([out1, taps1])
    once = _bounded_pass(rows, tf.slice(index, [0, 0], size), tf.slice(fixed, [0, 0], size),
                         tf.size(rows) // tf.maximum(in1, 1))
    once = tf.reshape(_round(once), [out1, *rest_shape, in2, channels])
    rows = tf.cast(tf.reshape(tf.transpose(once, middle_perm), [in2, -1]), tf.int32)  # (in2, rest)
    begin, size = tf.stack([out1, 0]), tf.stack([out2, taps2])
    twice = _gathered_pass(rows, tf.slice(index, begin, size), tf.slice(fixed, begin, size))
    twice = tf.reshape(_round(twice), [out2, *rest_shape, out1, channels])
    return tf.transpose(twice, last_perm)


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
    resized = resample(image, height, width)
    resized.set_shape([*image.shape[:-3], height, width, image.shape[-1]])
    return resized
