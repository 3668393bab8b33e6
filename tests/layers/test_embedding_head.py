"""The head after the backbone (PAM or global pooling, then the BN neck) against numpy."""

import keras
import numpy as np

from mpanet_tf.layers.batch_norm import TorchBatchNorm
from mpanet_tf.layers.embedding_head import embedding_head
from mpanet_tf.layers.pattern_alignment import PatternAlignment


def _neck(channels, rng):
    neck = TorchBatchNorm(epsilon=1e-5, momentum=0.9, center=False)
    neck.build((None, channels))
    gamma, mean, var = rng.uniform(0.5, 1.5, channels), rng.normal(size=channels), rng.uniform(0.5, 2, channels)
    neck.set_weights([gamma, mean, var])
    return neck, (gamma, mean, var)


def test_global_pooling_head_without_pam():
    rng = np.random.default_rng(0)
    stage4 = rng.normal(size=(2, 3, 2, 8)).astype("float32")
    neck, (gamma, mean, var) = _neck(8, rng)
    features, bn_features, masks = embedding_head(stage4, None, neck)
    pooled = stage4.mean(axis=(1, 2))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features), pooled, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn_features), (pooled - mean) / np.sqrt(var + 1e-5) * gamma,
                               rtol=1e-5, atol=1e-5)
    assert masks is None


def test_pam_head_feeds_the_neck_with_parts_then_global():
    rng = np.random.default_rng(1)
    stage4 = np.abs(rng.normal(size=(2, 3, 2, 4))).astype("float32")
    pam = PatternAlignment(num_parts=2)
    neck, (gamma, mean, var) = _neck(12, rng)
    features, bn_features, masks = embedding_head(stage4, pam, neck)
    expected, expected_masks = (keras.ops.convert_to_numpy(t) for t in pam(stage4))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(features), expected, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(masks), expected_masks, rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn_features),
                               (expected - mean) / np.sqrt(var + 1e-5) * gamma, rtol=1e-5, atol=1e-5)
    assert features.shape == (2, 12) and masks.shape == (2, 3, 2, 2)
