"""Per-epoch schedules: the MultiStep learning rate and the EMA rate of the mean classifiers.

Both are set at the start of every epoch by :class:`EpochSchedule`, a Keras callback that
*assigns* variables (``optimizer.learning_rate`` and ``model.ema_rate``). A Python float read in
``train_step`` would be frozen at trace time (design.md §11), a variable is read at every step.

- Learning rate (design.md §3.1): PyTorch ``MultiStepLR(milestones, gamma)`` stepped once per epoch,
  no warm-up, so 1-based epoch ``e`` trains with ``lr * gamma ** #{m in milestones : m < e}``:
  SYSU 3.5e-4 for epochs 1-80, 3.5e-5 for 81-120, 3.5e-6 for 121-140.
- EMA rate (design.md §2.4, engine ``epoch_started_callback``): at the start of 1-based epoch ``e``,
  ``r = update_rate * min(1, decay_epoch / (e + 1))`` (0.2 up to epoch 99, 0.142 at epoch 140),
  :func:`ema_rate_for_epoch`.
"""

from __future__ import annotations

import keras



def learning_rate_for_epoch(epoch: int, base_lr: float, milestones=(80, 120), gamma: float = 0.1) -> float:
    """The learning rate of 1-based ``epoch`` under MultiStepLR stepped at every epoch end."""
    passed = sum(1 for milestone in milestones if int(milestone) < int(epoch))
    return float(base_lr) * float(gamma) ** passed


def ema_rate_for_epoch(epoch: int, update_rate: float = 0.2, decay_epoch: int = 100) -> float:
    """The authors' EMA-rate schedule of the mean classifiers (design.md §2.4), 1-based ``epoch`` as in
    their ``epoch_started_callback``: r = update_rate * min(1, decay_epoch / (epoch + 1))."""
    return float(update_rate) * min(1.0, float(decay_epoch) / (int(epoch) + 1))


class EpochSchedule(keras.callbacks.Callback):
    """Set the learning rate and the EMA rate at the start of every epoch.

    ``fit`` is called with ``initial_epoch=e - 1, epochs=e`` for 1-based epoch ``e``, so the
    0-based ``epoch`` Keras passes to :meth:`on_epoch_begin` is ``e - 1``.

    Args:
        config: the run's :class:`~mpanet_tf.config.MPANetConfig` (``train.lr``, ``milestones``,
            ``gamma``; ``loss.update_rate``, ``ema_decay_epoch``).
    """

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.current = {}

    def values_for(self, epoch: int) -> dict:
        """``{"lr": ..., "ema_rate": ...}`` of 1-based ``epoch``."""
        train, loss = self.config.train, self.config.loss
        return {
            "lr": learning_rate_for_epoch(epoch, train.lr, train.milestones, train.gamma),
            "ema_rate": ema_rate_for_epoch(epoch, loss.update_rate, loss.ema_decay_epoch),
        }

    def apply(self, model, epoch: int) -> dict:
        """Assign the values of 1-based ``epoch`` to ``model.optimizer`` and ``model.ema_rate``."""
        values = self.values_for(epoch)
        model.optimizer.learning_rate.assign(values["lr"])
        model.ema_rate.assign(values["ema_rate"])
        self.current = values
        return values

    def on_epoch_begin(self, epoch, logs=None):
        self.apply(self.model, int(epoch) + 1)
