"""ImageNet input normalisation inside the network (facts §1.5, the authors' test transform).

    out = (images - 255 * mean) / (255 * std)        (B, H, W, 3) -> (B, H, W, 3)

with torchvision's ImageNet ``mean = (0.485, 0.456, 0.406)`` and ``std = (0.229, 0.224, 0.225)``.
The authors apply ``ToTensor`` (x / 255) then ``Normalize(mean, std)``; we feed [0, 255] pixels
and fold the 1/255 into the constants, so every consumer (training, evaluation, the exports) hands
the model the same raw pixels (:mod:`mpanet_tf.data.images`).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The ImageNet mean colour in [0, 255]: the value that is 0 after normalisation.
MEAN_PIXEL = tuple(255.0 * m for m in IMAGENET_MEAN)


@keras.saving.register_keras_serializable(package="mpanet_tf")
class ImageNormalization(keras.layers.Layer):
    """ImageNet normalisation of [0, 255] RGB images, in the layer's compute dtype.

    The constants are created inside ``call``, so a traced graph holds them as constants (an op
    on a symbolic input outside a layer would capture them as eager tensors: extra ONNX inputs).

    Shapes: (B, H, W, 3) float in [0, 255] -> (B, H, W, 3) normalised.

    Example:
        >>> out = ImageNormalization()(np.full((1, 2, 2, 3), 127.0, "float32"))
        >>> tuple(out.shape)
        (1, 2, 2, 3)
    """

    def call(self, images):
        images = ops.cast(images, self.compute_dtype)
        mean = ops.convert_to_tensor(np.array(MEAN_PIXEL, "float32"), dtype=images.dtype)
        std = ops.convert_to_tensor(np.array(IMAGENET_STD, "float32") * 255.0, dtype=images.dtype)
        return (images - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape
