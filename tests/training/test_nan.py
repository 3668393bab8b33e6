"""A non-finite loss stops training with one line naming the epoch and step; nothing bad is saved."""

from __future__ import annotations

import json

import keras
import numpy as np
from click.testing import CliRunner

from mpanet_tf import run_folder
from mpanet_tf.cli.main import cli
from mpanet_tf.training import trainer
from tests.training.support import train_args


class PoisonBeforeStep(keras.callbacks.Callback):
    """Sets the BN-neck scale to NaN just before the given step (1-based) of this fit."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            gamma = self.model.bn_neck.gamma
            gamma.assign(np.full(gamma.shape, np.nan, np.float32))


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(sysu_root, tmp_path, monkeypatch):
    original = trainer.train

    def train_with_poison(*args, **kwargs):
        kwargs["callbacks"] = [PoisonBeforeStep(2)]
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "train", train_with_poison)
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, train_args(sysu_root, output, "--epochs", "1", "--steps-per-epoch", "3",
                                                "--save-every-steps", "1"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "became nan at epoch 1, step 2 (global step 2)" in lines[0]
    assert "last good checkpoint is step 1" in lines[0]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["ckpt-000000001.state.json",
                                                                          "ckpt-000000001.weights.h5"]
    assert run_folder.latest_checkpoint(output)[0].name == "ckpt-000000001.weights.h5"
    meta = json.loads((output / "run.json").read_text())
    assert meta["status"] == "failed" and "became nan" in meta["error"]
    assert not (output / "model.keras").exists() and not (output / "history.json").exists()


def test_nan_loss_before_any_checkpoint_does_not_suggest_resume(sysu_root, tmp_path, monkeypatch):
    """Issue 14 class 7: with nothing saved, the message says so and does not suggest --resume."""
    original = trainer.train

    def train_with_poison(*args, **kwargs):
        kwargs["callbacks"] = [PoisonBeforeStep(1)]
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "train", train_with_poison)
    result = CliRunner().invoke(cli, train_args(sysu_root, tmp_path / "run", "--epochs", "1", "--steps-per-epoch", "2"))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "became nan at epoch 1, step 1" in lines[0], result.output
    assert "nothing to resume" in lines[0] and "--resume" not in lines[0]
