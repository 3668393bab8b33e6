"""Mutual mean learning losses of MPANet (paper Eq. 8-10; design.md §2.4, §8.8).

Two trainable modality-specific classifiers (visible, infrared) and their "mean" (EMA) copies are
evaluated on the post-BN feature of the **whole batch** by the caller; these functions pick the
rows of each modality with masks, so every shape stays static (XLA, ``tf.distribute``).

- ``CE_vis``: CE of the visible classifier over the visible rows; ``CE_ir``: CE of the infrared
  classifier over the infrared rows; each a mean over its own subset (half of the batch).
- KL between the modality-specific prediction of each row and the **other** modality's mean
  classifier: visible rows are compared with the infrared mean head (``logits_v' = W̄_ir(f_vis)``),
  infrared rows with the visible mean head (``logits_i' = W̄_vis(f_ir)``).

The authors' KL (``grad_side="specific"``, the default) is
``KL(P || Q) = sum_b sum_c P (log P - log Q) / B`` with ``P = softmax(specific)`` **carrying the
gradient** and ``log Q = log_softmax(mean)`` detached, B the full batch ("batchmean"),
temperature 1. This is torch's ``KLDivLoss(log Q, P)``: gradients flow through the "target"
argument, the opposite of the usual distillation set-up. ``grad_side="paper"`` is the usual
distillation form ``KL(Q || P) = sum Q (log Q - log softmax(specific)) / B`` with
``Q = softmax(mean)`` as the detached target.

Everything is computed in float32 (design.md §8.17). The EMA update itself belongs to the model.
"""

from __future__ import annotations

from keras import ops

from mpanet_tf.losses.identity import masked_identity_loss

GRAD_SIDES = ("specific", "paper")


def modality_identity_losses(logits_visible_head, logits_infrared_head, labels, infrared):
    """Modality-specific identity losses ``(CE_vis, CE_ir)`` (design.md §2.4), float32 scalars.

    Args:
        logits_visible_head: ``(B, C)`` trainable visible classifier on the whole batch.
        logits_infrared_head: ``(B, C)`` trainable infrared classifier on the whole batch.
        labels: ``(B,)`` integer labels.
        infrared: ``(B,)`` boolean, true for infrared rows (cameras 3 and 6).

    Returns:
        ``(ce_vis, ce_ir)``: mean CE of the visible head over the visible rows and of the infrared
        head over the infrared rows. A modality absent from the batch gives 0.0 for its term (the
        authors' code would give NaN).
    """
    infrared = ops.cast(infrared, "bool")
    ce_vis = masked_identity_loss(logits_visible_head, labels, ops.logical_not(infrared))
    ce_ir = masked_identity_loss(logits_infrared_head, labels, infrared)
    return ce_vis, ce_ir


def mutual_mean_kl(
    logits_visible_head,
    logits_infrared_head,
    mean_logits_visible_head,
    mean_logits_infrared_head,
    infrared,
    grad_side="specific",
):
    """Mutual mean learning KL, a float32 scalar (paper Eq. 8-10; design.md §2.4).

    Args:
        logits_visible_head: ``(B, C)`` trainable visible classifier on the whole batch.
        logits_infrared_head: ``(B, C)`` trainable infrared classifier on the whole batch.
        mean_logits_visible_head: ``(B, C)`` visible mean (EMA) classifier on the whole batch.
        mean_logits_infrared_head: ``(B, C)`` infrared mean (EMA) classifier on the whole batch.
        infrared: ``(B,)`` boolean, true for infrared rows.
        grad_side: ``"specific"`` (code): ``sum P (log P - log Q) / B``, gradient through
            ``P = softmax(specific)``; ``"paper"``: ``sum Q (log Q - log softmax(specific)) / B``
            with ``Q = softmax(mean)``. The mean side is detached (``stop_gradient``) in both.

    Row ``b`` of the specific side is the own-modality trainable head (visible head for visible
    rows, infrared head for infrared rows); row ``b`` of the mean side is the *other* modality's
    mean head (infrared mean head for visible rows, visible mean head for infrared rows).
    B is the full batch, so the value does not depend on the modality split.
    """
    if grad_side not in GRAD_SIDES:
        raise ValueError(f"grad_side must be one of {GRAD_SIDES}, got {grad_side!r}")
    is_ir = ops.cast(infrared, "bool")[:, None]  # (B, 1)
    specific = ops.where(
        is_ir, ops.cast(logits_infrared_head, "float32"), ops.cast(logits_visible_head, "float32")
    )  # (B, C)
    mean = ops.where(
        is_ir, ops.cast(mean_logits_visible_head, "float32"), ops.cast(mean_logits_infrared_head, "float32")
    )  # (B, C)
    log_q = ops.stop_gradient(ops.log_softmax(mean, axis=-1))  # (B, C), detached
    log_p = ops.log_softmax(specific, axis=-1)  # (B, C)
    if grad_side == "specific":
        pointwise = ops.exp(log_p) * (log_p - log_q)
    else:
        pointwise = ops.exp(log_q) * (log_q - log_p)
    batch = ops.cast(ops.shape(specific)[0], "float32")
    return ops.sum(pointwise) / batch
