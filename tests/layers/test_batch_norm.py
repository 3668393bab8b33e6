"""TorchBatchNorm against a numpy reference of PyTorch's BatchNorm (training and inference mode).

The update rule that differs from Keras: ``running_var`` takes the *unbiased* batch variance
(n/(n-1), n = B*H*W for BatchNorm2d, B for BatchNorm1d) while the output uses the biased one.
4-D inputs go through TensorFlow's fused batch norm, 2-D ones (the BN neck) through moments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.layers.batch_norm import TorchBatchNorm
from tests import numpy_reference as ref
from tests.helpers import run_precision_test, run_serialization_test

SHAPES = {"BatchNorm2d-fused": (4, 6, 5, 8), "BatchNorm1d-neck": (16, 8)}


def _stats(rng, channels):
    """(gamma, beta, running_mean, running_var) float64, all non-trivial."""
    return (rng.uniform(0.5, 1.5, channels), rng.normal(0, 0.5, channels),
            rng.normal(0, 1, channels), rng.uniform(0.5, 2.0, channels))


def _built(shape, gamma, beta, mean, var, center=True, cls=TorchBatchNorm):
    layer = cls(epsilon=1e-5, momentum=0.9, center=center)
    layer.build(shape)
    layer.gamma.assign(gamma.astype("float32"))
    if center:
        layer.beta.assign(beta.astype("float32"))
    layer.moving_mean.assign(mean.astype("float32"))
    layer.moving_variance.assign(var.astype("float32"))
    return layer


def _to_nchw(x):
    return np.moveaxis(x, -1, 1) if x.ndim == 4 else x


def _to_nhwc(x):
    return np.moveaxis(x, 1, -1) if x.ndim == 4 else x


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_training_steps_follow_pytorch_update_rule(shape, graph):
    """Three training steps: outputs and running statistics equal PyTorch's; Keras' own
    biased-variance update drifts from them by far more than the tolerance (the control)."""
    rng = np.random.default_rng(0)
    channels = shape[-1]
    gamma, beta, mean, var = _stats(rng, channels)
    center = len(shape) == 4  # the BN neck has no beta (its bias is frozen at 0)
    beta = beta if center else np.zeros(channels)
    layer = _built(shape, gamma, beta, mean, var, center=center)
    keras_bn = _built(shape, gamma, beta, mean, var, center=center, cls=keras.layers.BatchNormalization)

    def train(x):
        return layer(x, training=True)

    call = tf.function(train) if graph else train
    for _ in range(3):
        x = rng.normal(2.0, 3.0, shape)
        y = call(tf.constant(x, tf.float32))
        keras_bn(x.astype("float32"), training=True)
        y_ref, mean, var = ref.batch_norm_train(_to_nchw(x), gamma, beta, mean, var)
        np.testing.assert_allclose(np.asarray(y), _to_nhwc(y_ref), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(layer.moving_mean), mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), var, rtol=1e-5)
    keras_gap = np.abs(np.asarray(keras_bn.moving_variance) - var) / var
    assert keras_gap.max() > 1e-3, keras_gap.max()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_gradients_match_numpy_backward(shape):
    rng = np.random.default_rng(1)
    gamma, beta, mean, var = _stats(rng, shape[-1])
    layer = _built(shape, gamma, beta, mean, var)
    x = rng.normal(1.0, 2.0, shape)
    dy = rng.normal(size=shape)

    @tf.function
    def gradients(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True) * tf.constant(dy, tf.float32))
        return tape.gradient(loss, [x, layer.gamma, layer.beta])

    got = [np.asarray(g) for g in gradients(tf.constant(x, tf.float32))]
    dx, dgamma, dbeta = ref.batch_norm_train_backward(_to_nchw(x), gamma, _to_nchw(dy))
    np.testing.assert_allclose(got[0], _to_nhwc(dx), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(got[1], dgamma, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[2], dbeta, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_inference_uses_running_statistics_and_leaves_them(shape):
    rng = np.random.default_rng(2)
    gamma, beta, mean, var = _stats(rng, shape[-1])
    layer = _built(shape, gamma, beta, mean, var)
    x = rng.normal(size=shape)
    y = np.asarray(layer(x.astype("float32"), training=False))
    np.testing.assert_allclose(y, _to_nhwc(ref.batch_norm_inference(_to_nchw(x), gamma, beta, mean, var)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), var, rtol=1e-7)
    # a frozen layer (trainable=False) behaves as in inference mode, as Keras' does
    layer.trainable = False
    np.testing.assert_allclose(np.asarray(layer(x.astype("float32"), training=True)), y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(layer.moving_variance), var, rtol=1e-7)


def test_is_a_keras_batch_norm_with_the_same_weights_and_config():
    """BN folding, the .pth key mapping and checkpoints read it as keras.layers.BatchNormalization."""
    layer = TorchBatchNorm(epsilon=1e-5, momentum=0.9, center=False, name="bn_neck")
    layer.build((None, 12))
    keras_bn = keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, center=False, name="bn_neck")
    keras_bn.build((None, 12))
    assert isinstance(layer, keras.layers.BatchNormalization)
    assert [w.path for w in layer.weights] == [w.path for w in keras_bn.weights]
    assert json.dumps(layer.get_config(), sort_keys=True) == json.dumps(keras_bn.get_config(), sort_keys=True)
    run_serialization_test(layer)
    with pytest.raises(ValueError, match="renorm"):
        TorchBatchNorm(renorm=True)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_mixed_precision_training_mode(shape):
    run_precision_test(TorchBatchNorm, {"epsilon": 1e-5, "momentum": 0.9}, shape, call_kwargs={"training": True})
    # bfloat16 input: output within bf16 rounding of the float32 computation, statistics in float32
    rng = np.random.default_rng(3)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    exact = TorchBatchNorm(epsilon=1e-5, momentum=0.9)
    expected = np.asarray(exact(x, training=True))
    mixed = TorchBatchNorm(epsilon=1e-5, momentum=0.9, dtype="mixed_bfloat16")
    got = mixed(keras.ops.cast(x, "bfloat16"), training=True)
    assert keras.backend.standardize_dtype(got.dtype) == "bfloat16"
    np.testing.assert_allclose(np.asarray(keras.ops.cast(got, "float32")), expected, atol=0.05)
    np.testing.assert_allclose(np.asarray(mixed.moving_variance), np.asarray(exact.moving_variance), rtol=2e-2)


SYNC_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mpanet_tf.layers.batch_norm import TorchBatchNorm
    x = np.random.default_rng(4).normal(1.0, 2.0, (4, 3)).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
    with strategy.scope():
        layer = TorchBatchNorm(epsilon=1e-5, momentum=0.9, center=False, synchronized=True)
        layer.build((None, 3))
    data = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(4))
    batch = next(iter(data))
    strategy.run(tf.function(lambda b: layer(b, training=True)), args=(batch,))
    print(json.dumps(np.asarray(layer.moving_variance).tolist()))
""")


def test_synchronized_neck_uses_the_global_batch_count():
    """Under MirroredStrategy (2 logical CPUs, 2 samples each), a synchronized BN's unbiased
    variance uses n = the global batch (4), not the replica's (2)."""
    result = subprocess.run([sys.executable, "-c", SYNC_SCRIPT], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
    x = np.random.default_rng(4).normal(1.0, 2.0, (4, 3)).astype("float32").astype(np.float64)
    _, _, expected = ref.batch_norm_train(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
