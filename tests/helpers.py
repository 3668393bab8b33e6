"""Shared test helpers for Keras layers and models (style.md point 5).

Modelled on keras-hub's ``src/tests/test_case.py`` but written here, because ``keras.src.testing``
is private API:

- :func:`run_layer_test`: build and call a layer eagerly and symbolically; output shapes, weight
  counts.
- :func:`run_serialization_test`: ``get_config`` is JSON-serialisable, survives ``from_config`` and
  ``keras.saving`` (de)serialisation unchanged, and names every ``__init__`` parameter.
- :func:`run_precision_test`: under ``mixed_bfloat16`` and ``mixed_float16`` the outputs use the
  compute dtype and the variables stay float32; the global policy is restored afterwards.
- :func:`run_saving_test`: ``.keras`` save and load give the same outputs.

Inputs are small random float32 arrays (seeded); keep shapes tiny (style.md point 6).
"""

from __future__ import annotations

import inspect
import json
import warnings

import keras
import numpy as np

MIXED_POLICIES = ("mixed_bfloat16", "mixed_float16")


def random_inputs(shape, seed=0, dtype="float32"):
    """A seeded ``N(0, 1)`` array of ``shape`` (a tuple) or a list/dict of arrays for nested shapes."""
    rng = np.random.default_rng(seed)

    def make(spec):
        if isinstance(spec, dict):
            return {key: make(value) for key, value in spec.items()}
        if isinstance(spec, list):
            return [make(value) for value in spec]
        return rng.normal(size=tuple(spec)).astype(dtype)

    return make(shape)


def _is_shape(spec):
    return isinstance(spec, tuple) and all(d is None or isinstance(d, int) for d in spec)


def _flat_pairs(value, expected, where="output"):
    """Pair the leaves of ``value`` with those of ``expected`` (tuples of ints are leaves)."""
    if expected is None or _is_shape(expected) or isinstance(expected, str):
        return [(where, value, expected)]
    if isinstance(expected, dict):
        assert isinstance(value, dict), f"{where}: expected a dict, got {type(value).__name__}"
        assert set(value) == set(expected), f"{where}: keys {sorted(value)} != expected {sorted(expected)}"
        return [p for key in expected for p in _flat_pairs(value[key], expected[key], f"{where}[{key!r}]")]
    assert isinstance(value, (list, tuple)), f"{where}: expected a sequence, got {type(value).__name__}"
    assert len(value) == len(expected), f"{where}: {len(value)} items, expected {len(expected)}"
    return [p for i, (v, e) in enumerate(zip(value, expected)) for p in _flat_pairs(v, e, f"{where}[{i}]")]


def _assert_shapes(output, expected_shape):
    for where, value, shape in _flat_pairs(output, expected_shape):
        assert tuple(value.shape) == tuple(shape), f"{where}: shape {tuple(value.shape)}, expected {tuple(shape)}"


def _symbolic_inputs(shape):
    if isinstance(shape, dict):
        return {key: _symbolic_inputs(value) for key, value in shape.items()}
    if isinstance(shape, list):
        return [_symbolic_inputs(value) for value in shape]
    return keras.Input(batch_shape=tuple(shape))


def _call(layer, inputs, call_kwargs):
    return layer(inputs, **(call_kwargs or {}))


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_shape,
    expected_output_shape,
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=None,
    call_kwargs=None,
    run_symbolic=True,
    seed=0,
):
    """Build, call and check a layer; return ``(layer, outputs)`` for further assertions.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_shape: a shape tuple with the batch size, or a list/dict of them for several inputs.
        expected_output_shape: a shape tuple, or a list/dict of them matching the outputs.
        expected_num_trainable_weights, expected_num_non_trainable_weights: checked when given.
        call_kwargs: extra call arguments (e.g. ``{"training": True}``).
        run_symbolic: also call a fresh instance on ``keras.Input`` tensors and check the
            symbolic output shapes (the layer works inside a functional model).
        seed: input seed.
    """
    layer = layer_cls(**init_kwargs)
    inputs = random_inputs(input_shape, seed)
    outputs = _call(layer, inputs, call_kwargs)
    assert layer.built, f"{layer_cls.__name__} is not built after its first call"
    _assert_shapes(outputs, expected_output_shape)
    for where, value, _ in _flat_pairs(outputs, expected_output_shape):
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(keras.ops.cast(value, "float32")))), (
            f"{where} has non-finite values"
        )
    if expected_num_trainable_weights is not None:
        got = len(layer.trainable_weights)
        assert got == expected_num_trainable_weights, (
            f"{got} trainable weights, expected {expected_num_trainable_weights}"
        )
    if expected_num_non_trainable_weights is not None:
        got = len(layer.non_trainable_weights)
        assert got == expected_num_non_trainable_weights, (
            f"{got} non-trainable weights, expected {expected_num_non_trainable_weights}"
        )
    if run_symbolic:
        symbolic = _call(layer_cls(**init_kwargs), _symbolic_inputs(input_shape), call_kwargs)
        _assert_shapes(symbolic, expected_output_shape)
    return layer, outputs


def _json(config):
    return json.dumps(config, sort_keys=True, default=str)


def run_serialization_test(layer, ignored_init_params=()):
    """Config round trip of a layer (or model); returns the revived object.

    Checks that ``get_config()`` is JSON-serialisable, that ``from_config`` and
    ``keras.saving.serialize_keras_object`` / ``deserialize_keras_object`` (which needs
    ``register_keras_serializable``) give the same class with a JSON-equal config, and that every
    named ``__init__`` parameter (except ``ignored_init_params``) appears in the config.
    """
    config = layer.get_config()
    original = json.dumps(config, sort_keys=True)  # raises TypeError when not JSON-serialisable

    revived = layer.__class__.from_config(config)
    assert type(revived) is type(layer)
    assert _json(revived.get_config()) == original, "get_config changed after from_config"

    serialized = keras.saving.serialize_keras_object(layer)
    json.dumps(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer), f"deserialised as {type(restored).__name__}"
    assert _json(restored.get_config()) == original, "get_config changed after deserialize_keras_object"

    signature = inspect.signature(layer.__class__.__init__)
    params = [
        name
        for name, p in signature.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [name for name in params if name not in config and name not in ignored_init_params]
    assert not missing, f"{layer.__class__.__name__}.get_config() lacks __init__ parameters {missing}"
    return revived


def _sublayers(layer):
    """All nested layers (uses Keras' ``_flatten_layers``, the traversal Keras itself uses)."""
    flatten = getattr(layer, "_flatten_layers", None)
    return list(flatten(include_self=False)) if flatten else []


def _floating(dtype):
    return "float" in str(dtype)


def run_precision_test(layer_cls, init_kwargs, input_shape, call_kwargs=None, seed=0):
    """Outputs in the compute dtype and float32 variables under both mixed policies.

    For each of ``mixed_bfloat16`` and ``mixed_float16``: the layer is built once with the policy
    set globally and once with ``dtype=policy`` under a float32 global policy (which catches
    sublayers that ignore ``self.dtype_policy``). Every floating output must have the compute
    dtype, every floating variable must be float32, and every sublayer must carry the policy.
    The global policy is restored afterwards, also on failure.
    """
    previous = keras.config.dtype_policy()
    try:
        for policy in MIXED_POLICIES:
            compute = policy.split("_")[1]
            for global_policy, kwargs in (
                (policy, dict(init_kwargs)),
                ("float32", {**init_kwargs, "dtype": policy}),
            ):
                keras.config.set_dtype_policy(global_policy)
                layer = layer_cls(**kwargs)
                outputs = _call(layer, random_inputs(input_shape, seed), call_kwargs)
                for i, out in enumerate(keras.tree.flatten(outputs)):
                    if _floating(out.dtype):
                        assert keras.backend.standardize_dtype(out.dtype) == compute, (
                            f"{policy} (global {global_policy}): output {i} is {out.dtype}, expected {compute}"
                        )
                for variable in layer.weights:
                    if _floating(variable.dtype):
                        assert variable.dtype == "float32", (
                            f"{policy}: variable {variable.path} is {variable.dtype}, expected float32"
                        )
                for sub in _sublayers(layer):
                    assert sub.dtype_policy.name == policy, (
                        f"{policy} (global {global_policy}): sublayer {sub.name} has policy "
                        f"{sub.dtype_policy.name}; pass dtype=self.dtype_policy"
                    )
    finally:
        keras.config.set_dtype_policy(previous)


def run_saving_test(model, inputs, tmp_path, atol=1e-6, call_kwargs=None):
    """Save ``model`` as ``.keras``, load it and compare outputs on ``inputs``; return the loaded model.

    Both models are called with ``training=False`` unless ``call_kwargs`` says otherwise.
    """
    kwargs = {"training": False, **(call_kwargs or {})}
    expected = keras.tree.flatten(model(inputs, **kwargs))
    path = str(tmp_path / "model.keras")
    with warnings.catch_warnings():
        # Keras' own convert_to_numpy on tf.Variable under numpy 2 (not ours): keep test output clean.
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
        model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    got = keras.tree.flatten(loaded(inputs, **kwargs))
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(expected, got)):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(keras.ops.cast(b, "float32")),
            keras.ops.convert_to_numpy(keras.ops.cast(a, "float32")),
            atol=atol,
            err_msg=f"output {i} differs after .keras save/load",
        )
    return loaded
