"""The loss-term names are declared once (mpanet_tf/loss_terms.py) and every user reads them there."""

from __future__ import annotations

import numpy as np

from mpanet_tf import loss_terms
from mpanet_tf.config import LossConfig


def test_every_user_reads_the_one_list():
    from mpanet_tf import model
    from mpanet_tf.losses import total
    from mpanet_tf.training import progress
    from mpanet_tf.viz import curves

    assert tuple(loss_terms.LOSS_TERMS) == ("id", "cc", "sep", "sid", "kl")
    assert model.LOSS_TERMS == (*loss_terms.LOSS_TERMS, "total")
    assert progress.LOSS_KEYS is loss_terms.LOGGED_LOSSES == ("loss", "id", "cc", "sep", "sid", "kl")
    assert [key for key, _ in curves.LOSS_TERMS] == list(loss_terms.LOGGED_LOSSES)
    assert total.TERM_NAMES is loss_terms.TOTAL_INPUTS
    assert set(total.TERM_NAMES) == {"id", "cc", "sep", "kl", "ce_vis", "ce_ir"}


def test_total_reads_the_modality_terms_by_their_declared_names():
    from mpanet_tf.losses import total_loss

    terms = {"id": 1.0, "cc": 2.0, "sep": 4.0, "ce_vis": 8.0, "ce_ir": 16.0, "kl": 32.0}
    # 1 + 2 + 0.5*4 + 0.5*2*(8 + 16) + 2.5*32 with the authors' weights (the CEs counted twice).
    assert float(total_loss(terms, LossConfig())) == np.float32(1 + 2 + 2 + 24 + 80)
    single = LossConfig(double_modality_ce=False)
    assert float(total_loss(terms, single)) == np.float32(1 + 2 + 2 + 12 + 80)
