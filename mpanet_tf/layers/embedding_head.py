"""The network after the backbone: PAM (or plain global pooling) then the BN neck (facts §1.3-1.5).

    features    = PAM(F) = [P_1, ..., P_p, GAP(F)]  (B, (p + 1) * C)   or GAP(F) (B, C) without PAM
    bn_features = BN_neck(features)                 (B, D), the test-time embedding in inference mode

One function, run by ``MPANet.forward`` on the model's own PAM and BN neck and by the BN-folded
inference graph (:func:`mpanet_tf.inference.fold_batch_norms`) on snapshot copies of them, so the
head is written once. It holds no weights itself: the PAM and the neck stay attributes of the
model, where their weights have always been saved (``.keras`` files and checkpoints keep loading).
"""

from __future__ import annotations

from keras import ops


def embedding_head(stage4, pam, bn_neck, training=False):
    """PAM (facts §1.3; global average pooling without it), then the BN neck (§1.4).

    Args:
        stage4: layer4 output after MAM4, (B, h, w, C) with C = 2048.
        pam: a :class:`~mpanet_tf.layers.pattern_alignment.PatternAlignment` or None.
        bn_neck: the neck's ``keras.layers.BatchNormalization``.
        training: BN-neck mode (batch statistics) for the training forward.

    Returns:
        (features (B, D) pre-BN, bn_features (B, D), masks (B, h, w, p) or None),
        D = (p + 1) * C with PAM, C without.
    """
    if pam is not None:
        features, masks = pam(stage4)
    else:
        features, masks = ops.mean(stage4, axis=(1, 2)), None
    return features, bn_neck(features, training=training), masks
