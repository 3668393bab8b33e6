"""Shared and masked identity CE (design.md §2.1) against a float64 numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.losses import identity_loss, masked_identity_loss, per_sample_cross_entropy


def np_cross_entropy(logits, labels):
    """Row-wise -log softmax(logits)[label] in float64 (log-sum-exp form)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return log_z - shifted[np.arange(len(labels)), labels]


def random_batch(seed, batch=8, classes=5, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.normal(size=(batch, classes))).astype(np.float32)
    labels = rng.integers(0, classes, size=batch)
    return logits, labels


@pytest.mark.parametrize("seed", [0, 1])
def test_identity_loss_matches_numpy(seed):
    logits, labels = random_batch(seed)
    value = identity_loss(logits, labels)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(float(value), np_cross_entropy(logits, labels).mean(), rtol=1e-5)


def test_per_sample_cross_entropy_and_int64_labels():
    logits, labels = random_batch(2)
    rows = per_sample_cross_entropy(logits, labels.astype(np.int64))
    np.testing.assert_allclose(rows.numpy(), np_cross_entropy(logits, labels), rtol=1e-5)


def test_identity_loss_has_no_label_smoothing():
    # Uniform logits: CE = log C exactly; a confident correct row gives ~0 (smoothing would not).
    labels = np.array([0, 3])
    np.testing.assert_allclose(float(identity_loss(np.zeros((2, 4), np.float32), labels)), np.log(4.0), rtol=1e-6)
    confident = np.full((2, 4), -30.0, np.float32)
    confident[[0, 1], labels] = 30.0
    assert float(identity_loss(confident, labels)) < 1e-6


def test_identity_loss_gradient_is_softmax_minus_one_hot():
    logits, labels = random_batch(3)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = identity_loss(x, labels)
    grad = tape.gradient(loss, x).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected = (probs - np.eye(logits.shape[1])[labels]) / len(labels)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_masked_identity_loss_is_subset_mean():
    logits, labels = random_batch(4, batch=10)
    mask = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 0], bool)
    value = masked_identity_loss(logits, labels, mask)
    expected = np_cross_entropy(logits[mask], labels[mask]).mean()
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_masked_identity_loss_with_empty_mask_is_zero_with_zero_gradient():
    logits, labels = random_batch(5)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = masked_identity_loss(x, labels, np.zeros(len(labels), bool))
    grad = tape.gradient(loss, x).numpy()
    assert float(loss) == 0.0
    assert np.all(grad == 0.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_logits_give_float32_loss(dtype):
    logits, labels = random_batch(6)
    low = tf.cast(logits, dtype)
    value = identity_loss(low, labels)
    assert value.dtype == tf.float32
    rounded = tf.cast(low, tf.float32).numpy()
    np.testing.assert_allclose(float(value), np_cross_entropy(rounded, labels).mean(), rtol=1e-5)
    masked = masked_identity_loss(low, labels, labels % 2 == 0)
    assert masked.dtype == tf.float32


def test_traces_with_unknown_batch_size():
    fn = tf.function(
        lambda x, y, m: (identity_loss(x, y), masked_identity_loss(x, y, m)),
        input_signature=[
            tf.TensorSpec((None, 5), tf.float32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None,), tf.bool),
        ],
    )
    logits, labels = random_batch(7)
    mask = np.arange(len(labels)) % 3 == 0
    full, part = fn(logits, labels.astype(np.int32), mask)
    np.testing.assert_allclose(float(full), np_cross_entropy(logits, labels).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(part), np_cross_entropy(logits[mask], labels[mask]).mean(), rtol=1e-5)
