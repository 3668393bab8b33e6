"""Centre cluster loss L_cc (design.md §2.3) against a float64 numpy transcription of the code."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.losses import center_cluster_loss, center_cluster_terms


def np_center_cluster(features, labels, k_size, margin=0.7):
    """Loop version of the authors' CenterTripletLoss in float64, direct centre differences.

    Returns (pull, push); an anchor with no other identity contributes 0 (documented deviation).
    """
    f = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    centers = np.stack([f[labels == labels[i]].mean(axis=0) for i in range(n)])
    pull = np.mean([np.sqrt(np.sum((f[i] - centers[i]) ** 2)) for i in range(n)])
    per_anchor = []
    for a in range(0, n, k_size):
        hinges = [
            max(0.0, margin - np.sqrt(max(np.sum((centers[a] - centers[j]) ** 2), 1e-12)))
            for j in range(n)
            if labels[j] != labels[a]
        ]
        per_anchor.append(np.mean(hinges) if hinges else 0.0)
    return pull, float(np.mean(per_anchor))


def block_batch(seed, ids=3, k=4, dim=8, scale=0.15, offset=0.0):
    """Identity-contiguous blocks of k rows; small scale so some centres are closer than the margin."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(rng.permutation(20)[:ids], k)
    features = (offset + scale * rng.normal(size=(ids * k, dim))).astype(np.float32)
    return features, labels


def gradient(features, labels, k_size, margin=0.7):
    x = tf.Variable(features)
    with tf.GradientTape() as tape:
        loss = center_cluster_loss(x, labels, k_size, margin)
    return loss, tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_terms_match_numpy(seed):
    features, labels = block_batch(seed)
    pull, push = center_cluster_terms(features, labels, k_size=4)
    ref_pull, ref_push = np_center_cluster(features, labels, 4)
    assert ref_push > 0.0  # the test data exercises the hinge
    assert pull.dtype == tf.float32 and push.dtype == tf.float32
    np.testing.assert_allclose(float(pull), ref_pull, rtol=1e-5)
    np.testing.assert_allclose(float(push), ref_push, rtol=1e-5, atol=1e-6)
    total = center_cluster_loss(features, labels, k_size=4)
    np.testing.assert_allclose(float(total), ref_pull + ref_push, rtol=1e-5)


def test_margin_changes_only_the_push():
    features, labels = block_batch(3)
    pull, push = center_cluster_terms(features, labels, 4, margin=5.0)
    ref_pull, ref_push = np_center_cluster(features, labels, 4, margin=5.0)
    np.testing.assert_allclose([float(pull), float(push)], [ref_pull, ref_push], rtol=1e-5)


def test_large_common_offset_keeps_float32_precision():
    # Pre-BN features are all positive with a large common part; distances must not suffer.
    features, labels = block_batch(4, offset=50.0)
    pull, push = center_cluster_terms(features, labels, 4)
    ref_pull, ref_push = np_center_cluster(features, labels, 4)
    np.testing.assert_allclose(float(pull), ref_pull, rtol=1e-4)
    np.testing.assert_allclose(float(push), ref_push, rtol=1e-4, atol=1e-5)


def test_anchor_rows_are_every_k_th_row():
    # Non-uniform blocks: 3 rows of id 0, 1 row of id 1, then 2+2; anchors at rows 0 and 2 (k=2)
    # are ids 0 and 0, so id 1 is never an anchor although its centre is close to others.
    rng = np.random.default_rng(5)
    labels = np.array([0, 0, 0, 1, 2, 2, 3, 3])
    features = (0.1 * rng.normal(size=(8, 6))).astype(np.float32)
    pull, push = center_cluster_terms(features, labels, k_size=2)
    ref_pull, ref_push = np_center_cluster(features, labels, 2)
    np.testing.assert_allclose([float(pull), float(push)], [ref_pull, ref_push], rtol=1e-5)
    _, push_k4 = center_cluster_terms(features, labels, k_size=4)
    np.testing.assert_allclose(float(push_k4), np_center_cluster(features, labels, 4)[1], rtol=1e-5)


def test_single_image_identity_has_zero_pull_and_finite_gradient():
    rng = np.random.default_rng(6)
    labels = np.array([0, 0, 0, 7])  # identity 7 has one image: its distance to its centre is 0
    features = rng.normal(size=(4, 5)).astype(np.float32)
    pull, _ = center_cluster_terms(features, labels, k_size=2)
    own = features[:3] - features[:3].mean(axis=0)
    np.testing.assert_allclose(float(pull), np.linalg.norm(own, axis=1).sum() / 4, rtol=1e-5)
    loss, grad = gradient(features, labels, 2)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))


def test_duplicate_features_give_zero_pull_and_finite_gradient():
    # Every identity's images are identical: all pull distances are exactly 0 (sqrt(0), no eps).
    rng = np.random.default_rng(7)
    labels = np.repeat([0, 1, 2], 4)
    features = np.repeat(rng.normal(size=(3, 6)), 4, axis=0).astype(np.float32)
    pull, push = center_cluster_terms(features, labels, 4)
    assert float(pull) == 0.0
    np.testing.assert_allclose(float(push), np_center_cluster(features, labels, 4)[1], atol=1e-6)
    _, grad = gradient(features, labels, 4)
    assert np.all(np.isfinite(grad))


def test_coincident_centres_push_margin_with_finite_gradient():
    # Two identities with the same images: their centres coincide, d = sqrt(1e-12) = 1e-6.
    rng = np.random.default_rng(8)
    block = rng.normal(size=(2, 6)).astype(np.float32)
    features = np.concatenate([block, block])
    labels = np.array([3, 3, 9, 9])
    _, push = center_cluster_terms(features, labels, k_size=2, margin=0.7)
    np.testing.assert_allclose(float(push), 0.7 - 1e-6, atol=1e-5)
    _, grad = gradient(features, labels, 2)
    assert np.all(np.isfinite(grad))


def test_single_identity_batch_has_zero_push():
    rng = np.random.default_rng(9)
    features = rng.normal(size=(4, 3)).astype(np.float32)
    labels = np.zeros(4, np.int64)
    pull, push = center_cluster_terms(features, labels, 2)
    assert float(push) == 0.0
    np.testing.assert_allclose(float(pull), np_center_cluster(features, labels, 2)[0], rtol=1e-5)
    _, grad = gradient(features, labels, 2)
    assert np.all(np.isfinite(grad))


def test_gradient_matches_finite_differences():
    features, labels = block_batch(10, ids=2, k=2, dim=3, scale=0.2)
    _, grad = gradient(features, labels, 2)
    f64 = features.astype(np.float64)
    step = 1e-6
    numeric = np.zeros_like(f64)
    for idx in np.ndindex(*f64.shape):
        plus, minus = f64.copy(), f64.copy()
        plus[idx] += step
        minus[idx] -= step
        numeric[idx] = (sum(np_center_cluster(plus, labels, 2)) - sum(np_center_cluster(minus, labels, 2))) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_features_give_float32_loss(dtype):
    features, labels = block_batch(11)
    low = tf.cast(features, dtype)
    value = center_cluster_loss(low, labels, 4)
    assert value.dtype == tf.float32
    rounded = tf.cast(low, tf.float32).numpy()
    np.testing.assert_allclose(float(value), sum(np_center_cluster(rounded, labels, 4)), rtol=1e-5)


def test_compiles_with_xla_and_unknown_batch():
    fn = tf.function(
        lambda f, y: center_cluster_loss(f, y, 4),
        input_signature=[tf.TensorSpec((None, 8), tf.float32), tf.TensorSpec((None,), tf.int32)],
        jit_compile=True,
    )
    features, labels = block_batch(12)
    np.testing.assert_allclose(
        float(fn(features, labels.astype(np.int32))), sum(np_center_cluster(features, labels, 4)), rtol=1e-5
    )


def test_rejects_bad_k_size():
    with pytest.raises(ValueError, match="k_size"):
        center_cluster_loss(np.zeros((2, 3), np.float32), np.array([0, 1]), 0)
