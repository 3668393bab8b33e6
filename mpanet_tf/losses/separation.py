"""Separation loss L_sep of the PAM pattern maps (paper: Eq. 6 region; design.md §2.2, §8.5).

The authors' code (models/baseline.py): the p sigmoid pattern maps are flattened to
``M (B, p, h*w)``, ``G = M M^T (B, p, p)`` holds the raw dot products of every pair of maps, and the
loss is the **sum of the strict upper triangle (i < j) over batch and pairs divided by
B * p(p-1)/2**: the mean pairwise overlap. There is **no normalisation** of the maps in the code
(values can be large early in training: h*w = 192 on SYSU). The paper's form divides by the
maps' norms (cosine similarity); ``normalize=True`` gives that variant. Weight 0.5, train mode only
(the weight is applied by :func:`mpanet_tf.losses.total_loss`).

The Gram matrix is computed in float32 (fragile in float16, design.md §8.17).
"""

from __future__ import annotations

import numpy as np
from keras import ops

_NORM_EPSILON = 1e-12  # as torch.nn.functional.normalize


def separation_loss(masks, normalize=False):
    """Mean pairwise overlap of the pattern maps, a float32 scalar (design.md §2.2).

    Args:
        masks: ``(B, h, w, p)`` sigmoid pattern maps, channels-last as the Keras PAM emits them
            (any float dtype; cast to float32). ``p`` must be static.
        normalize: False (authors' code): raw dot products ``<M_i, M_j>``. True (paper form):
            every map is L2-normalised over ``h*w`` first, so each pair contributes its cosine.

    Returns:
        ``sum_b sum_{i<j} <M_bi, M_bj> / (B * p(p-1)/2)``; 0.0 when ``p == 1`` (no pair).
    """
    num_parts = masks.shape[-1]
    if num_parts is None:
        raise ValueError(f"separation_loss needs a static number of maps (last axis), got {masks.shape}")
    if num_parts < 2:
        return ops.convert_to_tensor(0.0, dtype="float32")
    maps = ops.cast(masks, "float32")
    maps = ops.reshape(maps, (ops.shape(maps)[0], -1, num_parts))  # (B, h*w, p)
    if normalize:
        norms = ops.sqrt(ops.sum(ops.square(maps), axis=1, keepdims=True))  # (B, 1, p)
        maps = maps / ops.maximum(norms, _NORM_EPSILON)
    gram = ops.einsum("bnp,bnq->bpq", maps, maps)  # (B, p, p)
    upper = ops.convert_to_tensor(np.triu(np.ones((num_parts, num_parts), "float32"), k=1))  # i < j
    batch = ops.cast(ops.shape(maps)[0], "float32")
    pairs = num_parts * (num_parts - 1) / 2.0
    return ops.sum(gram * upper[None]) / (batch * pairs)
