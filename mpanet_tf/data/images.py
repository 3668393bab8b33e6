"""The one image-loading path shared by training, evaluation, export and search.

Images are decoded to 3 channels (a grey infrared image is replicated, facts §3.3), resized to the
network size with bilinear interpolation ignoring the aspect ratio (antialiased, as PIL's bilinear
resize of the authors' pipeline), and handed to the model as float32 RGB in [0, 255]. ImageNet
normalisation happens inside the model (:func:`normalize_images`), so every consumer feeds the same
kind of tensor.
"""

from __future__ import annotations

import os

import numpy as np

from mpanet_tf.errors import BadImageError

#: The reason given for a file whose bytes do not decode (TensorFlow's own message names its
#: kernel and device, not the problem).
UNDECODABLE = "truncated or not an image"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The ImageNet mean colour in [0, 255]: the value that is 0 after normalisation.
MEAN_PIXEL = tuple(255.0 * m for m in IMAGENET_MEAN)


def normalize_images(images):
    """ImageNet normalisation with ``keras.ops``: (B, H, W, 3) float in [0, 255] -> same shape."""
    from keras import ops

    mean = ops.convert_to_tensor(np.array(IMAGENET_MEAN, "float32") * 255.0, dtype=images.dtype)
    std = ops.convert_to_tensor(np.array(IMAGENET_STD, "float32") * 255.0, dtype=images.dtype)
    return (images - mean) / std


def decode_image_tensor(data):
    """tf string scalar (JPEG/PNG/BMP/GIF bytes) -> uint8 (H, W, 3). Graph-safe."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image_tensor(image, size):
    """uint8 or float (H, W, 3) or (B, H, W, 3) -> float32 at ``size`` = (h, w), whole values in
    [0, 255].

    Rounded to whole grey levels because the authors' PIL resize returns uint8 before
    ``ToTensor`` (facts §3.3); this also makes the decoded path equal the uint8 cache.
    """
    import tensorflow as tf

    image = tf.cast(image, tf.float32)
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return tf.round(tf.clip_by_value(resized, 0.0, 255.0))


def load_image(path, size) -> np.ndarray:
    """Read one image file -> float32 (h, w, 3) in [0, 255] at ``size`` = (h, w).

    Raises:
        BadImageError: the file is missing, truncated or not an image.
    """
    import tensorflow as tf

    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise BadImageError(path, error.strerror or str(error)) from None
    try:
        image = decode_image_tensor(tf.constant(data))
        return resize_image_tensor(image, size).numpy()
    except (tf.errors.InvalidArgumentError, ValueError):
        # TensorFlow's message names its kernel and device, not the file: say what it means.
        raise BadImageError(path, UNDECODABLE) from None


def check_image(path) -> str | None:
    """None if ``path`` decodes as an image, else a short reason. Used by ``dataset-info --verify``."""
    try:
        load_image(path, (8, 8))
    except BadImageError as error:
        return str(error)
    return None
