"""Inference-only MPANet graph with the backbone's BatchNorms folded into its convolutions.

At test time a BatchNorm is a fixed per-channel affine map, so a bias-free conv followed by it is
one conv with a bias (facts §1.1: every backbone conv is followed by a BN, eps 1e-5):

    s = gamma / sqrt(moving_var + eps)                       (C_out,)
    W' = W * s   (per output channel)                        (k, k, C_in, C_out)
    b' = beta - moving_mean * s                              (C_out,)

Conv2D + BiasAdd (+ ReLU, + Add) is the pattern TensorFlow's grappler remapper fuses into one
oneDNN convolution, while the unfolded graph runs every BN as separate element-wise passes over
the feature map. PyTorch's explicit symmetric padding (``resnet.conv2d``) is merged into the conv
where Keras ``padding="same"`` is exactly the same: odd kernels at stride 1 (pad k//2 on every
side); the strided convs and the stem keep their explicit ``ZeroPadding2D``.

MAM (facts §1.2), PAM (§1.3) and the BN neck are copied unchanged, so the folded graph computes
``model(images, training=False)`` (the BN-neck output, §1.5) up to float rounding. The folded
model is a **snapshot** of the weights: rebuild it after the weights change (training, loading).

Shapes: images (B, H, W, 3) float32 RGB in [0, 255] -> embeddings (B, D) float32, D = 14336 with
PAM.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mpanet_tf.data.images import normalize_images
from mpanet_tf.layers import resnet
from mpanet_tf.layers.modality_alleviation import ModalityAlleviation
from mpanet_tf.layers.pattern_alignment import PatternAlignment


def folded_conv_weights(conv, bn):
    """(kernel (k, k, C_in, C_out), bias (C_out,)) float64 of ``bn(conv(x))`` in inference mode.

    ``conv`` is a bias-free ``keras.layers.Conv2D``, ``bn`` a ``keras.layers.BatchNormalization``
    over its output channels (gamma/beta default to 1/0 when the BN has no scale/centre).
    """
    kernel = np.asarray(conv.kernel, dtype=np.float64)
    mean = np.asarray(bn.moving_mean, dtype=np.float64)
    var = np.asarray(bn.moving_variance, dtype=np.float64)
    gamma = np.asarray(bn.gamma, dtype=np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, dtype=np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + bn.epsilon)
    bias = beta - mean * scale
    if conv.use_bias:
        bias = bias + np.asarray(conv.bias, dtype=np.float64) * scale
    return kernel * scale, bias


class _Folder:
    """Rebuilds ``build_resnet50``'s graph from a trained backbone, one folded conv at a time."""

    def __init__(self, backbone, dtype):
        self.backbone = backbone
        self.dtype = dtype
        self.convs = []  # (new Conv2D layer, kernel, bias): weights are set once the layer is built

    def conv_bn(self, x, conv_name, bn_name):
        """The trained ``conv_name`` conv followed by ``bn_name`` as one conv with bias."""
        conv = self.backbone.get_layer(conv_name)
        kernel, bias = folded_conv_weights(conv, self.backbone.get_layer(bn_name))
        size, stride = conv.kernel_size[0], conv.strides[0]
        pad = size // 2
        same = pad > 0 and stride == 1 and size % 2 == 1 and conv.kernel_size[1] == size
        if pad and not same:
            x = keras.layers.ZeroPadding2D(pad, name=f"{conv_name}_pad", dtype=self.dtype)(x)
        layer = keras.layers.Conv2D(
            conv.filters, conv.kernel_size, strides=conv.strides, padding="same" if same else "valid",
            use_bias=True, name=conv_name, dtype=self.dtype,
        )
        x = layer(x)
        self.convs.append((layer, kernel, bias))
        return x

    def relu(self, x, name):
        return keras.layers.ReLU(name=name, dtype=self.dtype)(x)

    def bottleneck(self, x, name, downsample):
        y = self.relu(self.conv_bn(x, f"{name}_conv1", f"{name}_bn1"), f"{name}_relu1")
        y = self.relu(self.conv_bn(y, f"{name}_conv2", f"{name}_bn2"), f"{name}_relu2")
        y = self.conv_bn(y, f"{name}_conv3", f"{name}_bn3")
        shortcut = x
        if downsample:
            shortcut = self.conv_bn(x, f"{name}_downsample_0", f"{name}_downsample_1")
        y = keras.layers.Add(name=f"{name}_add", dtype=self.dtype)([y, shortcut])
        return self.relu(y, f"{name}_out")

    def stage(self, x, index):
        for block in range(resnet.BLOCKS_PER_STAGE[index - 1]):
            x = self.bottleneck(x, f"layer{index}_{block}", downsample=block == 0)
        return x

    def set_weights(self):
        for layer, kernel, bias in self.convs:
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])


class _NormalizeImages(keras.layers.Layer):
    """ImageNet normalisation inside ``call``, so its constants are created in the traced graph
    (an op on the symbolic input would capture them as eager tensors: extra ONNX inputs)."""

    def call(self, images):
        return normalize_images(ops.cast(images, self.compute_dtype))


def _copy_layer(layer, cls, input_shape, dtype, **overrides):
    """A new ``cls`` layer with ``layer``'s config (and ``overrides``), a snapshot of its weights."""
    config = {**layer.get_config(), "dtype": dtype, **overrides}
    twin = cls.from_config(config)
    twin.build(input_shape)
    twin.set_weights(layer.get_weights())
    return twin


def _maybe_layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def fold_batch_norms(model, dtype="float32") -> keras.Model:
    """Inference-only functional model of an MPANet with the backbone BNs folded into the convs.

    Args:
        model: a built :class:`~mpanet_tf.model.MPANet` (any config: last stride, MAM count and
            variant, with or without PAM).
        dtype: dtype policy of the folded graph (``"float32"``; ``"mixed_bfloat16"`` runs the
            convolutions in bfloat16 -- faster on AVX-512 BF16 CPUs, not bit-faithful).

    Returns:
        ``keras.Model``: images (B, H, W, 3) float32 in [0, 255] -> embeddings (B, D) float32,
        equal to ``model(images, training=False)`` up to float rounding. A snapshot: it does not
        follow later changes of ``model``'s weights.
    """
    backbone = model.backbone
    folder = _Folder(backbone, dtype)
    inputs = keras.Input(shape=(*model.image_size, 3), name="images", dtype="float32")
    x = _NormalizeImages(name="normalize", dtype=dtype)(inputs)
    x = folder.relu(folder.conv_bn(x, "conv1", "bn1"), "relu")
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool", dtype=dtype)(x)
    for index in (1, 2, 3, 4):
        x = folder.stage(x, index)
        mam = _maybe_layer(backbone, f"MAM{index}")
        if mam is not None:
            x = _copy_layer(mam, ModalityAlleviation, x.shape, dtype)(x)
    if model.pam is not None:
        features, _ = _copy_layer(model.pam, PatternAlignment, x.shape, dtype)(x)
    else:
        features = ops.mean(x, axis=(1, 2))
    bn_neck = _copy_layer(model.bn_neck, keras.layers.BatchNormalization, features.shape, dtype,
                          synchronized=False)
    outputs = ops.cast(bn_neck(features, training=False), "float32")
    folder.set_weights()
    return keras.Model(inputs, outputs, name="mpanet_folded")


def embedding_function(model, folded: bool = True, jit: bool = False):
    """``embed(images (N, H, W, 3) float32 in [0, 255]) -> (N, D) float32 numpy``, one traced graph.

    A ``tf.function`` with a fixed input signature (batch free, size fixed) around the folded model
    (``folded=True``) or ``model(images, training=False)``; unlike ``predict_on_batch`` it never
    retraces and skips Keras' per-call data-adapter work.
    """
    import tensorflow as tf

    network = fold_batch_norms(model) if folded else model
    height, width = (int(s) for s in model.image_size)
    spec = tf.TensorSpec([None, height, width, 3], tf.float32, name="images")

    @tf.function(input_signature=[spec], jit_compile=bool(jit), autograph=False)
    def embed(images):
        return tf.cast(network(images, training=False), tf.float32)

    def call(images):
        return embed(tf.convert_to_tensor(np.asarray(images, dtype=np.float32))).numpy()

    call.network = network
    return call
