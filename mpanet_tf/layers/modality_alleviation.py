"""Modality Alleviation Module (MAM), paper Eq. 1-3, design.md §1.2.

    pooled = mean_{H,W}(x)                                   (B, 1, 1, C)
    m      = sigmoid(W2 * ReLU(W1 * pooled))                 (B, 1, 1, C), W1: C -> C/r, W2: C/r -> C
    out    = m * x + (1 - m) * IN(x)                         (B, H, W, C)

W1 and W2 are bias-free 1x1 convs (Kaiming-normal fan-out init, as every conv of the authors'
ResNet class). IN is PyTorch's ``InstanceNorm2d(C)`` defaults: no affine parameters, eps 1e-5,
biased variance per sample and channel over H x W, no running statistics -- so the module behaves
the same at training and at test time.

Variants for the paper's Table 4: ``"in"`` returns IN(x); ``"se"`` returns m * x.
Weight names follow the authors' ``MAM{3,4}.channel_attention.{0,2}`` convs.
"""

from __future__ import annotations

import keras
from keras import ops

from mpanet_tf.layers.initializers import kaiming_normal_fan_out

VARIANTS = ("mam", "in", "se")


def instance_norm(x, epsilon=1e-5):
    """Parameter-free instance normalisation over H, W. (B, H, W, C) -> same; stats in float32."""
    x32 = ops.cast(x, "float32")
    mean = ops.mean(x32, axis=(1, 2), keepdims=True)
    var = ops.mean(ops.square(x32 - mean), axis=(1, 2), keepdims=True)
    return ops.cast((x32 - mean) * ops.rsqrt(var + epsilon), x.dtype)


@keras.saving.register_keras_serializable(package="mpanet_tf")
class ModalityAlleviation(keras.layers.Layer):
    """MAM: an SE channel gate mixing a feature map with its instance-normalised self.

    Args:
        reduction: squeeze ratio r (16): hidden channels C // r.
        variant: ``"mam"`` (Eq. 3), ``"in"`` (plain IN) or ``"se"`` (plain SE gate).
        epsilon: instance-norm epsilon (1e-5).

    Shapes: (B, H, W, C) -> (B, H, W, C).

    Example:
        >>> mam = ModalityAlleviation(reduction=16)
        >>> mam(keras.random.normal((2, 24, 8, 1024))).shape
        (2, 24, 8, 1024)
    """

    def __init__(self, reduction=16, variant="mam", epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.reduction = int(reduction)
        self.variant = variant
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        hidden = max(1, channels // self.reduction)
        self.squeeze = keras.layers.Conv2D(
            hidden, 1, use_bias=False, kernel_initializer=kaiming_normal_fan_out(),
            name="channel_attention_0", dtype=self.dtype_policy,
        )
        self.excite = keras.layers.Conv2D(
            channels, 1, use_bias=False, kernel_initializer=kaiming_normal_fan_out(),
            name="channel_attention_2", dtype=self.dtype_policy,
        )
        self.squeeze.build((None, 1, 1, channels))
        self.excite.build((None, 1, 1, hidden))
        self.built = True

    def gate(self, x):
        """Channel gate m: (B, H, W, C) -> (B, 1, 1, C) in (0, 1)."""
        pooled = ops.mean(x, axis=(1, 2), keepdims=True)
        return ops.sigmoid(self.excite(ops.relu(self.squeeze(pooled))))

    def call(self, x):
        if self.variant == "in":
            return instance_norm(x, self.epsilon)
        m = self.gate(x)
        if self.variant == "se":
            return m * x
        return m * x + (1.0 - m) * instance_norm(x, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"reduction": self.reduction, "variant": self.variant, "epsilon": self.epsilon})
        return config
