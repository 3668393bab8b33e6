"""Writers that fail part-way leave nothing under the final name and no temporary file (issue 8
item 7): a checkpoint, the final ``model.keras``, a feature file. The export folder is covered by
tests/export/test_savedmodel.py (``test_failed_export_leaves_no_folder``,
``test_failed_forced_export_keeps_the_old_version``); a SIGKILL during a checkpoint write by
tests/training/test_resume.py.

Each writer is made to write half its output and then raise, as a full disk would.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf import run_folder
from mpanet_tf.io import atomic


class DiskFull(OSError):
    pass


def tiny_model():
    import keras

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    return model


def half_then_fail(path, *args, **kwargs):
    with open(path, "wb") as handle:
        handle.write(b"\x89HDF half of a file")
    raise DiskFull("No space left on device")


def test_failed_checkpoint_write_keeps_the_previous_checkpoint_only(tmp_path, monkeypatch):
    from mpanet_tf.training.checkpoints import CheckpointManager

    model = tiny_model()
    manager = CheckpointManager(tmp_path)
    manager.save(model, {"epoch": 1, "step_in_epoch": 1, "global_step": 1, "history": []})
    before = sorted(p.name for p in manager.folder.iterdir())
    monkeypatch.setattr(model, "save_weights", half_then_fail)
    with pytest.raises(DiskFull):
        manager.save(model, {"epoch": 1, "step_in_epoch": 2, "global_step": 2, "history": []})
    assert sorted(p.name for p in manager.folder.iterdir()) == before
    assert manager.steps() == [1] and manager.latest()["global_step"] == 1


def test_failed_final_model_save_leaves_no_file(tmp_path, monkeypatch):
    model = tiny_model()
    final = tmp_path / "run" / run_folder.FINAL_MODEL
    atomic.atomic_save_model(model, final)
    good = final.read_bytes()
    monkeypatch.setattr(model, "save", half_then_fail)
    with pytest.raises(DiskFull):
        atomic.atomic_save_model(model, final)
    assert [p.name for p in final.parent.iterdir()] == [run_folder.FINAL_MODEL]
    assert final.read_bytes() == good  # the earlier file is untouched
    fresh = tmp_path / "fresh" / run_folder.FINAL_MODEL
    with pytest.raises(DiskFull):
        atomic.atomic_save_model(model, fresh)
    assert list(fresh.parent.iterdir()) == []


def test_failed_feature_file_write_leaves_no_file(tmp_path, monkeypatch):
    from mpanet_tf.eval import features as features_module

    rng = np.random.default_rng(0)
    feature_set = features_module.FeatureSet(rng.normal(size=(2, 4)), [1, 2], [3, 6], ["a", "b"],
                                             rng.normal(size=(3, 4)), [1, 2, 2], [1, 2, 4], ["c", "d", "e"])

    def half_npz(handle, **arrays):
        handle.write(b"PK\x03\x04 half of a zip")
        raise DiskFull("No space left on device")

    monkeypatch.setattr(features_module.np, "savez", half_npz)
    target = tmp_path / "out" / "features.npz"
    with pytest.raises(DiskFull):
        features_module.save_features(target, feature_set)
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()
    features_module.save_features(target, feature_set)
    loaded = features_module.load_features(target)
    np.testing.assert_array_equal(loaded.gallery_features, feature_set.gallery_features)
    assert [p.name for p in target.parent.iterdir()] == ["features.npz"]
