"""Centre cluster loss L_cc of MPANet (paper Eq. 11-12; design.md §2.3, §8.6).

The authors' ``CenterTripletLoss`` (layers/loss/local_center_loss.py) on the **pre-BN** feature
(B, D) (D = 14336 with PAM), in float32:

- every sample's centre ``c_{y_i}`` is the batch mean of all features with its label, both
  modalities pooled together (no per-modality centre);
- **pull** = ``mean_i ||f_i - c_{y_i}||_2``, Euclidean and not squared, with no epsilon in the sqrt;
- **push**: centre-to-centre distances ``d(a, b) = sqrt(max(||c_a - c_b||^2, 1e-12))``; one anchor
  every ``k_size`` rows (rows 0, k, 2k, ..., the sampler's contiguous identity blocks); for each
  anchor ``a``: ``mean_{j : y_j != y_a} max(0, margin - d(c_a, c_{y_j}))`` over the *batch entries*
  of other identities (each other centre counts k times, so this equals the mean over the other
  centres); then the mean over anchors;
- ``L_cc = pull + push``, weight 1, margin rho = 0.7 in the unnormalised feature space.

Numerical notes (documented differences that never change a finite forward value of the code):

- The pull's sqrt has no epsilon, so an identity with a single image (``f_i == c_{y_i}``) has
  distance exactly 0, as in the code. Its gradient would be ``0/0 = NaN``; the double-``where``
  trick (sqrt of a safe value, then select) makes it 0 instead. Forward values are unchanged.
- The centre-to-centre squared distances use the same expansion as the code
  (``|a|^2 + |b|^2 - 2 a.b``) but after subtracting the mean centre, which is translation-invariant
  and loses less float32 precision to cancellation (pre-BN features are all positive). Coincident
  centres of different identities give ``d = 1e-6`` (the clamp) and a push of ``margin - 1e-6``
  per pair, with a finite (zero) gradient through the clamp.
- An anchor with no other identity in the batch gets push 0; the code would average an empty
  tensor and return NaN.
"""

from __future__ import annotations

from keras import ops

_MIN_SQUARED_DISTANCE = 1e-12  # the code's clamp before the centre-to-centre sqrt


def _safe_norm(squared):
    """``sqrt(squared)`` with a zero (instead of NaN) gradient where ``squared == 0``."""
    positive = ops.greater(squared, 0.0)
    safe = ops.where(positive, squared, ops.ones_like(squared))
    return ops.where(positive, ops.sqrt(safe), ops.zeros_like(squared))


def _batch_centers(features, same):
    """Centre of every row's identity, ``(B, D), (B, B) -> (B, D)``.

    ``same[i, j] = 1`` when rows i and j share a label; row i of the result is the mean of the
    features of its identity (both modalities pooled).
    """
    counts = ops.sum(same, axis=1, keepdims=True)  # (B, 1), >= 1 (the row itself)
    return ops.matmul(same, features) / counts  # (B, D)


def center_cluster_terms(features, labels, k_size, margin=0.7):
    """The pull and push terms of L_cc (design.md §2.3), each a float32 scalar.

    Args:
        features: ``(B, D)`` **pre-BN** embeddings (any float dtype; cast to float32).
        labels: ``(B,)`` integer identity labels.
        k_size: images per identity K; anchors are rows ``0, K, 2K, ...`` (Python int >= 1). The
            batch must be made of contiguous identity blocks of K rows, as the sampler builds it.
        margin: push margin rho (0.7).

    Returns:
        ``(pull, push)``: ``pull = mean_i ||f_i - c_{y_i}||``,
        ``push = mean_anchor mean_{j: y_j != y_a} max(0, margin - d(c_a, c_{y_j}))``.
    """
    k_size = int(k_size)
    if k_size < 1:
        raise ValueError(f"k_size must be >= 1, got {k_size}")
    features = ops.cast(features, "float32")  # (B, D)
    labels = ops.reshape(labels, (-1,))
    same = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32")  # (B, B)
    centers = _batch_centers(features, same)  # (B, D)

    # Pull: Euclidean distance of every sample to its own identity centre.
    pull = ops.mean(_safe_norm(ops.sum(ops.square(features - centers), axis=1)))

    # Push: hinge on centre-to-centre distances between each anchor and the other identities.
    shifted = centers - ops.mean(centers, axis=0, keepdims=True)  # same distances, less cancellation
    sq_norms = ops.sum(ops.square(shifted), axis=1)  # (B,)
    sq_dist = sq_norms[:, None] + sq_norms[None, :] - 2.0 * ops.matmul(shifted, ops.transpose(shifted))
    dist = ops.sqrt(ops.maximum(sq_dist, _MIN_SQUARED_DISTANCE))  # (B, B)
    hinge = ops.relu(margin - dist)  # (B, B)
    other = 1.0 - same  # (B, B): entries of other identities
    per_row = ops.sum(other * hinge, axis=1) / ops.maximum(ops.sum(other, axis=1), 1.0)  # (B,)
    batch = ops.shape(features)[0]
    is_anchor = ops.cast(ops.equal(ops.mod(ops.arange(batch), k_size), 0), "float32")  # (B,)
    push = ops.sum(is_anchor * per_row) / ops.maximum(ops.sum(is_anchor), 1.0)
    return pull, push


def center_cluster_loss(features, labels, k_size, margin=0.7):
    """L_cc = pull + push (paper Eq. 11-12; design.md §2.3), a float32 scalar.

    ``(B, D) pre-BN features, (B,) labels -> ()``. See :func:`center_cluster_terms` for the terms
    and the module docstring for where this differs numerically from the authors' code.
    """
    pull, push = center_cluster_terms(features, labels, k_size, margin)
    return pull + push
