"""MPANet losses as pure ``keras.ops`` functions of tensors, each returning a float32 scalar.

One module per loss (design.md §2): :mod:`~mpanet_tf.losses.identity` (shared ID CE),
:mod:`~mpanet_tf.losses.separation` (L_sep), :mod:`~mpanet_tf.losses.center_cluster` (L_cc) and
:mod:`~mpanet_tf.losses.mutual_mean` (modality CE and the mean-classifier KL). :func:`total_loss`
sums them with the config weights (paper Eq. 14 as the code builds it).

These are batch-level losses: Keras does not scale them per replica, so the train step divides
the total by ``num_replicas_in_sync`` (design.md §11).
"""

from __future__ import annotations

from mpanet_tf.losses.center_cluster import center_cluster_loss, center_cluster_terms
from mpanet_tf.losses.identity import identity_loss, masked_identity_loss, per_sample_cross_entropy
from mpanet_tf.losses.mutual_mean import modality_identity_losses, mutual_mean_kl
from mpanet_tf.losses.separation import separation_loss
from mpanet_tf.losses.total import TERM_NAMES, total_loss

__all__ = [
    "TERM_NAMES",
    "center_cluster_loss",
    "center_cluster_terms",
    "identity_loss",
    "masked_identity_loss",
    "modality_identity_losses",
    "mutual_mean_kl",
    "per_sample_cross_entropy",
    "separation_loss",
    "total_loss",
]
