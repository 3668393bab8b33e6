"""The names of MPANet's loss terms, declared once (design.md §2).

They name the train step's metrics (:meth:`mpanet_tf.model.MPANet.loss_terms`), the inputs of
:func:`mpanet_tf.losses.total_loss`, the progress bar, every ``history.json`` entry
(:mod:`mpanet_tf.training.progress`), TensorBoard and the curves picture
(:mod:`mpanet_tf.viz.curves`). Plain Python: importing it costs nothing.
"""

from __future__ import annotations

#: The logged loss terms of the train step in logging order, with their legend labels. ``sid`` is
#: :data:`MODALITY_CE_TERMS` summed, unweighted.
LOSS_TERMS = {"id": "L_id (shared CE)", "cc": "L_cc (center cluster)", "sep": "L_sep (pattern separation)",
              "sid": "L_sid (CE_vis + CE_ir)", "kl": "L_KL (mutual mean)"}
#: The modality-specific cross-entropies (visible, infrared) whose sum is the logged ``sid``.
MODALITY_CE_TERMS = ("ce_vis", "ce_ir")
#: The key of the weighted total (Eq. 14 with the code's weights) in logs and history entries,
#: and its legend label.
TOTAL_LOSS = "loss"
TOTAL_LABEL = "total (weighted)"
#: Every loss key of a history entry: the total, then :data:`LOSS_TERMS`.
LOGGED_LOSSES = (TOTAL_LOSS, *LOSS_TERMS)
#: The terms :func:`mpanet_tf.losses.total_loss` weighs: the logged ones with ``sid`` split into
#: :data:`MODALITY_CE_TERMS` (whose multiplicity the config decides).
TOTAL_INPUTS = (*(name for name in LOSS_TERMS if name != "sid"), *MODALITY_CE_TERMS)
