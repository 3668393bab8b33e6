"""torchvision-layout ResNet-50: structure, strides, padding and a bottleneck against numpy."""

import keras
import numpy as np

from mpanet_tf.layers.resnet import BLOCKS_PER_STAGE, bottleneck, build_resnet50
from tests import numpy_reference as ref


def test_output_stride_and_channels():
    model = build_resnet50(last_stride=1)
    out3, out4 = model(np.zeros((1, 96, 48, 3), "float32"))
    assert out3.shape == (1, 6, 3, 1024) and out4.shape == (1, 6, 3, 2048)
    _, out4 = build_resnet50(last_stride=2)(np.zeros((1, 96, 64, 3), "float32"))
    assert out4.shape == (1, 3, 2, 2048)


def test_parameter_count_matches_torchvision_without_fc():
    model = build_resnet50()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    # torchvision resnet50: 25,557,032 parameters including fc (2048*1000 + 1000).
    assert trainable == 25_557_032 - 2048 * 1000 - 1000
    names = {layer.name for layer in model.layers}
    for stage, blocks in enumerate(BLOCKS_PER_STAGE, start=1):
        assert f"layer{stage}_0_downsample_0" in names
        assert f"layer{stage}_{blocks - 1}_conv3" in names
        assert f"layer{stage}_{blocks}_conv1" not in names
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers)


def _bottleneck_state(rng, in_c, planes, prefix):
    state = {}
    shapes = {"conv1": (planes, in_c, 1, 1), "conv2": (planes, planes, 3, 3), "conv3": (planes * 4, planes, 1, 1),
              "downsample.0": (planes * 4, in_c, 1, 1)}
    for name, shape in shapes.items():
        state[f"{prefix}.{name}.weight"] = rng.normal(size=shape) * np.sqrt(2 / np.prod(shape[1:]))
    for bn, c in (("bn1", planes), ("bn2", planes), ("bn3", planes * 4), ("downsample.1", planes * 4)):
        state[f"{prefix}.{bn}.weight"] = rng.uniform(0.5, 1.5, c)
        state[f"{prefix}.{bn}.bias"] = rng.normal(size=c) * 0.1
        state[f"{prefix}.{bn}.running_mean"] = rng.normal(size=c) * 0.1
        state[f"{prefix}.{bn}.running_var"] = rng.uniform(0.5, 2.0, c)
    return state


def test_strided_bottleneck_matches_pytorch_padding():
    rng = np.random.default_rng(0)
    inputs = keras.Input((None, None, 8))
    model = keras.Model(inputs, bottleneck(inputs, 4, 2, True, "layer2_0"))
    state = _bottleneck_state(rng, 8, 4, "layer2.0")
    for layer in model.layers:
        key = layer.name.replace("layer2_0_", "layer2.0.").replace("downsample_", "downsample.")
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(np.transpose(state[f"{key}.weight"], (2, 3, 1, 0)))
        elif isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([state[f"{key}.weight"], state[f"{key}.bias"],
                               state[f"{key}.running_mean"], state[f"{key}.running_var"]])
    x = rng.normal(size=(2, 8, 7, 5))  # odd sizes: PyTorch and Keras "same" padding would differ
    expected = ref.bottleneck(x, state, "layer2.0", stride=2, downsample=True)
    got = keras.ops.convert_to_numpy(model(ref.to_nhwc(x).astype("float32"), training=False))
    assert got.shape == (2, 4, 3, 16)
    np.testing.assert_allclose(got, ref.to_nhwc(expected), rtol=1e-4, atol=1e-4)
