"""CheckpointManager on a small Keras model: round trip, pruning, atomicity, non-finite weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mpanet_tf import run_folder
from mpanet_tf.errors import CheckpointError, TrainingError
from mpanet_tf.training.checkpoints import CheckpointManager


def small_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.BatchNormalization(),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def trained_model():
    model = small_model()
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(16, 3)), rng.normal(size=(16, 2)), epochs=2, batch_size=8, verbose=0)
    return model


def state(step, **extra):
    return {"epoch": 1, "step_in_epoch": step, "global_step": step, "history": [{"epoch": 0}], **extra}


def test_round_trip_restores_weights_bn_statistics_and_optimizer(tmp_path):
    model = trained_model()
    manager = CheckpointManager(tmp_path)
    manager.save(model, state(4, partial_epoch={"sums": {"loss": 1.5}, "count": 3, "seconds": 2.0}))
    latest = manager.latest()
    assert latest["global_step"] == 4 and latest["history"] == [{"epoch": 0}]
    assert latest["partial_epoch"]["sums"] == {"loss": 1.5}
    assert latest["optimizer_iterations"] == 4  # 2 epochs x 2 batches

    fresh = small_model(seed=1)
    assert not np.allclose(fresh.weights[0].numpy(), model.weights[0].numpy())
    manager.restore(fresh, latest)
    for want, got in zip(model.weights, fresh.weights):           # incl. BN moving statistics
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    for want, got in zip(model.optimizer.variables, fresh.optimizer.variables):   # iterations, m, v
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_restore_refuses_an_optimizer_state_that_did_not_load(tmp_path):
    model = trained_model()
    manager = CheckpointManager(tmp_path)
    manager.save(model, state(4))
    latest = dict(manager.latest(), optimizer_iterations=99)
    with pytest.raises(CheckpointError, match="optimizer state"):
        manager.restore(small_model(), latest)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    model = trained_model()
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        manager.save(model, state(step))
    assert manager.steps() == [3, 4]
    names = sorted(p.name for p in manager.folder.iterdir())
    assert names == ["ckpt-000000003.state.json", "ckpt-000000003.weights.h5",
                     "ckpt-000000004.state.json", "ckpt-000000004.weights.h5"]


def test_incomplete_files_are_never_a_checkpoint(tmp_path):
    model = trained_model()
    manager = CheckpointManager(tmp_path)
    manager.save(model, state(2))
    # What a crash can leave: a temporary file, weights whose state file was never written.
    (manager.folder / ".tmp-123-ckpt-000000005.weights.h5").write_bytes(b"half")
    weights5, _ = run_folder.checkpoint_paths(tmp_path, 5)
    weights5.write_bytes(b"\x89HDF")
    assert manager.steps() == [2]
    assert manager.latest()["global_step"] == 2
    assert run_folder.latest_checkpoint(tmp_path)[0].name == "ckpt-000000002.weights.h5"
    removed = manager.remove_incomplete()
    assert sorted(removed) == [".tmp-123-ckpt-000000005.weights.h5", "ckpt-000000005.weights.h5"]
    assert sorted(p.name for p in manager.folder.iterdir()) == ["ckpt-000000002.state.json",
                                                                "ckpt-000000002.weights.h5"]


def test_non_finite_weights_are_not_saved(tmp_path):
    model = trained_model()
    manager = CheckpointManager(tmp_path)
    manager.save(model, state(1))
    model.layers[0].kernel.assign(np.full((3, 4), np.nan, np.float32))
    with pytest.raises(TrainingError, match="non-finite"):
        manager.save(model, state(2))
    assert manager.steps() == [1]
    assert not run_folder.checkpoint_paths(tmp_path, 2)[0].exists()
