"""Parity of an imported authors' checkpoint with an independent numpy MPANet (design.md §1, §10).

A random state dict with the 334 keys and PyTorch layouts of the authors' model (SYSU shapes,
7 classes) is written as a ``.pth`` with our torch-free writer, imported through the CLI
(``import-torch``), reloaded with ``load_model`` and run in inference mode. The expected
embeddings come from a float64 numpy forward in NCHW written from docs/design.md, not from our Keras
code: ImageNet normalisation, stem conv 7x7/2 pad 3, BN (running statistics), ReLU, max-pool
3x3/2 pad 1 with -inf padding, the 16 torchvision bottlenecks with last stride 1, MAM after layer3
and layer4, PAM ([6 parts, global]) and the BN neck with zero bias
(``tests/numpy_reference.py`` for the pieces).

Metric: ``max|keras - numpy| / max|numpy|`` over all embedding entries must be <= 1e-4, and every
entry must agree within atol = 1e-5 * max|numpy| plus rtol = 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.model import load_model
from tests import numpy_reference as ref
from tests.interop.torch_writer import save_state_dict

BLOCKS = (3, 4, 6, 3)
PLANES = (64, 128, 256, 512)
NUM_CLASSES = 7
FEATURE_DIM = 7 * 2048
HEADS = ("classifier", "visible_classifier", "infrared_classifier", "visible_classifier_",
         "infrared_classifier_")
H, W = 64, 32
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _bn(state, name, channels, rng, gamma=(0.8, 1.2)):
    state[f"{name}.weight"] = rng.uniform(*gamma, channels).astype("float32")
    state[f"{name}.bias"] = rng.normal(0.0, 0.1, channels).astype("float32")
    state[f"{name}.running_mean"] = rng.normal(0.0, 0.1, channels).astype("float32")
    state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, channels).astype("float32")
    state[f"{name}.num_batches_tracked"] = np.array(1000, "int64")


def _conv(state, name, out_c, in_c, k, rng):
    """Kaiming-normal (fan_in, ReLU gain) so activations stay O(1) through the network."""
    std = np.sqrt(2.0 / (in_c * k * k))
    state[f"{name}.weight"] = rng.normal(0.0, std, (out_c, in_c, k, k)).astype("float32")


def authors_state_dict(num_classes=NUM_CLASSES, seed=0) -> dict:
    """The authors' 334-key state dict (design.md §10) with random values, in PyTorch layouts."""
    rng = np.random.default_rng(seed)
    state = {}
    _conv(state, "backbone.conv1", 64, 3, 7, rng)
    _bn(state, "backbone.bn1", 64, rng)
    in_c = 64
    for stage, (blocks, planes) in enumerate(zip(BLOCKS, PLANES), start=1):
        for block in range(blocks):
            prefix = f"backbone.layer{stage}.{block}"
            _conv(state, f"{prefix}.conv1", planes, in_c, 1, rng)
            _bn(state, f"{prefix}.bn1", planes, rng)
            _conv(state, f"{prefix}.conv2", planes, planes, 3, rng)
            _bn(state, f"{prefix}.bn2", planes, rng)
            _conv(state, f"{prefix}.conv3", planes * 4, planes, 1, rng)
            # Small residual-branch scale, as trained ResNets have: keeps the sum O(1).
            _bn(state, f"{prefix}.bn3", planes * 4, rng, gamma=(0.2, 0.5))
            if block == 0:
                _conv(state, f"{prefix}.downsample.0", planes * 4, in_c, 1, rng)
                _bn(state, f"{prefix}.downsample.1", planes * 4, rng)
            in_c = planes * 4
    for name, channels in (("MAM3", 1024), ("MAM4", 2048)):
        _conv(state, f"backbone.{name}.channel_attention.0", channels // 16, channels, 1, rng)
        _conv(state, f"backbone.{name}.channel_attention.2", channels, channels // 16, 1, rng)
    bound = 1.0 / np.sqrt(2048)
    state["spatial_attention.weight"] = rng.uniform(-bound, bound, (6, 2048, 1, 1)).astype("float32")
    state["spatial_attention.bias"] = rng.uniform(-0.5, 0.5, 6).astype("float32")
    _bn(state, "bn_neck", FEATURE_DIM, rng)
    state["bn_neck.bias"] = np.zeros(FEATURE_DIM, "float32")  # frozen at 0 by the authors
    bound = 1.0 / np.sqrt(FEATURE_DIM)
    for head in HEADS:
        state[f"{head}.weight"] = rng.uniform(-bound, bound, (num_classes, FEATURE_DIM)).astype("float32")
    return state


def _max_pool_3x3_s2_p1(x):
    """PyTorch MaxPool2d(3, 2, padding=1): pads with -inf. (B, C, H, W) -> (B, C, H', W')."""
    x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    out_h, out_w = (x.shape[2] - 3) // 2 + 1, (x.shape[3] - 3) // 2 + 1
    windows = [x[:, :, i:i + 2 * out_h:2, j:j + 2 * out_w:2] for i in range(3) for j in range(3)]
    return np.max(np.stack(windows), axis=0)


def numpy_mpanet(images, state):
    """images (B, H, W, 3) RGB in [0, 255] -> (embedding (B, 14336) post-BN, features pre-BN)."""
    def bn(x, name):
        bias = state.get(f"{name}.bias", np.zeros_like(state[f"{name}.weight"]))
        return ref.batch_norm_inference(x, state[f"{name}.weight"], bias,
                                        state[f"{name}.running_mean"], state[f"{name}.running_var"])

    state = {k: v.astype("float64") for k, v in state.items()}
    x = ref.to_nchw((images.astype("float64") / 255.0 - MEAN) / STD)
    x = np.maximum(bn(ref.conv2d_nchw(x, state["backbone.conv1.weight"], 2, 3), "backbone.bn1"), 0)
    x = _max_pool_3x3_s2_p1(x)
    for stage, blocks in enumerate(BLOCKS, start=1):
        stride = 2 if stage in (2, 3) else 1  # last stride 1 (design.md §1.1)
        for block in range(blocks):
            x = ref.bottleneck(x, state, f"backbone.layer{stage}.{block}",
                               stride if block == 0 else 1, downsample=block == 0)
        if stage in (3, 4):  # MAM after layer3 and layer4 (design.md §1.2)
            x = ref.mam(x, state[f"backbone.MAM{stage}.channel_attention.0.weight"],
                        state[f"backbone.MAM{stage}.channel_attention.2.weight"])
    features, _ = ref.pam(x, state["spatial_attention.weight"], state["spatial_attention.bias"])
    return bn(features, "bn_neck"), features


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("parity")
    state = authors_state_dict()
    checkpoint = folder / "mpanet_authors.pth"
    save_state_dict(checkpoint, state)
    result = CliRunner().invoke(cli, ["import-torch", str(checkpoint), "--output",
                                      str(folder / "run"), "--image-size", f"{H}x{W}"])
    assert result.exit_code == 0, result.output
    model = load_model(folder / "run")
    images = np.random.default_rng(1).uniform(0, 255, (2, H, W, 3)).astype("float32")
    expected, features = numpy_mpanet(images, state)
    return state, model, images, expected, features


def test_authors_state_dict_has_the_334_keys_of_facts_10():
    state = authors_state_dict()
    assert len(state) == 334
    assert sum(k.endswith("num_batches_tracked") for k in state) == 54
    assert state["backbone.layer4.0.downsample.0.weight"].shape == (2048, 1024, 1, 1)
    assert state["backbone.MAM3.channel_attention.0.weight"].shape == (64, 1024, 1, 1)
    assert state["backbone.MAM4.channel_attention.2.weight"].shape == (2048, 128, 1, 1)
    assert state["classifier.weight"].shape == (NUM_CLASSES, 14336)


def test_max_pool_reference_pads_with_minus_infinity():
    x = -np.arange(16.0).reshape(1, 1, 4, 4) - 1.0  # all negative: zero padding would win
    out = _max_pool_3x3_s2_p1(x)
    assert out.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(out[0, 0], [[-1.0, -2.0], [-5.0, -6.0]])


def test_embeddings_match_the_numpy_forward(imported):
    _, model, images, expected, features = imported
    assert np.abs(features).max() < 100 and np.abs(expected).max() < 100  # O(1) activations
    assert np.abs(expected).max() > 0.1
    embedding = model.embed(images)
    assert embedding.shape == (2, 14336)
    scale = np.abs(expected).max()
    assert np.abs(embedding - expected).max() / scale <= 1e-4
    np.testing.assert_allclose(embedding, expected, rtol=1e-4, atol=1e-5 * scale)


def test_pre_bn_features_and_neck_statistics(imported):
    state, model, images, _, features = imported
    out = model.forward(images, training=False)
    got = np.asarray(out["features"])
    assert np.abs(got - features).max() / np.abs(features).max() <= 1e-4
    bn = model.bn_neck
    np.testing.assert_array_equal(np.asarray(bn.gamma), state["bn_neck.weight"])
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), state["bn_neck.running_mean"])
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), state["bn_neck.running_var"])


def test_the_five_classifiers_land_on_their_heads(imported):
    state, model, images, _, _ = imported
    embedding = model.embed(images)
    keras_logits = {
        "classifier": model.classifier(embedding),
        "visible_classifier": model.visible_classifier(embedding),
        "infrared_classifier": model.infrared_classifier(embedding),
        "visible_classifier_": embedding @ np.asarray(model.visible_classifier_mean),
        "infrared_classifier_": embedding @ np.asarray(model.infrared_classifier_mean),
    }
    for head in HEADS:
        expected = embedding.astype("float64") @ state[f"{head}.weight"].astype("float64").T
        got = np.asarray(keras_logits[head])
        assert got.shape == (2, NUM_CLASSES)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(),
                                   err_msg=head)
