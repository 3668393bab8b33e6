"""Independent numpy implementations, in PyTorch's NCHW layout and conventions, of the pieces of
MPANet: convolution with PyTorch padding, BatchNorm in inference and training mode, instance norm, the MAM, the
PAM pooling and a torchvision Bottleneck. Tests compare our Keras layers against these, feeding
both the same PyTorch-layout weights. Nothing here imports our Keras code.
"""

from __future__ import annotations

import numpy as np


def conv2d_nchw(x, weight, stride=1, padding=0, bias=None):
    """PyTorch Conv2d: x (B, C, H, W), weight (O, C, kh, kw), symmetric zero padding."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    batch, _, height, width = x.shape
    out_c, _, kh, kw = weight.shape
    out_h = (height - kh) // stride + 1
    out_w = (width - kw) // stride + 1
    out = np.zeros((batch, out_c, out_h, out_w), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + stride * out_h:stride, j:j + stride * out_w:stride]
            out += np.einsum("bchw,oc->bohw", patch, weight[:, :, i, j])
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def batch_norm_inference(x, gamma, beta, mean, var, eps=1e-5):
    """PyTorch BatchNorm (eval mode) over channel axis 1 of (B, C, ...)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


def batch_norm_train(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5):
    """PyTorch BatchNorm1d/2d in training mode over channel axis 1 of (B, C, ...).

    Normalises with the biased batch variance and updates ``running_var`` with the unbiased one
    (n / (n - 1), n = values per channel), ``running = (1 - momentum) * running + momentum * batch``
    (torch/nn/modules/batchnorm.py, ``F.batch_norm``). Returns (y, new_running_mean, new_running_var).
    """
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    return y, new_mean, new_var


def batch_norm_train_backward(x, gamma, dy, eps=1e-5):
    """Gradients (dx, dgamma, dbeta) of training-mode BatchNorm (batch statistics) over axis 1."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    x_hat = (x - mean) * inv_std
    dgamma = (dy * x_hat).sum(axis=axes)
    dbeta = dy.sum(axis=axes)
    dx = gamma.reshape(shape) * inv_std * (dy - dy.mean(axis=axes, keepdims=True)
                                          - x_hat * (dy * x_hat).mean(axis=axes, keepdims=True))
    return dx, dgamma, dbeta


def instance_norm(x, eps=1e-5):
    """InstanceNorm2d(affine=False): per sample and channel over H, W, biased variance."""
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def mam(x, w_squeeze, w_excite, eps=1e-5):
    """MAM (design.md §1.2): x (B, C, H, W), w_squeeze (C/r, C, 1, 1), w_excite (C, C/r, 1, 1)."""
    pooled = x.mean(axis=(2, 3))
    hidden = np.maximum(pooled @ w_squeeze[:, :, 0, 0].T, 0.0)
    gate = sigmoid(hidden @ w_excite[:, :, 0, 0].T)[:, :, None, None]
    return gate * x + (1.0 - gate) * instance_norm(x, eps)


def pam(features, weight, bias):
    """PAM (design.md §1.3): features (B, C, h, w), weight (p, C, 1, 1), bias (p,) ->
    (B, (p+1)*C) = [parts..., global], masks (B, p, h, w)."""
    masks = sigmoid(conv2d_nchw(features, weight, bias=bias))
    batch, channels, height, width = features.shape
    parts = [(masks[:, i:i + 1] * features).sum(axis=(2, 3)) / (height * width) for i in range(weight.shape[0])]
    return np.concatenate(parts + [features.mean(axis=(2, 3))], axis=1), masks


def bottleneck(x, weights, prefix, stride, downsample):
    """torchvision Bottleneck in eval mode from a state dict ``weights`` (keys under ``prefix``)."""
    def bn(y, name):
        return batch_norm_inference(y, weights[f"{name}.weight"], weights[f"{name}.bias"],
                                    weights[f"{name}.running_mean"], weights[f"{name}.running_var"])
    y = np.maximum(bn(conv2d_nchw(x, weights[f"{prefix}.conv1.weight"]), f"{prefix}.bn1"), 0)
    y = np.maximum(bn(conv2d_nchw(y, weights[f"{prefix}.conv2.weight"], stride, 1), f"{prefix}.bn2"), 0)
    y = bn(conv2d_nchw(y, weights[f"{prefix}.conv3.weight"]), f"{prefix}.bn3")
    shortcut = x
    if downsample:
        shortcut = bn(conv2d_nchw(x, weights[f"{prefix}.downsample.0.weight"], stride), f"{prefix}.downsample.1")
    return np.maximum(y + shortcut, 0)


def to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def to_nchw(x):
    return np.transpose(x, (0, 3, 1, 2))
