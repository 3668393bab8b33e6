"""PAM (paper Eq. 4-6) against an independent numpy implementation."""

import keras
import numpy as np

from mpanet_tf.layers.pattern_alignment import PatternAlignment
from tests import numpy_reference as ref


def test_pam_matches_numpy_reference_plain_mean_pooling():
    rng = np.random.default_rng(0)
    layer = PatternAlignment(num_parts=3)
    layer.build((None, 4, 2, 16))
    weight = rng.normal(size=(3, 16, 1, 1))
    bias = rng.normal(size=(3,))
    layer.mask_conv.kernel.assign(np.transpose(weight, (2, 3, 1, 0)))
    layer.mask_conv.bias.assign(bias)
    features = np.abs(rng.normal(size=(2, 16, 4, 2)))
    expected, expected_masks = ref.pam(features, weight, bias)
    got, masks = layer(ref.to_nhwc(features).astype("float32"))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(masks), ref.to_nhwc(expected_masks), rtol=1e-5, atol=1e-6)
    # Order: parts first, global last; the global part is the plain spatial mean.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got)[:, -16:], features.mean(axis=(2, 3)), rtol=1e-5)


def test_default_dimension_and_init():
    layer = PatternAlignment()
    features, masks = layer(np.ones((1, 24, 8, 2048), "float32"))
    assert features.shape == (1, 14336) and masks.shape == (1, 24, 8, 6)
    kernel = keras.ops.convert_to_numpy(layer.mask_conv.kernel)
    bound = 1 / np.sqrt(2048)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
    assert np.all(keras.ops.convert_to_numpy(layer.mask_conv.bias) == 0)


def test_config_round_trip():
    clone = PatternAlignment.from_config(PatternAlignment(num_parts=4).get_config())
    assert clone.num_parts == 4
