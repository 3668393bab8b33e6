"""BatchNorm with PyTorch's running-variance convention, fused on TensorFlow (design.md §1.1, §3.1).

PyTorch's ``BatchNorm1d/2d`` in training mode normalise with the *biased* batch variance but
update ``running_var`` with the *unbiased* one (Bessel's correction n/(n-1)), momentum 0.1:

    y            = gamma * (x - mean_B) / sqrt(var_B + eps) + beta           var_B biased
    running_mean = 0.9 * running_mean + 0.1 * mean_B
    running_var  = 0.9 * running_var  + 0.1 * var_B * n / (n - 1)

with n = B*H*W values per channel for ``BatchNorm2d`` and n = B for ``BatchNorm1d``. Keras 3's
``BatchNormalization`` updates its moving variance with the biased ``var_B``: 1/(n-1) smaller per
update (0.8 % at the authors' neck batch of 128), which shows when an imported checkpoint of the
authors is fine-tuned or statistics are compared with PyTorch's.

:class:`TorchBatchNorm` is ``keras.layers.BatchNormalization`` with that update rule; weights
(``gamma, beta, moving_mean, moving_variance``), names and config are unchanged, so checkpoints,
the ``.pth`` key mapping and BN folding treat it as the Keras layer. In training mode on the
TensorFlow backend, 4-D channels-last inputs go through TensorFlow's fused batch norm
(``FusedBatchNormV3``, oneDNN's kernel on CPU, cuDNN's on GPU): one op forward and one backward
instead of Keras' moments + element-wise graph, and its running-average output already applies
the n/(n-1) correction. Other inputs (the 2-D BN neck, ``synchronized=True``, masks) use the
moments path with the correction applied explicitly. Inference mode is Keras' own.

Shapes: any (..., C) -> same shape.
"""

from __future__ import annotations

import keras
from keras import ops

FUSED_DTYPES = ("float32", "float16", "bfloat16")


def _replica_count_sum(count):
    """``count`` summed over the replicas of a synchronised step (the global batch's n)."""
    import tensorflow as tf  # deferred: TensorFlow-only path; the layer runs on any Keras backend

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return count
    return context.all_reduce("sum", count)


@keras.saving.register_keras_serializable(package="mpanet_tf")
class TorchBatchNorm(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose moving variance follows PyTorch's update rule.

    Takes the arguments of ``keras.layers.BatchNormalization`` (PyTorch's defaults are
    ``epsilon=1e-5, momentum=0.9``; ``renorm`` is not supported). Training mode normalises with
    the biased batch variance and updates ``moving_variance`` with the unbiased one (n/(n-1),
    n = the number of values per channel, summed over replicas when ``synchronized``).

    Shapes: (..., C) -> same shape and compute dtype; statistics in float32.

    Example:
        >>> bn = TorchBatchNorm(epsilon=1e-5, momentum=0.9)
        >>> bn(keras.random.normal((4, 6, 5, 8)), training=True).shape
        (4, 6, 5, 8)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.renorm:
            raise ValueError("TorchBatchNorm does not support renorm=True (PyTorch has no batch renormalisation)")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        if self._fusable(inputs):
            return self._fused_training_call(inputs)
        return self._moments_training_call(inputs)

    # ------------------------------------------------------------------ training
    def _fusable(self, inputs):
        return (keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                and self.axis in (3, -1) and not self.synchronized
                and keras.backend.standardize_dtype(inputs.dtype) in FUSED_DTYPES)

    def _affine(self):
        channels = self.moving_mean.shape[0]
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,), "float32")
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,), "float32")
        return gamma, beta

    def _fused_training_call(self, inputs):
        """One ``FusedBatchNormV3`` (B, H, W, C): output, and the running averages it computes
        with ``exponential_avg_factor = 1 - momentum`` from the unbiased batch variance."""
        import tensorflow as tf  # deferred: TensorFlow-only path (fused kernel); the layer runs on any Keras backend

        gamma, beta = self._affine()
        outputs, moving_mean, moving_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=gamma, offset=beta,
            mean=ops.cast(self.moving_mean, "float32"), variance=ops.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum, data_format="NHWC",
            is_training=True,
        )
        self.moving_mean.assign(ops.cast(moving_mean, self.moving_mean.dtype))
        self.moving_variance.assign(ops.cast(moving_variance, self.moving_variance.dtype))
        return ops.cast(outputs, self.compute_dtype)

    def _moments_training_call(self, inputs):
        """Keras' moments path with the running variance Bessel-corrected: (..., C) -> same."""
        inputs = ops.cast(inputs, "float32")
        mean, variance = self._moments(inputs, None)
        shape = ops.shape(inputs)
        count = ops.cast(1.0, "float32")
        for axis in self._reduction_axes:
            count = count * ops.cast(shape[axis], "float32")
        if self.synchronized:
            count = _replica_count_sum(count)
        unbiased = variance * (count / ops.maximum(count - 1.0, 1.0))
        momentum = self.momentum
        self.moving_mean.assign(ops.cast(self.moving_mean, "float32") * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(
            ops.cast(self.moving_variance, "float32") * momentum + unbiased * (1.0 - momentum))
        gamma, beta = self._affine()
        outputs = ops.batch_normalization(inputs, mean, variance, axis=self.axis, offset=beta, scale=gamma,
                                          epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
