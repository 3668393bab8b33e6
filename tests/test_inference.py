"""BatchNorm folding (mpanet_tf.inference): the folded graph computes the unfolded model's test-time
embedding up to float32 rounding, for non-trivial BN statistics and several architectures.

The reference is the unfolded MPANet run in float64 with the same weights, so the test separates
the folding from float32 rounding (which the unfolded float32 model shows as well).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mpanet_tf.config import MPANetConfig
from mpanet_tf.inference import embedding_function, fold_batch_norms, folded_conv_weights
from mpanet_tf.model import build_model

SIZE = (48, 32)


def tiny_config(**model_options) -> MPANetConfig:
    config = MPANetConfig()
    config.model.image_height, config.model.image_width = SIZE
    config.model.backbone_weights = "none"
    for key, value in model_options.items():
        setattr(config.model, key, value)
    return config


def randomize_batch_norms(model, seed=0):
    """gamma ~ U(0.5, 1.5), beta ~ N(0, 0.2), moving mean ~ N(0, 0.3), moving var ~ U(0.5, 2)."""
    rng = np.random.default_rng(seed)
    for layer in [*model.backbone.layers, model.bn_neck]:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            values = {"gamma": rng.uniform(0.5, 1.5, channels), "beta": rng.normal(0, 0.2, channels),
                      "moving_mean": rng.normal(0, 0.3, channels),
                      "moving_variance": rng.uniform(0.5, 2.0, channels)}
            for name, value in values.items():
                variable = getattr(layer, name, None)
                if variable is not None:
                    variable.assign(value.astype(variable.dtype))


def build(config, policy="float32"):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        return build_model(config, num_classes=4)
    finally:
        keras.config.set_dtype_policy(previous)


def images(count=3, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (count, *SIZE, 3)).astype(np.float32)


def test_folded_conv_weights_match_conv_then_batch_norm():
    """A 1x1 conv is a matmul: compare against numpy's (x @ W - mean) / sqrt(var + eps) * g + b."""
    rng = np.random.default_rng(0)
    conv = keras.layers.Conv2D(5, 1, use_bias=False)
    conv.build((None, 2, 2, 3))
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    bn.build((None, 2, 2, 5))
    gamma, beta, mean, var = (rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5),
                              rng.uniform(0.1, 3, 5))
    bn.set_weights([gamma, beta, mean, var])
    kernel, bias = folded_conv_weights(conv, bn)
    x = rng.normal(size=(7, 3))
    w = np.asarray(conv.kernel, np.float64)[0, 0]
    expected = (x @ w - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(x @ kernel[0, 0] + bias, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("options", [
    {},  # the authors' model: last stride 1, MAM after layer3 and layer4, PAM
    {"last_stride": 2, "modality_attention": 1, "use_pam": False},
])
def test_folded_model_equals_unfolded_up_to_rounding(options):
    config = tiny_config(**options)
    model = build(config)
    randomize_batch_norms(model)
    reference_model = build(config, "float64")
    reference_model.set_weights(model.get_weights())
    batch = images()
    reference = np.asarray(reference_model(batch.astype(np.float64), training=False), np.float64)
    unfolded = np.asarray(model(batch, training=False), np.float64)
    folded_model = fold_batch_norms(model)
    folded = np.asarray(folded_model(batch), np.float64)

    assert folded.shape == (3, model.embedding_dim)
    assert folded_model.output.dtype == "float32"
    # float32 rounding alone puts the unfolded model 4e-6..8e-6 (max |diff| / max |ref|) and
    # ~3e-6 (relative L2) from the float64 reference at this size; folding must stay at that level
    norm = np.linalg.norm(reference)
    assert np.linalg.norm(folded - reference) <= 1e-5 * norm
    assert np.linalg.norm(folded - unfolded) <= 1e-5 * np.linalg.norm(unfolded)
    assert np.abs(folded - reference).max() <= 2e-5 * np.abs(reference).max()
    assert np.linalg.norm(folded - reference) <= 3 * np.linalg.norm(unfolded - reference) + 1e-7 * norm
    # the folded graph has no BatchNormalization left in the backbone (only the BN neck)
    batch_norms = [layer for layer in folded_model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert [layer.name for layer in batch_norms] == ["bn_neck"]


def test_folded_model_is_a_snapshot_and_embedding_function_matches():
    model = build(tiny_config())
    randomize_batch_norms(model, seed=2)
    batch = images(2)
    embed = embedding_function(model)
    before = embed(batch)
    unfolded = np.asarray(model(batch, training=False))
    assert before.dtype == np.float32
    assert np.linalg.norm(before - unfolded) <= 1e-5 * np.linalg.norm(unfolded)
    # changing the model's weights later does not change the snapshot
    randomize_batch_norms(model, seed=3)
    np.testing.assert_array_equal(embed(batch), before)
    assert not np.allclose(np.asarray(model(batch, training=False)), before, rtol=1e-3)


def test_padding_merged_only_where_same_equals_symmetric():
    model = build(tiny_config())
    folded = fold_batch_norms(model)
    convs = {layer.name: layer for layer in folded.layers if isinstance(layer, keras.layers.Conv2D)
             and layer.name.startswith(("conv1", "layer"))}
    pads = {layer.name for layer in folded.layers if isinstance(layer, keras.layers.ZeroPadding2D)}
    assert convs["layer1_0_conv2"].padding == "same" and "layer1_0_conv2_pad" not in pads
    assert convs["layer2_0_conv2"].padding == "valid" and "layer2_0_conv2_pad" in pads  # stride 2
    assert convs["conv1"].padding == "valid" and "conv1_pad" in pads
    assert all(conv.use_bias for conv in convs.values())
