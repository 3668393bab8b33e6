"""PyTorch -> Keras weight layouts and loading a state dict into Keras variables with a report.

design.md §10: PyTorch stores conv weights as ``(out, in, kh, kw)`` and linear weights as
``(out, in)``; Keras wants ``(kh, kw, in, out)`` and ``(in, out)``. BatchNorm ``weight, bias,
running_mean, running_var`` are Keras ``gamma, beta, moving_mean, moving_variance``;
``num_batches_tracked`` has no Keras counterpart and is ignored.

Layer-name convention of the model (design.md §1.1, style point 2): the Keras layer name is the torch
module path with "." replaced by "_": ``conv1``, ``bn1``, ``layer3_5_conv2``, ``layer4_0_bn3``,
``layer2_0_downsample_0`` (conv), ``layer2_0_downsample_1`` (BN).

Like timm's ``load_state_dict(strict=...)``, :func:`apply_state_dict` lists missing, unexpected and
shape-mismatched keys; strict loading refuses before assigning anything.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from mpanet_tf.errors import CheckpointError

#: layout kinds understood by :func:`to_keras_layout`, with the torch rank each expects.
LAYOUT_RANKS = {"conv2d": 4, "linear": 2, "identity": None}
#: torchvision ResNet-50 blocks per stage (design.md §10).
RESNET50_BLOCKS = (3, 4, 6, 3)
#: state-dict keys ignored by default: the ImageNet classifier and BN's batch counter.
DEFAULT_IGNORE = (r"^fc\.", r"num_batches_tracked$")
_BN_FIELDS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))


def to_keras_layout(kind: str, array) -> np.ndarray:
    """One torch tensor -> the Keras layout.

    ``conv2d``: (O, I, kh, kw) -> (kh, kw, I, O); ``linear``: (out, in) -> (in, out);
    ``identity``: unchanged (vectors: BN gamma/beta/moving mean/variance, biases).

    Raises:
        ValueError: unknown ``kind``.
        CheckpointError: the array has the wrong rank for ``kind``.
    """
    if kind not in LAYOUT_RANKS:
        raise ValueError(f"unknown layout kind {kind!r}; expected one of {sorted(LAYOUT_RANKS)}")
    array = np.asarray(array)
    rank = LAYOUT_RANKS[kind]
    if rank is not None and array.ndim != rank:
        raise CheckpointError(f"a {kind} weight must have {rank} dimensions, got shape "
                              f"{array.shape}; the checkpoint does not match the model")
    if kind == "conv2d":
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if kind == "linear":
        return np.ascontiguousarray(array.T)
    return array


@dataclasses.dataclass
class LoadReport:
    """What :func:`apply_state_dict` did. ``mismatched`` holds (key, checkpoint shape in Keras
    layout, model shape)."""

    loaded: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)
    mismatched: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every mapped variable was loaded and nothing in the file was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        """One line: counts and the first ``limit`` keys of each problem list."""
        parts = [f"{len(self.loaded)} loaded"]
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected)):
            if items:
                shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
                parts.append(f"{len(items)} {label} ({shown})")
        if self.mismatched:
            shown = ", ".join(f"{k} {tuple(a)} vs model {tuple(b)}"
                              for k, a, b in self.mismatched[:limit])
            more = ", ..." if len(self.mismatched) > limit else ""
            parts.append(f"{len(self.mismatched)} shape mismatches ({shown}{more})")
        if self.ignored:
            parts.append(f"{len(self.ignored)} ignored")
        return "; ".join(parts)


def _variable_name(variable) -> str:
    return getattr(variable, "path", None) or getattr(variable, "name", "?")


def apply_state_dict(state, mapping, *, ignore=DEFAULT_IGNORE, strict: bool = True,
                     source: str = "checkpoint") -> LoadReport:
    """Assign torch tensors to Keras variables.

    Args:
        state: {torch key: array in torch layout}, e.g. from ``torch_state.load_state_dict``.
        mapping: {torch key: (Keras variable, layout kind)}; a variable needs ``.shape`` and
            ``.assign`` (``keras.Variable``).
        ignore: regular expressions (``re.search``) for state keys that may stay unused.
        strict: refuse (before assigning anything) unless every mapped key is present, every
            state key is mapped or ignored, and all shapes agree; else load what matches.
        source: the file name used in the error message.

    Raises:
        CheckpointError: strict and anything is missing, unexpected or of the wrong shape: one line
            with the counts and the first few keys of each.
    """
    for key, (_, kind) in mapping.items():
        if kind not in LAYOUT_RANKS:
            raise ValueError(f"unknown layout kind {kind!r} for {key!r}")
    patterns = [re.compile(p) for p in ignore]
    report = LoadReport()
    report.missing = [key for key in mapping if key not in state]
    for key in state:
        if key not in mapping:
            ignored = any(p.search(key) for p in patterns)
            (report.ignored if ignored else report.unexpected).append(key)
    ready = []
    for key, (variable, kind) in mapping.items():
        if key not in state:
            continue
        model_shape = tuple(int(d) for d in variable.shape)
        array = np.asarray(state[key])
        rank = LAYOUT_RANKS[kind]
        if rank is not None and array.ndim != rank:
            report.mismatched.append((key, array.shape, model_shape))
            continue
        converted = to_keras_layout(kind, array)
        if converted.shape != model_shape:
            report.mismatched.append((key, converted.shape, model_shape))
            continue
        ready.append((key, variable, converted))
    if strict and not report.complete:
        raise CheckpointError(f"{source} does not match the model: {report.summary()}; fix the "
                              "checkpoint/model pairing or load non-strictly")
    for key, variable, converted in ready:
        dtype = getattr(variable, "dtype", None)
        try:
            converted = converted.astype(np.dtype(str(dtype)), copy=False)
        except TypeError:
            converted = converted.astype(np.float32, copy=False)  # e.g. bfloat16: assign casts
        variable.assign(converted)
        report.loaded.append(key)
    return report


def conv_mapping(torch_name: str, layer) -> dict:
    """{``<name>.weight``: (kernel, "conv2d")} plus ``<name>.bias`` when the layer has one."""
    mapping = {f"{torch_name}.weight": (layer.kernel, "conv2d")}
    if getattr(layer, "bias", None) is not None:
        mapping[f"{torch_name}.bias"] = (layer.bias, "identity")
    return mapping


def linear_mapping(torch_name: str, layer) -> dict:
    """{``<name>.weight``: (Dense kernel, "linear")} plus ``<name>.bias`` when present."""
    mapping = {f"{torch_name}.weight": (layer.kernel, "linear")}
    if getattr(layer, "bias", None) is not None:
        mapping[f"{torch_name}.bias"] = (layer.bias, "identity")
    return mapping


def batch_norm_mapping(torch_name: str, layer) -> dict:
    """BatchNorm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance
    (a Keras BN built with ``scale=False`` or ``center=False`` simply lacks that entry)."""
    mapping = {}
    for torch_field, keras_field in _BN_FIELDS:
        variable = getattr(layer, keras_field, None)
        if variable is not None:
            mapping[f"{torch_name}.{torch_field}"] = (variable, "identity")
    return mapping


def resnet_torch_mapping(get_layer, prefix: str = "", blocks=RESNET50_BLOCKS) -> dict:
    """{torch key: (Keras variable, kind)} for every tensor of a torchvision ResNet-50 backbone.

    Args:
        get_layer: ``name -> Keras layer`` (``model.get_layer``) using the "." -> "_" names.
        prefix: prepended to every torch key, e.g. ``"backbone."`` for an MPANet checkpoint.
        blocks: bottleneck blocks per stage; the 1x1 downsample exists in block 0 of each stage.

    Returns 265 entries for ResNet-50: conv1 + bn1 (5), 15 per bottleneck (3 convs, 3 BN x 4),
    5 per downsample; ``num_batches_tracked`` and ``fc.*`` are not mapped (see DEFAULT_IGNORE).
    """
    def module(name, kind):
        layer = get_layer(name.replace(".", "_"))
        make = conv_mapping if kind == "conv" else batch_norm_mapping
        return make(prefix + name, layer)

    mapping = {**module("conv1", "conv"), **module("bn1", "bn")}
    for stage, count in enumerate(blocks, start=1):
        for block in range(count):
            for index in (1, 2, 3):
                mapping.update(module(f"layer{stage}.{block}.conv{index}", "conv"))
                mapping.update(module(f"layer{stage}.{block}.bn{index}", "bn"))
            if block == 0:
                mapping.update(module(f"layer{stage}.0.downsample.0", "conv"))
                mapping.update(module(f"layer{stage}.0.downsample.1", "bn"))
    return mapping
