"""Separation loss L_sep (design.md §2.2) against a float64 numpy loop and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.losses import separation_loss


def np_separation(masks, normalize=False):
    """sum_b sum_{i<j} <M_bi, M_bj> / (B p(p-1)/2) with maps taken from the channels-last input."""
    masks = np.asarray(masks, np.float64)
    batch, parts = masks.shape[0], masks.shape[-1]
    total = 0.0
    for b in range(batch):
        maps = [masks[b, :, :, i].ravel() for i in range(parts)]
        if normalize:
            maps = [m / np.linalg.norm(m) for m in maps]
        for i in range(parts):
            for j in range(i + 1, parts):
                total += maps[i] @ maps[j]
    return total / (batch * parts * (parts - 1) / 2)


def sigmoid_maps(seed, shape=(3, 4, 2, 5)):
    rng = np.random.default_rng(seed)
    return (1.0 / (1.0 + np.exp(-2.0 * rng.normal(size=shape)))).astype(np.float32)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy(seed, normalize):
    masks = sigmoid_maps(seed)
    value = separation_loss(masks, normalize=normalize)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(float(value), np_separation(masks, normalize), rtol=1e-5)


def test_all_ones_maps_hand_value():
    # Every pair overlaps fully: raw dot product = h*w = 6 (no division by h*w); cosine = 1.
    masks = np.ones((2, 2, 3, 3), np.float32)
    np.testing.assert_allclose(float(separation_loss(masks)), 6.0, rtol=1e-6)
    np.testing.assert_allclose(float(separation_loss(masks, normalize=True)), 1.0, rtol=1e-6)


def test_disjoint_maps_give_zero():
    masks = np.zeros((1, 2, 2, 4), np.float32)
    for part in range(4):  # map i lights only pixel i
        masks[0, part // 2, part % 2, part] = 0.9
    assert float(separation_loss(masks)) == 0.0
    assert float(separation_loss(masks, normalize=True)) == 0.0


def test_only_the_upper_triangle_is_counted_once():
    # p=3, one map pair overlapping: G[0,1] = 2*0.5*0.5; pairs = 3 -> loss = 0.5/3 per image.
    masks = np.zeros((1, 1, 2, 3), np.float32)
    masks[0, 0, :, 0] = 0.5
    masks[0, 0, :, 1] = 0.5
    np.testing.assert_allclose(float(separation_loss(masks)), 0.5 / 3, rtol=1e-6)


def test_single_map_gives_zero():
    value = separation_loss(sigmoid_maps(2, shape=(2, 4, 2, 1)))
    assert value.dtype == tf.float32 and float(value) == 0.0


def test_gradient_of_raw_form():
    # d/dM_bi of sum_{i<j} <M_bi, M_bj> / (B p(p-1)/2) = sum_{j != i} M_bj / (B p(p-1)/2).
    masks = sigmoid_maps(3, shape=(2, 3, 2, 4))
    x = tf.Variable(masks)
    with tf.GradientTape() as tape:
        loss = separation_loss(x)
    grad = tape.gradient(loss, x).numpy()
    others = masks.sum(axis=-1, keepdims=True) - masks
    np.testing.assert_allclose(grad, others / (2 * 4 * 3 / 2), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_maps_give_float32_loss(dtype):
    masks = sigmoid_maps(4)
    low = tf.cast(masks, dtype)
    value = separation_loss(low)
    assert value.dtype == tf.float32
    np.testing.assert_allclose(float(value), np_separation(tf.cast(low, tf.float32).numpy()), rtol=1e-5)


def test_traces_with_unknown_batch_and_size():
    fn = tf.function(separation_loss, input_signature=[tf.TensorSpec((None, None, None, 5), tf.float32)])
    masks = sigmoid_maps(5)
    np.testing.assert_allclose(float(fn(masks)), np_separation(masks), rtol=1e-5)
