"""The total loss: paper Eq. 14 with the authors' effective weights (design.md §2)."""

from __future__ import annotations

from keras import ops

from mpanet_tf.loss_terms import MODALITY_CE_TERMS, TOTAL_INPUTS

#: Keys of the ``terms`` dict read by :func:`total_loss` (:data:`mpanet_tf.loss_terms.TOTAL_INPUTS`).
TERM_NAMES = TOTAL_INPUTS


def total_loss(terms, loss_config):
    """Weighted sum of the loss terms (paper Eq. 14 with the authors' effective weights; design.md §2).

    ``L = weight_sep*sep + 1.0*cc + 1.0*id + weight_sid*m*(ce_vis + ce_ir) + weight_kl*kl`` with
    ``m = 2`` when ``loss_config.double_modality_ce`` (the code adds CE_vis and CE_ir twice, GitHub
    issue #6, so their effective weight is 1.0 with weight_sid 0.5) and ``m = 1`` for the paper's
    single weight. Defaults: ``0.5*sep + cc + id + 1.0*(ce_vis + ce_ir) + 2.5*kl``.

    Args:
        terms: dict of scalar tensors keyed by :data:`TERM_NAMES`: ``"id"`` (required), ``"sep"``
            (optional: absent when the model has no PAM), ``"cc"`` (required when
            ``loss_config.use_cc``), ``"ce_vis"``, ``"ce_ir"`` and ``"kl"`` (required when
            ``loss_config.use_ml``). Switched-off terms are ignored even if present; other keys
            (diagnostics such as the pull/push parts) are ignored.
        loss_config: :class:`mpanet_tf.config.LossConfig` (``weight_sep``, ``weight_sid``,
            ``weight_kl``, ``use_cc``, ``use_ml``, ``double_modality_ce``).

    Returns:
        float32 scalar.
    """
    needed = ["id"]
    if loss_config.use_cc:
        needed.append("cc")
    if loss_config.use_ml:
        needed += [*MODALITY_CE_TERMS, "kl"]
    missing = [name for name in needed if name not in terms]
    if missing:
        raise ValueError(f"total_loss is missing terms {missing}; got {sorted(terms)}")

    def term(name):
        return ops.cast(terms[name], "float32")

    total = term("id")
    if "sep" in terms:
        total = total + float(loss_config.weight_sep) * term("sep")
    if loss_config.use_cc:
        total = total + term("cc")
    if loss_config.use_ml:
        multiplicity = 2.0 if loss_config.double_modality_ce else 1.0
        visible, infrared = MODALITY_CE_TERMS
        total = total + float(loss_config.weight_sid) * multiplicity * (term(visible) + term(infrared))
        total = total + float(loss_config.weight_kl) * term("kl")
    return total
