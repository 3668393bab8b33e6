"""MAM (paper Eq. 1-3) against an independent numpy implementation in PyTorch layout."""

import keras
import numpy as np
import pytest

from mpanet_tf.layers.modality_alleviation import ModalityAlleviation
from tests import numpy_reference as ref


def _mam_with_torch_weights(rng, channels=32, reduction=4, variant="mam"):
    layer = ModalityAlleviation(reduction=reduction, variant=variant)
    layer.build((None, 5, 3, channels))
    w_squeeze = rng.normal(size=(channels // reduction, channels, 1, 1)) * 0.3
    w_excite = rng.normal(size=(channels, channels // reduction, 1, 1)) * 0.3
    layer.squeeze.kernel.assign(np.transpose(w_squeeze, (2, 3, 1, 0)))
    layer.excite.kernel.assign(np.transpose(w_excite, (2, 3, 1, 0)))
    return layer, w_squeeze, w_excite


def test_mam_matches_numpy_reference():
    rng = np.random.default_rng(0)
    layer, w_s, w_e = _mam_with_torch_weights(rng)
    x = rng.normal(size=(3, 32, 5, 3)) * 2 + 1  # NCHW
    expected = ref.mam(x, w_s, w_e)
    got = keras.ops.convert_to_numpy(layer(ref.to_nhwc(x).astype("float32")))
    np.testing.assert_allclose(got, ref.to_nhwc(expected), rtol=1e-4, atol=1e-5)


def test_mam_is_per_sample_and_same_in_training_and_inference():
    rng = np.random.default_rng(1)
    layer, _, _ = _mam_with_torch_weights(rng)
    x = rng.normal(size=(4, 5, 3, 32)).astype("float32")
    whole = keras.ops.convert_to_numpy(layer(x, training=True))
    single = keras.ops.convert_to_numpy(layer(x[1:2], training=False))
    np.testing.assert_allclose(whole[1:2], single, rtol=1e-5, atol=1e-6)


def test_variants_in_and_se():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 32, 5, 3))
    layer, w_s, w_e = _mam_with_torch_weights(rng, variant="in")
    got = keras.ops.convert_to_numpy(layer(ref.to_nhwc(x).astype("float32")))
    np.testing.assert_allclose(got, ref.to_nhwc(ref.instance_norm(x)), rtol=1e-4, atol=1e-5)
    layer, w_s, w_e = _mam_with_torch_weights(rng, variant="se")
    gate = ref.sigmoid(np.maximum(x.mean(axis=(2, 3)) @ w_s[:, :, 0, 0].T, 0) @ w_e[:, :, 0, 0].T)
    got = keras.ops.convert_to_numpy(layer(ref.to_nhwc(x).astype("float32")))
    np.testing.assert_allclose(got, ref.to_nhwc(gate[:, :, None, None] * x), rtol=1e-4, atol=1e-5)


def test_no_biases_and_reduction_16_weights():
    layer = ModalityAlleviation()
    layer.build((None, 24, 8, 1024))
    shapes = sorted(tuple(w.shape) for w in layer.weights)
    assert shapes == [(1, 1, 64, 1024), (1, 1, 1024, 64)]


def test_config_round_trip_and_validation():
    layer = ModalityAlleviation(reduction=8, variant="se", epsilon=1e-3)
    clone = ModalityAlleviation.from_config(layer.get_config())
    assert (clone.reduction, clone.variant, clone.epsilon) == (8, "se", 1e-3)
    with pytest.raises(ValueError, match="variant"):
        ModalityAlleviation(variant="bogus")
    with pytest.raises(ValueError, match="reduction"):
        ModalityAlleviation(reduction=0)
