"""Self-test of tests/helpers.py on stock and deliberately broken tiny layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.helpers import run_layer_test, run_precision_test, run_saving_test, run_serialization_test

# Stock Dense leaves these out of get_config when they are None (our layers must not).
DENSE_UNUSED_PARAMS = ("lora_rank", "lora_alpha", "activity_regularizer")


@keras.saving.register_keras_serializable(package="mpanet_tf_tests")
class Halves(keras.layers.Layer):
    """Splits the last axis in two: (B, 2n) -> [(B, n), (B, n)], scaled by a trainable scalar."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def build(self, input_shape):
        self.factor = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.scale))

    def call(self, x):
        half = x.shape[-1] // 2
        return [x[:, :half] * self.factor, x[:, half:] * self.factor]

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="mpanet_tf_tests")
class ForgetsItsArgument(keras.layers.Layer):
    """Overrides get_config (which turns off Keras' automatic config) but omits ``units``."""

    def __init__(self, units=2, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, x):
        return x

    def get_config(self):
        return super().get_config()


class IgnoresDtypePolicy(keras.layers.Layer):
    """Right output dtype and float32 variables, but its sublayer computes in the global policy."""

    def build(self, input_shape):
        self.inner = keras.layers.Dense(2)  # no dtype=self.dtype_policy

    def call(self, x):
        return keras.ops.cast(self.inner(x), self.compute_dtype)


@keras.saving.register_keras_serializable(package="mpanet_tf_tests")
class UnsavedState(keras.layers.Layer):
    """Adds a random offset drawn in __init__ and never saved: a reload changes the output."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.offset = np.random.default_rng().normal(size=(3,)).astype("float32")

    def call(self, x):
        return x + self.offset


def test_layer_test_on_dense():
    layer, out = run_layer_test(keras.layers.Dense, {"units": 3}, (2, 4), (2, 3), 2, 0)
    assert layer.units == 3 and tuple(out.shape) == (2, 3)


def test_layer_test_with_several_outputs():
    run_layer_test(Halves, {"scale": 2.0}, (2, 6), [(2, 3), (2, 3)], expected_num_trainable_weights=1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expected_output_shape": (2, 4)},
        {"expected_output_shape": (2, 3), "expected_num_trainable_weights": 1},
        {"expected_output_shape": (2, 3), "expected_num_non_trainable_weights": 1},
    ],
)
def test_layer_test_catches_wrong_expectations(kwargs):
    with pytest.raises(AssertionError):
        run_layer_test(keras.layers.Dense, {"units": 3}, (2, 4), **kwargs)


def test_serialization_test_on_dense():
    revived = run_serialization_test(keras.layers.Dense(3, activation="relu"), DENSE_UNUSED_PARAMS)
    assert revived.units == 3
    run_serialization_test(Halves(scale=0.5))


def test_serialization_test_catches_missing_init_parameters():
    with pytest.raises(AssertionError, match="units"):
        run_serialization_test(ForgetsItsArgument(units=4))
    with pytest.raises(AssertionError, match="lora_rank"):
        run_serialization_test(keras.layers.Dense(3))


def test_precision_test_on_dense_restores_policy():
    keras.config.set_dtype_policy("float32")
    run_precision_test(keras.layers.Dense, {"units": 3}, (2, 4))
    assert keras.config.dtype_policy().name == "float32"


def test_precision_test_catches_sublayer_without_policy():
    with pytest.raises(AssertionError, match="sublayer"):
        run_precision_test(IgnoresDtypePolicy, {}, (2, 4))
    assert keras.config.dtype_policy().name == "float32"


def _tiny_model(layer):
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(3)(layer(inputs)))


def test_saving_test_round_trip(tmp_path):
    model = _tiny_model(keras.layers.Dense(3))
    inputs = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")
    loaded = run_saving_test(model, inputs, tmp_path)
    np.testing.assert_allclose(loaded.get_weights()[0], model.get_weights()[0])


def test_saving_test_catches_different_outputs(tmp_path):
    model = _tiny_model(UnsavedState())
    inputs = np.ones((2, 3), "float32")
    with pytest.raises(AssertionError, match="differs"):
        run_saving_test(model, inputs, tmp_path)
