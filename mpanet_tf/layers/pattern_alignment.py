"""Pattern Alignment Module (PAM), paper Eq. 4-6, design.md §1.3.

    M   = sigmoid(Conv1x1_with_bias(F))                  (B, h, w, p)   p = num_parts = 6
    P_i = mean_{h,w}(M_i * F)                            (B, C)         plain mean over h*w,
                                                                        NOT divided by sum(M_i)
    g   = mean_{h,w}(F)                                  (B, C)
    out = [P_1, ..., P_p, g]                             (B, (p + 1) * C) = (B, 14336) for C = 2048

The mask conv keeps PyTorch's default Conv2d init (U(+-1/sqrt(C))) with its bias set to 0; its
weights map to the authors' ``spatial_attention.{weight,bias}``. Nothing is L2-normalised here.
The maps are returned too, for the separation loss (design.md §2.2) and for visualisation.
"""

from __future__ import annotations

import keras
from keras import ops

from mpanet_tf.layers.initializers import torch_default_uniform


@keras.saving.register_keras_serializable(package="mpanet_tf")
class PatternAlignment(keras.layers.Layer):
    """PAM: p sigmoid pattern maps pool p part vectors; concatenated with the global vector.

    Args:
        num_parts: number of pattern maps p (6).

    Shapes: F (B, h, w, C) -> (features (B, (p + 1) * C), masks (B, h, w, p)).

    Example:
        >>> pam = PatternAlignment(num_parts=6)
        >>> features, masks = pam(keras.random.uniform((2, 24, 8, 2048)))
        >>> features.shape, masks.shape
        ((2, 14336), (2, 24, 8, 6))
    """

    def __init__(self, num_parts=6, **kwargs):
        super().__init__(**kwargs)
        if int(num_parts) < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts}")
        self.num_parts = int(num_parts)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.mask_conv = keras.layers.Conv2D(
            self.num_parts, 1, use_bias=True, kernel_initializer=torch_default_uniform(),
            bias_initializer="zeros", name="spatial_attention", dtype=self.dtype_policy,
        )
        self.mask_conv.build((None, None, None, channels))
        self.built = True

    def call(self, features):
        masks = ops.sigmoid(self.mask_conv(features))                    # (B, h, w, p)
        batch = ops.shape(features)[0]
        channels = features.shape[-1]
        area = ops.cast(ops.shape(features)[1] * ops.shape(features)[2], features.dtype)
        parts = ops.einsum("bhwp,bhwc->bpc", masks, features) / area    # (B, p, C)
        parts = ops.reshape(parts, (batch, self.num_parts * channels))
        global_feature = ops.mean(features, axis=(1, 2))                 # (B, C)
        return ops.concatenate([parts, global_feature], axis=-1), masks

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, (self.num_parts + 1) * channels), (batch, height, width, self.num_parts)

    def get_config(self):
        config = super().get_config()
        config.update({"num_parts": self.num_parts})
        return config
