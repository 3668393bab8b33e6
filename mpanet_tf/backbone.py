"""MPANet's backbone (facts §1.1-1.2): the torchvision ResNet-50 with its last stride and the MAMs.

The keras-hub "backbone" of the MPANet family: a functional model holding only the feature
extractor, whose ``get_config`` holds only architecture arguments. The task model around it
(:class:`mpanet_tf.model.MPANet`: PAM, BN neck, classifiers, losses, train step) takes it as its
``backbone`` argument.

    images (B, H, W, 3), ImageNet-normalised
      -> stem, layer1..layer3 -> MAM3 (modality_attention == 2)   -> (B, H/16, W/16, 1024)
      -> layer4 (last_stride)  -> MAM4 (modality_attention >= 1)  -> (B, H/16, W/16, 2048)

Layer names are torchvision's (``layer3_0_conv2``, ...) plus ``MAM3``/``MAM4``, so every weight
maps to the authors' ``backbone.*`` state-dict key (:mod:`mpanet_tf.interop.mpanet_keys`). The
layers, their order and so the saved weight paths are those of the model before this class
existed (``tests/test_model.py`` loads a ``.keras`` file saved then).
"""

from __future__ import annotations

import keras

from mpanet_tf.layers.modality_alleviation import VARIANTS, ModalityAlleviation
from mpanet_tf.layers.resnet import EXPANSION, PLANES_PER_STAGE, resnet50_stages

#: Channels of the layer4 output (and so of every part vector of PAM).
OUTPUT_CHANNELS = PLANES_PER_STAGE[-1] * EXPANSION


@keras.saving.register_keras_serializable(package="mpanet_tf")
class MPANetBackbone(keras.Model):
    """torchvision ResNet-50 with MAMs after layer3 and layer4 (facts §1.1-1.2).

    Args:
        last_stride: stride of layer4's first block: 1 (the authors' "drop last stride", output
            stride 16) or 2 (torchvision).
        modality_attention: number of MAMs: 2 = after layer3 and layer4 (authors), 1 = after
            layer4 only, 0 = none.
        reduction: MAM squeeze ratio r (16).
        mam_variant: ``"mam"`` (paper Eq. 3), ``"in"`` or ``"se"`` (Table 4).

    Call: images (B, H, W, 3) ImageNet-normalised -> [layer3 output (B, H/16, W/16, 1024),
    layer4 output (B, H/16, W/16, 2048)] (H/32, W/32 for layer4 with last stride 2), each after
    its MAM.

    Example:
        >>> backbone = MPANetBackbone()
        >>> [tuple(o.shape) for o in backbone(np.zeros((1, 64, 32, 3), "float32"))]
        [(1, 4, 2, 1024), (1, 4, 2, 2048)]
    """

    def __init__(self, last_stride=1, modality_attention=2, reduction=16, mam_variant="mam", name="backbone",
                 **kwargs):
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        if modality_attention not in (0, 1, 2):
            raise ValueError(f"modality_attention must be 0, 1 or 2, got {modality_attention!r}")
        if int(reduction) < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction!r}")
        if mam_variant not in VARIANTS:
            raise ValueError(f"mam_variant must be one of {VARIANTS}, got {mam_variant!r}")
        dtype = kwargs.get("dtype")
        mam3 = ModalityAlleviation(reduction, mam_variant, name="MAM3", dtype=dtype) if modality_attention >= 2 else None
        mam4 = ModalityAlleviation(reduction, mam_variant, name="MAM4", dtype=dtype) if modality_attention >= 1 else None
        images = keras.Input(shape=(None, None, 3), name="images")
        outputs = resnet50_stages(images, int(last_stride), after_layer3=mam3, after_layer4=mam4, dtype=dtype)
        super().__init__(inputs=images, outputs=outputs, name=name, **kwargs)
        self.last_stride = int(last_stride)
        self.modality_attention = int(modality_attention)
        self.reduction = int(reduction)
        self.mam_variant = mam_variant

    @property
    def output_channels(self) -> int:
        """Channels of the layer4 output: 2048."""
        return OUTPUT_CHANNELS

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "last_stride": self.last_stride,
                "modality_attention": self.modality_attention, "reduction": self.reduction,
                "mam_variant": self.mam_variant}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
