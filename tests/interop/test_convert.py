"""Torch -> Keras layouts, strict/non-strict loading with a report, the ResNet-50 key map.

design.md §10: conv (out, in, kh, kw) -> (kh, kw, in, out), linear (out, in) -> (in, out), BN names.
"""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.convert import (
    apply_state_dict,
    batch_norm_mapping,
    conv_mapping,
    linear_mapping,
    resnet_torch_mapping,
    to_keras_layout,
)

RNG = np.random.default_rng(0)


class FakeVariable:
    """What apply_state_dict needs of a keras.Variable: shape, dtype, assign, path."""

    def __init__(self, shape, path):
        self.shape, self.path, self.dtype = tuple(shape), path, "float32"
        self.value, self.assigned = np.zeros(shape, np.float32), 0

    def assign(self, value):
        assert value.shape == self.shape
        self.value, self.assigned = np.array(value), self.assigned + 1


class FakeLayer:
    def __init__(self, name, **shapes):
        for attr, shape in shapes.items():
            setattr(self, attr, None if shape is None else FakeVariable(shape, f"{name}/{attr}"))


def test_conv2d_layout_moves_each_element_where_keras_expects_it():
    torch_w = RNG.normal(size=(5, 3, 2, 4))  # (out, in, kh, kw)
    keras_w = to_keras_layout("conv2d", torch_w)
    assert keras_w.shape == (2, 4, 3, 5)
    for o, i, y, x in np.ndindex(*torch_w.shape):
        assert keras_w[y, x, i, o] == torch_w[o, i, y, x]


def test_linear_and_identity_layouts():
    torch_w = RNG.normal(size=(6, 4))
    np.testing.assert_array_equal(to_keras_layout("linear", torch_w)[3, 5], torch_w[5, 3])
    assert to_keras_layout("linear", torch_w).shape == (4, 6)
    vector = RNG.normal(size=7)
    np.testing.assert_array_equal(to_keras_layout("identity", vector), vector)
    with pytest.raises(CheckpointError, match=r"\(6, 4\)"):
        to_keras_layout("conv2d", torch_w)
    with pytest.raises(ValueError, match="deconv"):
        to_keras_layout("deconv", torch_w)


def test_loaded_keras_layers_compute_what_torch_computes():
    """Conv2d, BatchNorm2d (eval), Linear in torch's formulas (numpy) vs the loaded Keras layers."""
    import keras

    x = RNG.normal(size=(2, 5, 6, 3)).astype(np.float32)  # NHWC
    conv_w = RNG.normal(size=(4, 3, 3, 2)).astype(np.float32)  # OIHW, kh=3, kw=2
    gamma, beta = RNG.normal(size=4), RNG.normal(size=4)
    mean, var = RNG.normal(size=4), RNG.uniform(0.5, 2.0, size=4)
    fc_w, fc_b = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=3)

    conv = keras.layers.Conv2D(4, (3, 2), use_bias=False, name="conv1")
    bn = keras.layers.BatchNormalization(epsilon=1e-5, name="bn1")
    dense = keras.layers.Dense(3, name="fc")
    inputs = keras.Input((5, 6, 3))
    features = bn(conv(inputs), training=False)
    outputs = dense(keras.ops.mean(features, axis=(1, 2)))
    model = keras.Model(inputs, outputs)

    state = {"conv1.weight": conv_w, "bn1.weight": gamma, "bn1.bias": beta,
             "bn1.running_mean": mean, "bn1.running_var": var,
             "bn1.num_batches_tracked": np.array(7), "fc.weight": fc_w, "fc.bias": fc_b}
    mapping = {**conv_mapping("conv1", conv), **batch_norm_mapping("bn1", bn),
               **linear_mapping("fc", dense)}
    report = apply_state_dict(state, mapping, ignore=(r"num_batches_tracked$",))
    assert report.complete and len(report.loaded) == 7
    assert report.ignored == ["bn1.num_batches_tracked"]

    # torch: out[b, o, y, x] = sum_{i, ky, kx} w[o, i, ky, kx] * in[b, i, y + ky, x + kx]
    expected = np.zeros((2, 3, 5, 4))
    for y in range(3):
        for xx in range(5):
            patch = x[:, y:y + 3, xx:xx + 2, :]  # (B, kh, kw, in)
            expected[:, y, xx, :] = np.einsum("bhwi,oihw->bo", patch, conv_w)
    expected = (expected - mean) / np.sqrt(var + 1e-5) * gamma + beta
    expected = expected.mean(axis=(1, 2)) @ fc_w.T + fc_b
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


def make_state(mapping, skip=()):
    """A state dict matching ``mapping`` (torch layouts), random values."""
    state = {}
    for key, (variable, kind) in mapping.items():
        if key in skip:
            continue
        shape = variable.shape
        if kind == "conv2d":
            shape = (shape[3], shape[2], shape[0], shape[1])
        elif kind == "linear":
            shape = shape[::-1]
        state[key] = RNG.normal(size=shape).astype(np.float32)
    return state


def small_mapping():
    conv = FakeLayer("conv", kernel=(3, 3, 2, 4), bias=None)
    bn = FakeLayer("bn", gamma=(4,), beta=(4,), moving_mean=(4,), moving_variance=(4,))
    head = FakeLayer("head", kernel=(4, 5), bias=(5,))
    return {**conv_mapping("conv", conv), **batch_norm_mapping("bn", bn),
            **linear_mapping("head", head)}


def test_strict_refuses_before_assigning_anything_and_lists_all_problems():
    mapping = small_mapping()
    state = make_state(mapping, skip=("bn.running_var", "head.bias"))
    state["conv.weight"] = np.zeros((4, 2, 3, 5), np.float32)  # kw 5 instead of 3
    state["extra.weight"] = np.zeros(3, np.float32)
    state["fc.weight"] = np.zeros((2, 2), np.float32)  # ignored by default
    state["bn.num_batches_tracked"] = np.array(3)       # ignored by default
    with pytest.raises(CheckpointError) as caught:
        apply_state_dict(state, mapping, source="ckpt.pth")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("ckpt.pth")
    assert "2 missing (bn.running_var, head.bias)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "1 shape mismatches (conv.weight (3, 5, 2, 4) vs model (3, 3, 2, 4))" in message
    assert "fc.weight" not in message
    assert all(variable.assigned == 0 for variable, _ in mapping.values())


def test_non_strict_loads_what_matches_and_reports_the_rest():
    mapping = small_mapping()
    state = make_state(mapping, skip=("head.bias",))
    state["conv.weight"] = state["conv.weight"][:2]  # 2 output channels instead of 4
    state["fc.bias"] = np.zeros(2, np.float32)
    report = apply_state_dict(state, mapping, strict=False)
    assert report.missing == ["head.bias"]
    assert [m[0] for m in report.mismatched] == ["conv.weight"]
    assert report.unexpected == [] and report.ignored == ["fc.bias"]
    assert sorted(report.loaded) == sorted(["bn.weight", "bn.bias", "bn.running_mean",
                                            "bn.running_var", "head.weight"])
    variables = {key: variable for key, (variable, _) in mapping.items()}
    np.testing.assert_array_equal(variables["head.weight"].value, state["head.weight"].T)
    np.testing.assert_array_equal(variables["bn.running_var"].value, state["bn.running_var"])
    assert variables["conv.weight"].assigned == 0 and variables["head.bias"].assigned == 0
    assert "1 missing (head.bias)" in report.summary()


def fake_resnet_get_layer(requested):
    """get_layer returning conv/BN stand-ins (shapes unimportant) and recording the names asked."""
    layers = {}

    def get_layer(name):
        requested.append(name)
        if name not in layers:
            if "bn" in name or name.endswith("downsample_1"):
                layers[name] = FakeLayer(name, gamma=(2,), beta=(2,), moving_mean=(2,),
                                         moving_variance=(2,))
            else:
                layers[name] = FakeLayer(name, kernel=(1, 1, 2, 2), bias=None)
        return layers[name]

    return get_layer, layers


def torchvision_resnet50_keys():
    """The 320 keys of torchvision's resnet50 state dict, spelled out from its module tree."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{f}" for f in bn]
    for stage, count in zip((1, 2, 3, 4), (3, 4, 6, 3)):
        for block in range(count):
            for j in (1, 2, 3):
                keys.append(f"layer{stage}.{block}.conv{j}.weight")
                keys += [f"layer{stage}.{block}.bn{j}.{f}" for f in bn]
            if block == 0:
                keys.append(f"layer{stage}.0.downsample.0.weight")
                keys += [f"layer{stage}.0.downsample.1.{f}" for f in bn]
    return keys + ["fc.weight", "fc.bias"]


def test_resnet50_mapping_covers_torchvision_keys():
    requested = []
    get_layer, layers = fake_resnet_get_layer(requested)
    mapping = resnet_torch_mapping(get_layer)
    keys = torchvision_resnet50_keys()
    assert len(keys) == 320
    assert len(mapping) == 1 + 4 + 16 * (3 + 3 * 4) + 4 * (1 + 4) == 265
    assert set(mapping) == {k for k in keys if not k.endswith("num_batches_tracked")
                            and not k.startswith("fc.")}
    variable, kind = mapping["layer3.5.bn3.running_var"]
    assert variable is layers["layer3_5_bn3"].moving_variance and kind == "identity"
    variable, kind = mapping["layer4.0.downsample.0.weight"]
    assert variable is layers["layer4_0_downsample_0"].kernel and kind == "conv2d"
    assert mapping["bn1.weight"][0] is layers["bn1"].gamma
    assert "layer2_1_downsample_0" not in requested and "layer1_2_conv3" in requested

    def torch_shape(key):  # the fake layers hold 2 channels; counters are 0-d
        if key.endswith("num_batches_tracked"):
            return ()
        is_conv = ".conv" in key or key == "conv1.weight" or "downsample.0" in key
        return (2, 2, 1, 1) if is_conv else (2,)

    state = {key: np.zeros(torch_shape(key), np.float32) for key in keys}
    report = apply_state_dict(state, mapping)  # strict; fc.* and the 53 counters ignored
    assert len(report.loaded) == 265 and len(report.ignored) == 53 + 2


def test_resnet_mapping_prefix_for_mpanet_checkpoints():
    get_layer, _ = fake_resnet_get_layer([])
    mapping = resnet_torch_mapping(get_layer, prefix="backbone.", blocks=(1, 1, 1, 1))
    assert len(mapping) == 5 + 4 * 15 + 4 * 5
    assert all(key.startswith("backbone.") for key in mapping)
    assert "backbone.layer4.0.downsample.1.running_mean" in mapping
