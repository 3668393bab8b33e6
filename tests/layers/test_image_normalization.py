"""ImageNet input normalisation against torchvision's ToTensor + Normalize written in numpy."""

import keras
import numpy as np

from mpanet_tf.layers.image_normalization import MEAN_PIXEL, ImageNormalization
from tests.helpers import run_layer_test, run_precision_test, run_serialization_test


def test_matches_to_tensor_then_normalize():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 6, 4, 3)).astype("float32")
    expected = (pixels / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    got = keras.ops.convert_to_numpy(ImageNormalization()(pixels))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The erase fill of the augmentation is the colour that becomes 0.
    zero = keras.ops.convert_to_numpy(ImageNormalization()(np.array(MEAN_PIXEL, "float32").reshape(1, 1, 1, 3)))
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)


def test_layer_contract():
    run_layer_test(ImageNormalization, {}, (2, 8, 4, 3), (2, 8, 4, 3), expected_num_trainable_weights=0,
                   expected_num_non_trainable_weights=0)
    run_serialization_test(ImageNormalization())
    run_precision_test(ImageNormalization, {}, (2, 8, 4, 3))
