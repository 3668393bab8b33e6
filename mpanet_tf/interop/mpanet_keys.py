"""The authors' MPANet state-dict keys (design.md §10) mapped to the variables of our Keras model.

334 tensors for SYSU: the backbone (torchvision names under ``backbone.``, both MAMs as
``backbone.MAM{3,4}.channel_attention.{0,2}``), the PAM conv ``spatial_attention.*``, the BN neck
``bn_neck.*`` and the five bias-free classifiers. ``num_batches_tracked`` has no Keras
counterpart. The BN neck's bias is frozen at 0 by the authors; our BN neck has no bias at all
(``center=False``), so :func:`check_frozen_bn_neck_bias` verifies the checkpoint's is zero.
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.convert import batch_norm_mapping, conv_mapping, linear_mapping, resnet_torch_mapping

BN_NECK_BIAS = "bn_neck.bias"


def mpanet_torch_mapping(model) -> dict:
    """{torch key: (Keras variable, layout kind)} for every trainable and running tensor of ``model``."""
    mapping = resnet_torch_mapping(model.backbone.get_layer, prefix="backbone.")
    for name in ("MAM3", "MAM4"):
        try:
            mam = model.backbone.get_layer(name)
        except ValueError:
            continue
        mapping.update(conv_mapping(f"backbone.{name}.channel_attention.0", mam.squeeze))
        mapping.update(conv_mapping(f"backbone.{name}.channel_attention.2", mam.excite))
    if model.pam is not None:
        mapping.update(conv_mapping("spatial_attention", model.pam.mask_conv))
    mapping.update(batch_norm_mapping("bn_neck", model.bn_neck))
    mapping.update(linear_mapping("classifier", model.classifier))
    if model.visible_classifier is not None:
        mapping.update(linear_mapping("visible_classifier", model.visible_classifier))
        mapping.update(linear_mapping("infrared_classifier", model.infrared_classifier))
        mapping["visible_classifier_.weight"] = (model.visible_classifier_mean, "linear")
        mapping["infrared_classifier_.weight"] = (model.infrared_classifier_mean, "linear")
    return mapping


def check_frozen_bn_neck_bias(state: dict, source: str = "checkpoint") -> None:
    """The authors' ``bn_neck.bias`` is frozen at 0; refuse a checkpoint where it is not."""
    if BN_NECK_BIAS in state and np.any(np.asarray(state[BN_NECK_BIAS]) != 0):
        raise CheckpointError(f"{source}: {BN_NECK_BIAS} is not zero, but MPANet freezes it at 0 "
                              "and this model has no BN-neck bias; this is not an MPANet checkpoint")
