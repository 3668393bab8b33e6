"""Identity (softmax cross-entropy) losses of MPANet.

The shared identity loss is the plain softmax cross-entropy of the shared classifier's logits
(paper: the ID loss of the baseline; design.md §2.1): **no label smoothing**, a mean over the whole
batch, computed in float32. :func:`masked_identity_loss` is the same CE over a subset of rows; the
modality-specific losses CE_vis / CE_ir of the mutual mean learning (design.md §2.4) are built on it in
:mod:`mpanet_tf.losses.mutual_mean`.

All functions use ``keras.ops`` only, take the labels as integers, cast logits to float32 first
(fp32 losses under mixed precision, design.md §8.17) and contain no data-dependent Python control
flow or dynamic-shape gathers, so they trace under XLA and ``tf.distribute``.
"""

from __future__ import annotations

from keras import ops


def per_sample_cross_entropy(logits, labels):
    """Softmax cross-entropy of every row, ``(B, C), (B,) -> (B,)`` float32.

    ``ce_i = -log softmax(logits_i)[labels_i]``, written as a one-hot weighted sum of
    ``log_softmax`` (static shapes, no gather). Labels must lie in ``[0, C)``; a label outside that
    range gives a zero one-hot row and therefore a CE of 0 for that row (the authors' unused
    ``ignore_index=-1`` behaves the same way).
    """
    logits = ops.cast(logits, "float32")
    num_classes = logits.shape[-1] if logits.shape[-1] is not None else ops.shape(logits)[-1]
    one_hot = ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype="float32")  # (B, C)
    log_probs = ops.log_softmax(logits, axis=-1)  # (B, C)
    return -ops.sum(one_hot * log_probs, axis=-1)  # (B,)


def identity_loss(logits, labels):
    """Shared identity loss: mean softmax CE over the batch (design.md §2.1).

    Args:
        logits: ``(B, C)`` logits of the shared classifier on the post-BN feature (any float
            dtype; cast to float32).
        labels: ``(B,)`` integer identity labels in ``[0, C)``.

    Returns:
        float32 scalar ``mean_i -log softmax(logits_i)[y_i]``. No label smoothing, as the authors'
        ``nn.CrossEntropyLoss``.
    """
    return ops.mean(per_sample_cross_entropy(logits, labels))


def masked_identity_loss(logits, labels, mask):
    """Softmax CE averaged over the rows where ``mask`` is true.

    ``sum_i mask_i * ce_i / max(sum_i mask_i, 1)``: a mean over the selected subset, written as a
    weighted sum so the shapes stay static.

    Args:
        logits: ``(B, C)`` logits (cast to float32).
        labels: ``(B,)`` integer labels.
        mask: ``(B,)`` boolean (or 0/1) row selector.

    Returns:
        float32 scalar. **0.0 when no row is selected** (a batch with no sample of that modality);
        the authors' code would take the mean of an empty tensor there and give NaN.
    """
    weights = ops.cast(mask, "float32")  # (B,)
    total = ops.sum(weights * per_sample_cross_entropy(logits, labels))
    return total / ops.maximum(ops.sum(weights), 1.0)
