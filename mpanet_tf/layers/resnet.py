"""torchvision-layout ("v1.5") ResNet-50 with a configurable last stride (design.md §1.1, §8.1, §10).

Not ``keras.applications.ResNet50`` (v1: stride on the first 1x1 conv, conv biases, BN eps
1.001e-5, BGR caffe preprocessing). Here, as in torchvision:

- Bottleneck blocks with the stride on the 3x3 conv, no conv biases, BatchNorm eps 1e-5 and
  momentum 0.1 (Keras momentum 0.9), running variance updated with the unbiased batch variance
  as PyTorch does (:mod:`mpanet_tf.layers.batch_norm`);
- explicit symmetric zero padding (PyTorch ``padding=k//2``) before every k>1 conv and before the
  stem max-pool, so stride-2 convs see the same windows as PyTorch (Keras ``"same"`` pads
  asymmetrically). The max-pool follows a ReLU, so zero padding equals PyTorch's -inf padding;
- ``last_stride`` sets the stride of layer4's first block on both the 3x3 conv and the 1x1
  downsample conv (1 = "drop last stride": output stride 16).

Layer names are the torchvision module paths with ``.`` replaced by ``_`` (``layer3_0_conv2``,
``layer3_0_downsample_0``), so every weight maps one to one to a ``.pth`` key.

Shapes: images (B, H, W, 3) already ImageNet-normalised -> layer3 (B, H/16, W/16, 1024) and
layer4 (B, H/16, W/16, 2048) with last stride 1 (H/32, W/32 with last stride 2).
"""

from __future__ import annotations

import keras

from mpanet_tf.layers.batch_norm import TorchBatchNorm
from mpanet_tf.layers.initializers import kaiming_normal_fan_out

BLOCKS_PER_STAGE = (3, 4, 6, 3)
PLANES_PER_STAGE = (64, 128, 256, 512)
EXPANSION = 4
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1


def conv2d(x, filters, kernel_size, stride, name, dtype=None):
    """Bias-free conv with PyTorch's symmetric padding k//2. (B, H, W, C) -> (B, H', W', filters)."""
    pad = kernel_size // 2
    if pad:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad", dtype=dtype)(x)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=stride, padding="valid", use_bias=False,
        kernel_initializer=kaiming_normal_fan_out(), name=name, dtype=dtype,
    )(x)


def batch_norm(x, name, dtype=None):
    """PyTorch BatchNorm2d: eps 1e-5, momentum 0.1, gamma 1, beta 0, PyTorch's running-variance
    update, fused in training (:class:`~mpanet_tf.layers.batch_norm.TorchBatchNorm`)."""
    return TorchBatchNorm(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, dtype=dtype
    )(x)


def bottleneck(x, planes, stride, downsample, name, dtype=None):
    """torchvision Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4), projection shortcut when asked.

    (B, H, W, C) -> (B, H/stride, W/stride, 4*planes).
    """
    shortcut = x
    y = conv2d(x, planes, 1, 1, f"{name}_conv1", dtype)
    y = keras.layers.ReLU(name=f"{name}_relu1", dtype=dtype)(batch_norm(y, f"{name}_bn1", dtype))
    y = conv2d(y, planes, 3, stride, f"{name}_conv2", dtype)
    y = keras.layers.ReLU(name=f"{name}_relu2", dtype=dtype)(batch_norm(y, f"{name}_bn2", dtype))
    y = conv2d(y, planes * EXPANSION, 1, 1, f"{name}_conv3", dtype)
    y = batch_norm(y, f"{name}_bn3", dtype)
    if downsample:
        shortcut = conv2d(x, planes * EXPANSION, 1, stride, f"{name}_downsample_0", dtype)
        shortcut = batch_norm(shortcut, f"{name}_downsample_1", dtype)
    y = keras.layers.Add(name=f"{name}_add", dtype=dtype)([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out", dtype=dtype)(y)


def stage(x, index, last_stride=2, dtype=None):
    """torchvision ``layer{index}``: its blocks, the first one projecting (and striding from layer2)."""
    planes = PLANES_PER_STAGE[index - 1]
    stride = 1 if index == 1 else (last_stride if index == 4 else 2)
    for block in range(BLOCKS_PER_STAGE[index - 1]):
        x = bottleneck(
            x, planes, stride if block == 0 else 1, downsample=block == 0,
            name=f"layer{index}_{block}", dtype=dtype,
        )
    return x


def resnet50_stages(images, last_stride=1, after_layer3=None, after_layer4=None, dtype=None):
    """The stem and the four stages applied to the symbolic ``images``: [layer3 output, layer4 output].

    Args:
        images: (B, H, W, 3) normalised images (a ``keras.Input``).
        last_stride: 1 (authors, "drop_last_stride") or 2 (torchvision).
        after_layer3, after_layer4: optional Keras layers applied to the stage outputs inside the
            backbone (MPANet puts its MAMs here, design.md §1.2), so layer4 sees MAM3's output.
        dtype: dtype policy for every layer.

    Returns:
        [(B, H/16, W/16, 1024), (B, H/16, W/16, 2048)] with last stride 1, each after its hook.
    """
    x = conv2d(images, 64, 7, 2, "conv1", dtype)
    x = keras.layers.ReLU(name="relu", dtype=dtype)(batch_norm(x, "bn1", dtype))
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool", dtype=dtype)(x)
    x = stage(x, 1, dtype=dtype)
    x = stage(x, 2, dtype=dtype)
    x = stage(x, 3, dtype=dtype)
    if after_layer3 is not None:
        x = after_layer3(x)
    out3 = x
    x = stage(x, 4, last_stride=last_stride, dtype=dtype)
    if after_layer4 is not None:
        x = after_layer4(x)
    return [out3, x]


def build_resnet50(last_stride=1, after_layer3=None, after_layer4=None, dtype=None, name="backbone"):
    """The plain ResNet-50 of :func:`resnet50_stages` as a functional Keras model:
    (B, H, W, 3) normalised images -> [layer3 output, layer4 output]. MPANet's backbone with its
    MAMs is :class:`mpanet_tf.backbone.MPANetBackbone`."""
    inputs = keras.Input(shape=(None, None, 3), name="images")
    return keras.Model(inputs, resnet50_stages(inputs, last_stride, after_layer3, after_layer4, dtype), name=name)
