"""The one test-time embedding function, and the BatchNorm-folded inference graph it can run.

**Embedding** (design.md §1.5): images (B, H, W, 3) float32 RGB in [0, 255] at the model's input size
-> the BN-neck output in inference mode, (B, D) float32, D = 14336 with PAM; no flip-averaging, no
L2 normalisation. :func:`embedding_function` is the only place that chooses the network that
computes it (the model itself or its BN-folded graph) and wraps it in the model's
:class:`~mpanet_tf.model.EmbeddingFunction` (the tracing, which ``MPANet.embed`` runs on the model
itself); the trainer's evaluation, the embedders of :mod:`mpanet_tf.runtimes`, the SavedModel
signatures and the ONNX conversion all call it (its :attr:`EmbeddingFunction.tensor` inside a
traced function, its :attr:`EmbeddingFunction.traced` ``tf.function``, or the numpy call).

**Folding.** At test time a BatchNorm is a fixed per-channel affine map, so a conv followed by it
is one conv with a bias (design.md §1.1: every backbone conv is followed by a BN, eps 1e-5):

    s = gamma / sqrt(moving_var + eps)                       (C_out,)
    W' = W * s   (per output channel)                        (k, k, C_in, C_out)
    b' = beta - moving_mean * s                              (C_out,)

Conv2D + BiasAdd (+ ReLU, + Add) is the pattern TensorFlow's grappler remapper fuses into one
oneDNN convolution, while the unfolded graph runs every BN as separate element-wise passes over
the feature map. :func:`fold_batch_norms` does not redefine the network: it replays the trained
backbone's own functional graph (:func:`mpanet_tf.layers.resnet.build_resnet50`) layer by layer,
replacing each Conv2D whose only consumer is a ``keras.layers.BatchNormalization`` (or a subclass)
by one folded conv, and copying every other layer (ReLU, Add, max-pool, the MAMs) with a snapshot
of its weights; the head after the backbone is
:func:`mpanet_tf.layers.embedding_head.embedding_head`, the function ``MPANet.forward`` runs, on
copies of the PAM and the BN neck, and the input normalisation the model's own
:class:`~mpanet_tf.layers.image_normalization.ImageNormalization`. PyTorch's explicit
symmetric padding (``resnet.conv2d``) is merged into the conv where Keras ``padding="same"`` is
exactly the same: odd square kernels at stride 1 (pad k//2 on every side); the strided convs and
the stem keep their explicit ``ZeroPadding2D``.

The folded graph computes ``model(images, training=False)`` up to float rounding, and is a
**snapshot** of the weights: rebuild it after the weights change (training, loading).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mpanet_tf.layers.embedding_head import embedding_head
from mpanet_tf.layers.image_normalization import ImageNormalization
from mpanet_tf.model import EmbeddingFunction


def folded_conv_weights(conv, bn):
    """(kernel (k, k, C_in, C_out), bias (C_out,)) float64 of ``bn(conv(x))`` in inference mode.

    ``conv`` is a ``keras.layers.Conv2D`` (with or without bias), ``bn`` a
    ``keras.layers.BatchNormalization`` (or a subclass) over its output channels; gamma/beta
    default to 1/0 when the BN has no scale/centre.
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


def _as_list(tensors):
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


def _is_same_padding(pad, conv) -> bool:
    """True when ``pad`` (a ZeroPadding2D) followed by a "valid" ``conv`` equals ``conv`` with
    Keras ``padding="same"``: stride 1, an odd square kernel, k//2 zeros on every side."""
    size = conv.kernel_size[0]
    return (conv.padding == "valid" and tuple(conv.strides) == (1, 1) and size % 2 == 1
            and tuple(conv.kernel_size) == (size, size) and tuple(conv.dilation_rate) == (1, 1)
            and tuple(map(tuple, pad.padding)) == ((size // 2, size // 2),) * 2)


def _copy_layer(layer, dtype, **overrides):
    """A new layer of ``layer``'s class and config (``dtype`` policy, ``overrides``), unbuilt."""
    return layer.__class__.from_config({**layer.get_config(), "dtype": dtype, **overrides})


class _Folding:
    """Replays a trained functional backbone on new symbolic inputs with its BNs folded.

    The plan comes from the graph itself (public ``layer.input`` / ``layer.output``): a Conv2D is
    folded into the BatchNormalization that is its only consumer; a ZeroPadding2D whose only
    consumer is such a conv is merged into it where ``"same"`` padding is equivalent.
    """

    def __init__(self, backbone, dtype):
        self.backbone = backbone
        self.dtype = dtype
        producers = {id(layer.output): layer for layer in backbone.layers}
        consumers = {}
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            for tensor in _as_list(layer.input):
                consumers.setdefault(producers[id(tensor)].name, []).append(layer)
        self.batch_norm_of = {}  # conv name -> the BN folded into it
        for layer in backbone.layers:
            following = consumers.get(layer.name, [])
            if (isinstance(layer, keras.layers.Conv2D) and len(following) == 1
                    and isinstance(following[0], keras.layers.BatchNormalization)
                    and following[0].axis in (-1, 3, [3], [-1])):
                self.batch_norm_of[layer.name] = following[0]
        self.folded_into = {bn.name for bn in self.batch_norm_of.values()}
        self.merged_pads = set()  # pads replaced by the conv's "same" padding
        self.same_convs = set()
        for layer in backbone.layers:
            following = consumers.get(layer.name, [])
            if (isinstance(layer, keras.layers.ZeroPadding2D) and len(following) == 1
                    and following[0].name in self.batch_norm_of and _is_same_padding(layer, following[0])):
                self.merged_pads.add(layer.name)
                self.same_convs.add(following[0].name)
        self.pending = []  # (new layer, weights): assigned once the new layers are built

    def layer_call(self, layer, inputs):
        """The replacement of ``layer`` applied to the new ``inputs`` (list of tensors)."""
        if layer.name in self.folded_into or layer.name in self.merged_pads:
            return inputs[0]  # the BN is inside the folded conv; the pad is its "same" padding
        if layer.name in self.batch_norm_of:
            twin = _copy_layer(layer, self.dtype, use_bias=True,
                               padding="same" if layer.name in self.same_convs else "valid")
            weights = [w.astype(np.float32) for w in folded_conv_weights(layer, self.batch_norm_of[layer.name])]
        else:
            twin, weights = _copy_layer(layer, self.dtype), layer.get_weights()
        self.pending.append((twin, weights))
        return twin(inputs if len(inputs) > 1 else inputs[0])

    def __call__(self, images):
        """The backbone's outputs (list) computed from the symbolic ``images``."""
        tensors = {id(self.backbone.input): images}
        # a functional model lists its layers in topological order
        for layer in self.backbone.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            inputs = [tensors[id(tensor)] for tensor in _as_list(layer.input)]
            tensors[id(layer.output)] = self.layer_call(layer, inputs)
        return [tensors[id(tensor)] for tensor in self.backbone.outputs]

    def copy(self, layer, **overrides):
        """A snapshot copy of a layer outside the backbone (PAM, BN neck), called by the caller."""
        twin = _copy_layer(layer, self.dtype, **overrides)
        self.pending.append((twin, layer.get_weights()))
        return twin

    def assign_weights(self):
        for layer, weights in self.pending:
            layer.set_weights(weights)


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
    folding = _Folding(model.backbone, dtype)
    inputs = keras.Input(shape=(*model.image_size, 3), name="images", dtype="float32")
    _, stage4 = folding(ImageNormalization(name="normalize", dtype=dtype)(inputs))
    pam = folding.copy(model.pam) if model.pam is not None else None
    bn_neck_config = model.bn_neck.get_config()
    neck_overrides = {"synchronized": False} if "synchronized" in bn_neck_config else {}
    _, bn_features, _ = embedding_head(stage4, pam, folding.copy(model.bn_neck, **neck_overrides))
    outputs = ops.cast(bn_features, "float32")
    folding.assign_weights()
    return keras.Model(inputs, outputs, name="mpanet_folded")


def embedding_function(model, folded: bool = True, jit: bool = False, any_size: bool = False) -> EmbeddingFunction:
    """The embedding of ``model``: ``fn(images (N, H, W, 3) float32 in [0, 255]) -> (N, D) float32``.

    Args:
        model: a built :class:`~mpanet_tf.model.MPANet`.
        folded: run :func:`fold_batch_norms` of the model (a snapshot of its weights, ~8% less CPU
            time) instead of ``model(images, training=False)`` (which follows weight changes: the
            trainer's evaluation, ``MPANet.embed``).
        jit: XLA-compile the traced function.
        any_size: accept any H and W (unfolded only; the folded graph has a fixed input size).

    Returns:
        :class:`EmbeddingFunction`: a ``tf.function`` with a fixed input signature (batch free)
        that, unlike ``predict_on_batch``, never retraces and skips Keras' per-call data-adapter
        work.
    """
    if folded and any_size:
        raise ValueError("the folded graph has a fixed input size; pass any_size=False")
    network = fold_batch_norms(model) if folded else model
    return EmbeddingFunction(network, None if any_size else model.image_size, jit=jit)
