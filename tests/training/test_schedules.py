"""Per-epoch LR and EMA-rate schedules (design.md §2.4, §3.1) and the coupled L2 weight decay (§8.9)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mpanet_tf.config import MPANetConfig
from mpanet_tf.training.schedules import EpochSchedule, ema_rate_for_epoch, learning_rate_for_epoch
from mpanet_tf.training.setup import make_optimizer


def torch_multistep(epoch_1based, base, milestones, gamma):
    """PyTorch MultiStepLR after ``epoch - 1`` calls of scheduler.step() (one per finished epoch):
    lr = base * gamma ** bisect_right(milestones, last_epoch)."""
    import bisect

    return base * gamma ** bisect.bisect_right(sorted(milestones), epoch_1based - 1)


@pytest.mark.parametrize("milestones", [(80, 120), (110,)])
def test_learning_rate_matches_multistep_lr(milestones):
    for epoch in range(1, 141):
        assert learning_rate_for_epoch(epoch, 3.5e-4, milestones, 0.1) == pytest.approx(
            torch_multistep(epoch, 3.5e-4, milestones, 0.1), rel=1e-12)
    # The SYSU recipe in words: 3.5e-4 for epochs 1-80, 3.5e-5 for 81-120, 3.5e-6 for 121-140.
    if milestones == (80, 120):
        assert learning_rate_for_epoch(80, 3.5e-4, milestones) == pytest.approx(3.5e-4)
        assert learning_rate_for_epoch(81, 3.5e-4, milestones) == pytest.approx(3.5e-5)
        assert learning_rate_for_epoch(121, 3.5e-4, milestones) == pytest.approx(3.5e-6)


def test_ema_rate_follows_the_authors_epoch_started_callback():
    for epoch in range(1, 141):
        assert ema_rate_for_epoch(epoch, 0.2, 100) == pytest.approx(0.2 * min(1.0, 100.0 / (epoch + 1)), rel=1e-12)
    assert ema_rate_for_epoch(99) == pytest.approx(0.2)
    assert ema_rate_for_epoch(140) == pytest.approx(0.2 * 100 / 141)


def test_epoch_schedule_assigns_variables_at_every_epoch_start():
    """The callback assigns optimizer.learning_rate and model.ema_rate (variables, so a traced step
    reads the new values), for fit's 0-based epoch index e - 1."""
    config = MPANetConfig.preset("sysu")

    class Holder(keras.Model):
        def __init__(self):
            super().__init__()
            self.ema_rate = self.add_weight(shape=(), initializer="zeros", trainable=False, name="ema_rate")
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Holder()
    model.compile(optimizer=make_optimizer(config))
    model.optimizer.build(model.trainable_variables)
    schedule = EpochSchedule(config)
    schedule.set_model(model)
    for epoch in (1, 80, 81, 100, 120, 121, 140):
        schedule.on_epoch_begin(epoch - 1)
        assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(
            torch_multistep(epoch, 3.5e-4, (80, 120), 0.1), rel=1e-6)
        assert float(model.ema_rate.numpy()) == pytest.approx(0.2 * min(1.0, 100.0 / (epoch + 1)), rel=1e-6)


def test_optimizer_is_pytorch_adam_without_decoupled_decay():
    optimizer = make_optimizer(MPANetConfig.preset("sysu"))
    assert isinstance(optimizer, keras.optimizers.Adam)
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert not optimizer.weight_decay


def test_train_step_adds_coupled_l2_to_the_gradient(sysu_root):
    """One train step with weight_decay 0 and one with 5e-2 from the same weights on the same batch:
    the Adam first moment after step 1 is (1 - beta1) * g, so their difference must be
    0.1 * wd * w0 (PyTorch Adam's coupled decay adds wd * w to the gradient), and the weights
    must follow Adam's update for g + wd * w0 computed in numpy."""
    from mpanet_tf.data.pipeline import build_train_dataset
    from mpanet_tf.data.sampler import IdentityPairSampler
    from mpanet_tf.data.sysu import SYSUDataset
    from mpanet_tf.model import build_model
    from tests.training.workers import tiny_config

    dataset = SYSUDataset(sysu_root)
    records = dataset.train_records()
    config = tiny_config(sysu_root)
    sampler = IdentityPairSampler.from_records(records, 2, 4, seed=1)
    batch = next(iter(build_train_dataset(records, sampler, 0, config).take(1)))

    decay = 5e-2
    states = {}
    initial = None
    for wd in (0.0, decay):
        config.train.weight_decay = wd
        model = build_model(config, len(dataset.train_ids))
        model.compile(optimizer=make_optimizer(config))
        model.optimizer.build(model.trainable_variables)
        if initial is None:
            initial = [v.numpy() for v in model.weights]
        else:
            for variable, value in zip(model.weights, initial):
                variable.assign(value)
        model.train_step(batch)  # eager: the same kernels, the same inputs in both runs
        head = model.classifier.kernel
        index = [v.path for v in model.trainable_variables].index(head.path)
        states[wd] = {
            "m": model.optimizer._momentums[index].numpy(),
            "v": model.optimizer._velocities[index].numpy(),
            "w": head.numpy(),
            "w0": initial[[v.path for v in model.weights].index(head.path)],
            "frozen": {"bn_neck_has_no_bias": model.bn_neck.beta is None,
                       "mean_heads_not_trainable": all(id(v) not in {id(t) for t in model.trainable_variables}
                                                       for v in (model.visible_classifier_mean,
                                                                 model.infrared_classifier_mean))},
        }
    plain, decayed = states[0.0], states[decay]
    w0 = plain["w0"]
    np.testing.assert_allclose(decayed["m"] - plain["m"], 0.1 * decay * w0, rtol=0, atol=1e-7)
    # Adam step 1 in numpy for the decayed gradient (Keras' epsilon placement).
    g = plain["m"] / 0.1 + decay * w0
    m, v = 0.1 * g, 0.001 * g * g
    alpha = 3.5e-4 * np.sqrt(1 - 0.999) / (1 - 0.9)
    expected = w0 - alpha * m / (np.sqrt(v) + 1e-8)
    np.testing.assert_allclose(decayed["v"], v, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(decayed["w"], expected, rtol=0, atol=2e-7)
    assert decayed["frozen"] == {"bn_neck_has_no_bias": True, "mean_heads_not_trainable": True}
