"""Which blocks of the int8 model stay float32: measured agreement with the float model, and a
sensitivity-guided search until it reaches ``--min-cosine``.

The int8 export (:mod:`mpanet_tf.runtimes.quantized`) quantises every convolution it can. Whether
that keeps the embedding's direction depends on the model: the quickstart model measured a mean
cosine to float32 of 0.995, another trained model 0.97 with the same settings (issue 25). So the
export measures it, on **held-out** images (drawn like the calibration images, never calibrated
on), and when the mean is below the target it keeps the costliest blocks in float32:

1. quantise everything (the activation ranges are calibrated once and cached; every later
   quantisation reads the cache) and measure the mean cosine; at or above the target: done;
2. otherwise measure each block's cost alone: only that block's convolutions quantised, the rest
   of the model float32; cost = 1 - its mean cosine;
3. keep the costliest block, then the two costliest, ... in float32, re-quantising and measuring
   each time, until the mean cosine reaches the target or :data:`MAX_FLOAT32_SHARE` of the blocks
   are float32; then the target cannot be met: the best model measured is written (the whole
   quantisation included: on a model with small, even costs keeping blocks float32 can lower the
   mean), and a one-line warning says so.

A block (:func:`block_of`) is one torchvision bottleneck (``layer3_2``: its three convolutions and
the downsample), the stem convolution, or one MAM's channel-attention convolutions. The figure
written into ``mpanet_export.json`` is the mean cosine of the written model, measured by ONNX
Runtime on the held-out images (their paths are recorded beside it, so anyone can re-measure it).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mpanet_tf.runtimes.onnx import onnx_embedder, onnx_session

# The search keeps at most this share of the blocks in float32: past it, most of the convolution
# compute is float32 and the int8 model has lost its point; the export then says the target
# cannot be met.
MAX_FLOAT32_SHARE = 0.5
_BLOCK = re.compile(r"(layer\d+_\d+|MAM\d)")


def block_of(node_name: str) -> str:
    """The block a ``Conv`` node belongs to, read from the Keras layer name in its ONNX name:
    ``layer3_2`` (a bottleneck, downsample included), ``MAM3``/``MAM4``, or ``stem``."""
    found = _BLOCK.search(node_name)
    return found.group(1) if found else "stem"


def conv_blocks(model, exclude) -> dict[str, list[str]]:
    """{block: [Conv node names]} of the ONNX ``model``'s convolutions not in ``exclude``, in
    graph order."""
    blocks: dict[str, list[str]] = {}
    excluded = set(exclude)
    for node in model.graph.node:
        if node.op_type == "Conv" and node.name not in excluded:
            blocks.setdefault(block_of(node.name), []).append(node.name)
    return blocks


def mean_cosine(got, expected) -> np.ndarray:
    """Per-row cosine of two (N, D) arrays (float64), the zero vector counting as cosine 0."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    dots = np.einsum("nd,nd->n", got, expected)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def embed_onnx(path, images, batch_size: int = 16) -> np.ndarray:
    """(N, D) float32 outputs of the ONNX file ``path`` on ``images`` (N, H, W, 3) float32,
    ``batch_size`` at a time, in a fresh ONNX Runtime session (the runtime's own
    :func:`~mpanet_tf.runtimes.onnx.onnx_session` and :func:`~mpanet_tf.runtimes.onnx.onnx_embedder`)."""
    embed = onnx_embedder(onnx_session(path))
    return np.concatenate([embed(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


@dataclass
class SearchResult:
    """The written model's measured agreement and what the search tried."""

    mean_cosine: float
    worst_cosine: float
    float32_blocks: list[str]
    met: bool
    trials: int
    block_costs: dict[str, float] = field(default_factory=dict)


class AgreementProbe:
    """Measures an int8 ONNX file against the float32 one on fixed held-out images."""

    def __init__(self, float_path, images):
        self.images = np.asarray(images, np.float32)
        self.reference = embed_onnx(float_path, self.images)
        self.trials = 0

    def __call__(self, int8_path) -> np.ndarray:
        self.trials += 1
        return mean_cosine(embed_onnx(int8_path, self.images), self.reference)


def search_float32_blocks(quantize, probe: AgreementProbe, blocks: dict[str, list[str]], min_cosine: float,
                          output_path, scratch, progress: bool = True) -> SearchResult:
    """Quantise with ``quantize(path, nodes_to_quantize, nodes_to_exclude)`` (None = every
    convolution) and keep the costliest blocks float32 until ``probe``'s mean cosine reaches
    ``min_cosine``; the chosen model is moved to ``output_path``.

    Args:
        quantize: writes an int8 ONNX file to ``path``; both node lists are Conv node names.
        probe: the held-out measurement.
        blocks: {block: its Conv node names} of the quantisable convolutions.
        min_cosine: the target mean cosine (<= 0: measure only).
        output_path: where the written model goes.
        scratch: a folder for the trial models.
    """
    scratch = Path(scratch)
    whole = scratch / "trial-all.onnx"
    quantize(whole, None, [])
    best, costs = (whole, [], probe(whole)), {}  # (file, float32 blocks, per-image cosines)
    if best[2].mean() < min_cosine:
        best, costs = _keep_costliest(quantize, probe, blocks, min_cosine, scratch, best, progress)
    path, kept, cosines = best
    shutil.move(os.fspath(path), os.fspath(output_path))
    result = SearchResult(float(cosines.mean()), float(cosines.min()), kept, bool(cosines.mean() >= min_cosine),
                          probe.trials, costs)
    if not result.met:
        limit = _limit(blocks)
        warnings.warn(f"int8: mean cosine to float32 {result.mean_cosine:.4f} on {len(probe.images)} held-out "
                      f"images is below --min-cosine {min_cosine:g}, the best of the models measured with up to "
                      f"{limit} of {len(blocks)} blocks kept float32; the int8 model is written with "
                      f"{len(kept)} float32 blocks. Use the float32 ONNX model, calibrate on more images of the "
                      "target data, or lower --min-cosine")
    return result


def _limit(blocks) -> int:
    return max(1, math.floor(MAX_FLOAT32_SHARE * len(blocks)))


def _keep_costliest(quantize, probe, blocks, min_cosine, scratch: Path, best, progress):
    """Measure each block's cost alone, then keep the costliest 1, 2, ... blocks float32 until the
    target is met or :func:`_limit` blocks are. Returns the best (file, blocks, cosines) measured
    (keeping a block float32 does not always help: the search never writes a worse model than
    one it measured) and {block: cost}, costliest first."""
    from tqdm import tqdm

    limit = _limit(blocks)
    costs: dict[str, float] = {}
    with tqdm(total=len(blocks) + limit, desc="int8 sensitivity", unit="model", file=sys.stderr,
              disable=not progress) as bar:
        for name, nodes in blocks.items():
            alone = scratch / f"trial-{name}.onnx"
            quantize(alone, nodes, [])
            costs[name] = float(1.0 - probe(alone).mean())
            alone.unlink()
            bar.update(1)
        ranked = sorted(costs, key=lambda name: (-costs[name], name))
        for count in range(1, limit + 1):
            kept = ranked[:count]
            trial = scratch / f"trial-{count}.onnx"
            quantize(trial, None, [node for name in kept for node in blocks[name]])
            cosines = probe(trial)
            bar.update(1)
            if cosines.mean() > best[2].mean():
                best[0].unlink()
                best = (trial, kept, cosines)
            else:
                trial.unlink()
            if best[2].mean() >= min_cosine:
                bar.total = bar.n  # stopped early: the bar ends full
                bar.refresh()
                break
    return best, {name: round(costs[name], 6) for name in ranked}
