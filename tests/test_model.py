"""The assembled MPANet: gradients, EMA heads, test-time embedding, serialisation, precision."""

from __future__ import annotations

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf import MPANetConfig, build_model, load_model
from mpanet_tf.backbone import MPANetBackbone
from mpanet_tf.model import MPANet
from tests.helpers import run_serialization_test
from tests.legacy_keras import FIXTURE_DIR, fixture_images, keras_file_layout, write_legacy_keras

H, W = 64, 32


def small_config(**loss):
    config = MPANetConfig()
    config.model.image_height, config.model.image_width = H, W
    config.data.batch_ids, config.data.images_per_id = 2, 4
    for key, value in loss.items():
        setattr(config.loss, key, value)
    return config


def batch(seed=0):
    """Two identities x (2 IR + 2 VIS), interleaved IR, VIS as the sampler lays them out."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (8, H, W, 3)).astype("float32")
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1], "int32")
    infrared = np.array([1, 0, 1, 0, 1, 0, 1, 0], bool)
    return images, labels, infrared


@pytest.fixture(scope="module")
def model():
    return build_model(small_config(), num_classes=3)


def test_every_trainable_weight_gets_a_finite_gradient(model):
    images, labels, infrared = batch()
    with tf.GradientTape() as tape:
        total = model.loss_terms(images, labels, infrared)["total"]
    grads = tape.gradient(total, model.trainable_variables)
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    paths = {v.path for v in model.trainable_variables}
    assert not any("classifier_mean" in p for p in paths)
    assert any("MAM3" in p for p in paths) and any("MAM4" in p for p in paths)
    assert any("spatial_attention" in p for p in paths)
    # BN neck: scale trains, bias frozen at 0 (there is none to train).
    assert [tuple(w.shape) for w in model.bn_neck.trainable_weights] == [(14336,)]


def test_embedding_is_bn_neck_output_in_inference_mode(model):
    images, _, _ = batch(1)
    out = model.forward(images, training=False)
    bn = model.bn_neck
    gamma, mean, var = (keras.ops.convert_to_numpy(v) for v in (bn.gamma, bn.moving_mean, bn.moving_variance))
    expected = (out["features"].numpy() - mean) / np.sqrt(var + 1e-5) * gamma
    embedding = model.embed(images)
    assert embedding.shape == (8, 14336) and embedding.dtype == np.float32
    # embed runs a traced graph, forward runs eagerly: with oneDNN (on by default, mpanet_tf/__init__)
    # the two fuse and order their sums differently, so the absolute tolerance scales with the
    # embedding's magnitude (up to ~6 for this random model): float rounding, not a different result.
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-4 * float(np.abs(expected).max()))
    # No L2 normalisation inside the model.
    assert not np.allclose(np.linalg.norm(embedding, axis=1), 1.0)


def test_total_uses_authors_effective_weights(model):
    terms = {k: float(v) for k, v in model.loss_terms(*batch(2)).items()}
    expected = terms["id"] + terms["cc"] + 0.5 * terms["sep"] + 1.0 * terms["sid"] + 2.5 * terms["kl"]
    assert terms["total"] == pytest.approx(expected, rel=1e-5)
    assert all(np.isfinite(v) for v in terms.values())


def test_train_step_updates_mean_heads_from_pre_step_weights():
    model = build_model(small_config(), num_classes=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    rate = 0.2
    w_vis = model.visible_classifier.kernel.numpy().copy()
    w_ir = model.infrared_classifier.kernel.numpy().copy()
    m_vis = model.visible_classifier_mean.numpy().copy()
    np.testing.assert_array_equal(m_vis, w_vis)  # the mean heads start as copies
    # Make the mean heads differ from the trainable ones so the update is visible.
    model.visible_classifier_mean.assign(m_vis * 0.5)
    model.infrared_classifier_mean.assign(model.infrared_classifier_mean.numpy() * 0.0)
    model.train_step(tuple(tf.constant(a) for a in batch(3)))
    np.testing.assert_allclose(model.visible_classifier_mean.numpy(), (1 - rate) * m_vis * 0.5 + rate * w_vis, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.infrared_classifier_mean.numpy(), rate * w_ir, rtol=1e-6, atol=1e-7)
    # The trainable heads moved (the optimizer stepped after the EMA read them).
    assert not np.allclose(model.visible_classifier.kernel.numpy(), w_vis)


def test_saved_keras_model_loads_with_identical_outputs(model, tmp_path):
    images, _, _ = batch(4)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.embed(images), model.embed(images))
    np.testing.assert_array_equal(loaded.visible_classifier_mean.numpy(), model.visible_classifier_mean.numpy())
    assert loaded.get_config() == model.get_config()


def test_a_keras_file_saved_before_the_backbone_task_split_loads_with_the_same_embeddings(model, tmp_path):
    """tests/fixtures/legacy_keras: a .keras file of the code before the split (its config.json held
    the whole training config) and the embeddings that code gave for it (tests/legacy_keras.py)."""
    old = write_legacy_keras(tmp_path / "old.keras")
    loaded = load_model(old)
    expected = np.load(FIXTURE_DIR / "embeddings.npz")["embeddings"]
    got = loaded.embed(fixture_images())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(np.abs(expected).max()))
    assert loaded.image_size == (64, 32) and loaded.num_classes == 3 and loaded.modality_classifiers
    # A model saved now writes its weights at the same paths, so old files and checkpoints match it.
    model.save(tmp_path / "new.keras")
    assert keras_file_layout(tmp_path / "new.keras") == keras_file_layout(old)


def test_saved_model_holds_architecture_arguments_only(model, tmp_path):
    """The training config (data root, learning rate, loss weights) stays in the run folder."""
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        saved = json.loads(archive.read("config.json"))["config"]
    assert set(saved) == {"name", "trainable", "backbone", "num_classes", "num_parts", "use_pam",
                          "modality_classifiers", "image_size"}
    assert saved["backbone"]["config"] == {"name": "backbone", "trainable": True, "last_stride": 1,
                                           "modality_attention": 2, "reduction": 16, "mam_variant": "mam"}
    assert (saved["num_classes"], saved["image_size"]) == (3, [64, 32])
    text = json.dumps(saved)
    assert not any(word in text for word in ("data_root", "lr", "weight_kl", "images_per_id", "epochs"))


def test_backbone_and_task_configs_round_trip(model):
    backbone = run_serialization_test(MPANetBackbone(last_stride=2, modality_attention=1, mam_variant="se"))
    assert [layer.name for layer in backbone.layers if layer.name.startswith("MAM")] == ["MAM4"]
    revived = run_serialization_test(model)
    assert revived.embedding_dim == 14336 and revived.image_size == (64, 32)


def test_num_classes_is_required():
    with pytest.raises(TypeError, match="num_classes"):
        build_model(small_config())  # noqa: the missing argument is the test
    with pytest.raises(TypeError, match="num_classes"):
        MPANet(MPANetBackbone())


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_forward_backward_finite(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model(small_config(), num_classes=3)
        images, labels, infrared = batch(5)
        with tf.GradientTape() as tape:
            terms = model.loss_terms(images, labels, infrared)
        grads = tape.gradient(terms["total"], model.trainable_variables)
        assert all(t.dtype == tf.float32 for t in terms.values())
        assert all(np.isfinite(float(t)) for t in terms.values())
        assert all(g is not None and np.isfinite(keras.ops.convert_to_numpy(g)).all() for g in grads)
        assert model.embed(images).dtype == np.float32
        assert model.visible_classifier_mean.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("ablation,dim,mams", [("baseline", 2048, 0), ("+pam", 14336, 0), ("mam-as-se", 14336, 2)])
def test_ablations_build(ablation, dim, mams):
    config = small_config().with_ablation(ablation)
    model = build_model(config, num_classes=3)
    assert model.embed(batch(6)[0][:2]).shape == (2, dim)
    names = [layer.name for layer in model.backbone.layers]
    assert sum(name.startswith("MAM") for name in names) == mams
    terms = model.loss_terms(*batch(6))
    assert np.isfinite(float(terms["total"]))
    if not config.loss.use_ml:
        assert float(terms["kl"]) == 0.0 and model.visible_classifier is None
        with pytest.raises(ValueError, match="use_ml"):
            model.configure_training(small_config())  # mutual mean learning needs the modality heads


def test_run_folder_loads_the_newest_weights(tmp_path):
    """A run folder's model.keras is used unless a checkpoint is newer (a finished run resumed for
    more epochs, or an imported run being fine-tuned)."""
    import os

    from mpanet_tf import run_folder
    from mpanet_tf.io import atomic
    from mpanet_tf.training.checkpoints import CheckpointManager

    config = small_config()
    first, second = build_model(config, num_classes=3), build_model(config, num_classes=3)
    atomic.atomic_write_json(tmp_path / run_folder.CONFIG_FILE, config.to_dict())
    atomic.atomic_write_json(tmp_path / run_folder.RUN_FILE, {"num_classes": 3})
    images = batch(7)[0][:2]
    first.save(tmp_path / run_folder.FINAL_MODEL)
    state = CheckpointManager(tmp_path).save(second, {"epoch": 1, "step_in_epoch": 0, "global_step": 1,
                                                      "history": []})
    os.utime(tmp_path / run_folder.FINAL_MODEL, (1, 1))  # the final model is older
    np.testing.assert_array_equal(load_model(tmp_path).embed(images), second.embed(images))
    os.utime(state, (1, 1))
    os.utime(tmp_path / run_folder.FINAL_MODEL, None)  # now the final model is newer
    np.testing.assert_array_equal(load_model(tmp_path).embed(images), first.embed(images))
    assert oct(os.stat(tmp_path / run_folder.CONFIG_FILE).st_mode & 0o777) != oct(0o600)


def test_loss_terms_has_no_side_effect_on_the_mean_heads():
    model = build_model(small_config(), num_classes=3)
    model.visible_classifier_mean.assign(model.visible_classifier_mean.numpy() * 0.5)
    before = (model.visible_classifier_mean.numpy().copy(), model.infrared_classifier_mean.numpy().copy())
    model.loss_terms(*batch(8))
    np.testing.assert_array_equal(model.visible_classifier_mean.numpy(), before[0])
    np.testing.assert_array_equal(model.infrared_classifier_mean.numpy(), before[1])
