"""The int8 runtime: a statically quantised ONNX model (ONNX Runtime QDQ, per-channel weights).

``mpanet-tf export --quantize int8 --calibration DIR [--calibration-images N] [--holdout-images M]
[--min-cosine C]`` writes ``OUTPUT/int8/<version>/model.onnx`` beside the float artifacts:

1. the float32 ONNX graph of :mod:`mpanet_tf.runtimes.onnx` (the BN-folded embedding);
2. ONNX Runtime's pre-processing (``quant_pre_process``: graph optimisation, shape inference);
3. ``quantize_static`` in the QDQ format, convolutions only (:data:`QUANTIZED_OPS`): weights
   int8 per output channel (symmetric), activations uint8 per tensor, their ranges (MinMax)
   calibrated on N real images of the target data, read with the project's image path
   (:func:`mpanet_tf.data.images.load_image`, exactly the inputs evaluation feeds). The
   convolutions whose input another float op also reads stay float32
   (:func:`float32_convolutions`): PAM's mask conv and MAM's first channel-attention conv;
4. the agreement check (:mod:`mpanet_tf.runtimes.int8_search`): the mean cosine of the int8 to
   the float32 embeddings of M other images of DIR, never calibrated on; below C (default 0.99)
   the costliest blocks stay float32 until it is reached. The figure, the held-out images and the
   float32 blocks go into ``mpanet_export.json`` (``"quantization"``); a warning says when C
   cannot be met.

The calibration and held-out images are drawn round robin over DIR's sub-folders
(:func:`split_calibration`): a dataset root gives both sets every camera and so both modalities.

The artifact has the float ONNX contract (input ``images`` float32 (N, H, W, 3) in [0, 255] at the
model size, output ``embeddings`` float32 (N, D)); ONNX Runtime runs the Q/DQ pairs around each
conv as integer kernels. Recognised paths: an ``.onnx`` file whose ``mpanet_export.json`` says
``"format": "int8"``, or an export folder holding ``int8/<version>/model.onnx`` and no float
SavedModel/ONNX (those are preferred, in that order).

Speed and accuracy on this project's CPUs: benchmarks/int8_speed.py, benchmarks/RESULTS.md.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from mpanet_tf.cli_option import CliOption
from mpanet_tf.data.image_files import find_images
from mpanet_tf.data.images import load_image
from mpanet_tf.errors import ConfigError, ExportError
from mpanet_tf.runtimes.int8_search import MAX_FLOAT32_SHARE, AgreementProbe, conv_blocks, search_float32_blocks
from mpanet_tf.runtimes.onnx import DEFAULT_OPSET, INPUT_NAME, ONNX_FILE, OnnxRuntime, input_description, write_onnx
from mpanet_tf.runtimes.registry import ExportOptions, register

# Measured on the quickstart model (96x48, 300 drawn images, benchmarks/RESULTS.md): mean cosine to
# float32 0.9958 from 8 images on, worst 0.976 / 0.980 / 0.987 / 0.987 for 8 / 16 / 32 / 64 images,
# no gain beyond. ONNX Runtime's MinMax calibrater keeps only each tensor's min and max per batch:
# peak memory at 384x128 was 1.8 GB for 8, 32 and 128 images alike; 128 images took 26 s here.
DEFAULT_CALIBRATION_IMAGES = 64
# Held-out images on which the int8 embeddings' mean cosine to float32 is measured, and its target.
DEFAULT_HOLDOUT_IMAGES = 64
DEFAULT_MIN_COSINE = 0.99
CALIBRATION_BATCH = 4
# Only the convolutions (the backbone and MAM's attention convs: nearly all of the compute) are
# quantised, less :func:`float32_convolutions`; the attention maps, pooling and the BN neck stay
# float32. ONNX Runtime fuses the Q/DQ pairs and residual adds into integer kernels by itself:
# also quantising Relu, Add or MaxPool was no faster (benchmarks/RESULTS.md).
QUANTIZED_OPS = ["Conv"]
# Besides convolutions, the ops allowed to read a quantised conv input (ResNet's residual ``Add``
# reads the block input that the next block's convolutions read).
_SHARED_WITH = {"Conv", "Add"}


def float32_convolutions(model) -> list[str]:
    """Names of the ``Conv`` nodes of the ONNX ``model`` to leave in float32: those whose input
    tensor is also read by another kind of op than a convolution or a residual ``Add``.

    In the QDQ format the quantise/dequantise pair sits on the *tensor*, so every reader of a
    quantised conv input reads the rounded copy. For PAM's mask conv that input is the final
    feature map F (B, h, w, 2048), which the global average pool and the part pooling also read:
    quantising the mask conv rounded F to 256 levels for the 14336-d embedding itself, and on a
    trained synthetic model the int8 embeddings had a mean cosine of 0.69 to the float32 ones
    (every convolution but this one: 0.996; measured, benchmarks/RESULTS.md). MAM's first
    channel-attention conv reads the pooled vector that MAM's normalisation also reads (where
    the converter shares it). They are 1x1 convolutions with 6 outputs or on a pooled (B, 1, 1, C)
    vector: float32 costs nothing measurable.
    """
    readers: dict[str, set[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    return [node.name for node in model.graph.node
            if node.op_type == "Conv" and readers.get(node.input[0], set()) - _SHARED_WITH]


def _balanced_order(paths, root: Path) -> list[Path]:
    """``paths`` ordered so that every prefix spreads over the folder tree: round robin over the
    sub-folders of each level (cameras, then identities, for a dataset root), recursively; the
    files directly in a folder count as one more sub-folder."""
    tree: dict = {}
    for path in paths:
        node = tree
        for part in path.relative_to(root).parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(None, []).append(path)

    def order(node) -> list[Path]:
        sequences = [order(node[name]) for name in sorted(k for k in node if k is not None)]
        if None in node:
            sequences.append(sorted(node[None]))
        interleaved = []
        for position in range(max((len(s) for s in sequences), default=0)):
            interleaved.extend(s[position] for s in sequences if position < len(s))
        return interleaved

    return order(tree)


def split_calibration(source, count: int | None = None, holdout: int | None = None) -> tuple[list[Path], list[Path]]:
    """(calibration paths, held-out paths) drawn from the image files of the folder ``source``
    (searched recursively, as ``search`` lists a gallery): ``count`` images to calibrate on, then
    ``holdout`` other images on which the int8 model's agreement is measured. Both are drawn round
    robin over the folder tree (:func:`_balanced_order`), so a dataset root gives both of them
    images of every camera, and so of both modalities, and of many identities. When the folder
    holds fewer than ``count + holdout`` images, calibration keeps ``count`` (less one) and the
    held-out set the rest.

    Raises:
        DatasetError: ``source`` is not a folder or holds no image.
    """
    paths = find_images(source, what="calibration")
    ordered = _balanced_order(paths, Path(os.path.expanduser(os.fspath(source))))
    count = min(int(count or DEFAULT_CALIBRATION_IMAGES), max(1, len(paths) - 1))
    holdout = min(int(DEFAULT_HOLDOUT_IMAGES if holdout is None else holdout), len(paths) - count)
    return ordered[:count], ordered[count:count + holdout]


def _load_images(paths, image_size) -> np.ndarray:
    """(N, H, W, 3) float32 of the image files ``paths``, loaded as evaluation loads them."""
    return np.stack([load_image(p, image_size) for p in paths]).astype(np.float32)


class CalibrationImages:
    """An ONNX Runtime ``CalibrationDataReader``: {"images": (b, H, W, 3) float32} batches of the
    calibration images loaded by :func:`mpanet_tf.data.images.load_image`."""

    def __init__(self, paths, image_size, batch_size: int = CALIBRATION_BATCH):
        self.paths = list(paths)
        self.image_size = tuple(image_size)
        self.batch_size = int(batch_size)
        self.position = 0

    def get_next(self):
        if self.position >= len(self.paths):
            return None
        chunk = self.paths[self.position:self.position + self.batch_size]
        self.position += len(chunk)
        return {INPUT_NAME: _load_images(chunk, self.image_size)}

    def rewind(self):
        self.position = 0


def quantize_onnx(float_path, output_path, paths, image_size, holdout=(), min_cosine: float = DEFAULT_MIN_COSINE,
                  progress: bool = True) -> dict:
    """Statically quantise the float ONNX file ``float_path`` to ``output_path`` (QDQ, int8
    per-channel weights, uint8 activations calibrated on the image files ``paths``), keeping in
    float32 the blocks the agreement on ``holdout`` needs
    (:func:`mpanet_tf.runtimes.int8_search.search_float32_blocks`).

    Args:
        holdout: image files not in ``paths``, on which the mean cosine of each image's int8
            embedding to its float32 one is measured; empty: not measured (``min_cosine`` must
            then be <= 0).
        min_cosine: the mean cosine the written model must reach; <= 0: quantise every block and
            only measure.

    Returns:
        ``{"float32_convolutions": [...], "float32_blocks": [...], "mean_cosine": ..., ...}``: the
        convolutions left in float32 (:func:`float32_convolutions` and the kept blocks') and the
        measured agreement of the written model (none of the measures without ``holdout``).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, output_path = Path(float_path), Path(output_path)
    scratch = float_path.parent
    prepared = scratch / "prepared.onnx"
    try:
        quant_pre_process(os.fspath(float_path), os.fspath(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantise the converted graph as it is
        prepared = float_path
    graph = onnx.load(os.fspath(prepared), load_external_data=False)
    always = float32_convolutions(graph)
    blocks = conv_blocks(graph, always)
    del graph
    cache = scratch / "activation_ranges.json"
    reader = CalibrationImages(paths, image_size)

    def quantize(target, nodes, exclude):
        # the first call calibrates and writes ``cache``; the later ones read it
        quantize_static(
            os.fspath(prepared), os.fspath(target), reader, op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_quantize=nodes, nodes_to_exclude=always + list(exclude), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=os.fspath(cache),
        )

    if not holdout:
        if min_cosine > 0:
            raise ExportError("--min-cosine needs held-out images: give --calibration a folder with at least "
                              "2 images, or pass --min-cosine 0")
        quantize(output_path, None, [])
        return {"float32_convolutions": always, "float32_blocks": []}
    probe = AgreementProbe(float_path, _load_images(holdout, image_size))
    result = search_float32_blocks(quantize, probe, blocks, min_cosine, output_path, scratch, progress)
    kept = always + [node for name in result.float32_blocks for node in blocks[name]]
    return {"float32_convolutions": kept, "float32_blocks": result.float32_blocks,
            "mean_cosine": round(result.mean_cosine, 6), "worst_cosine": round(result.worst_cosine, 6),
            "min_cosine": min_cosine, "min_cosine_met": result.met, "models_measured": result.trials,
            **({"block_costs": result.block_costs} if result.block_costs else {})}


def _min_cosine(value):
    if value is None:
        return None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--min-cosine must be between 0 and 1 (0: measure only), got {value:g}")
    return value


class Int8Runtime(OnnxRuntime):
    name = "int8"
    label = "int8 ONNX"
    help = ("OUTPUT/int8/<version>/model.onnx: ONNX Runtime QDQ int8 (per-channel weights), "
            "calibrated on --calibration images")
    quantized = True
    priority = 40
    subdir = "int8"
    accepts_unlabelled = False
    cli_options = OnnxRuntime.cli_options + (
        CliOption(("--calibration",), "calibration", "With --quantize int8: a folder of images of the target data "
                  "(searched recursively; a dataset root works) that calibrates the activation ranges; "
                  "images are drawn round robin over its sub-folders (cameras, identities).", type=str),
        CliOption(("--calibration-images",), "calibration_images", "With --quantize int8: how many --calibration "
                  f"images calibrate [default: {DEFAULT_CALIBRATION_IMAGES}; memory does not grow with N, time "
                  "does: ~0.15 s per image at 384x128 on 2 cores].", type=int, minimum=1),
        CliOption(("--holdout-images",), "holdout_images", "With --quantize int8: how many other --calibration "
                  "images (never calibrated on) measure the int8 embeddings' cosine to the float32 ones "
                  f"[default: {DEFAULT_HOLDOUT_IMAGES}].", type=int, minimum=1),
        CliOption(("--min-cosine",), "min_cosine", "With --quantize int8: the mean cosine to float32 the int8 "
                  "model must reach on the held-out images; below it the costliest blocks (measured one by one) "
                  f"stay float32 until it does, at most {int(MAX_FLOAT32_SHARE * 100)} % of them, else a warning "
                  f"[default: {DEFAULT_MIN_COSINE}; 0: quantise everything and only measure].",
                  type=float, parse=_min_cosine),
    )

    def check_options(self, options: ExportOptions) -> None:
        if not options["calibration"]:
            raise ExportError("--quantize int8 needs --calibration DIR: a folder of images of the target "
                              "data (a dataset root works) to calibrate the activation ranges")
        find_images(options["calibration"], what="calibration")  # a missing or empty folder fails here
        _min_cosine(options["min_cosine"])

    def write(self, model, folder: Path, options: ExportOptions) -> dict:
        min_cosine = _min_cosine(options["min_cosine"])
        min_cosine = DEFAULT_MIN_COSINE if min_cosine is None else min_cosine
        root = Path(os.path.expanduser(os.fspath(options["calibration"])))
        paths, holdout = split_calibration(root, options["calibration_images"], options["holdout_images"])
        opset = int(options["opset"] or DEFAULT_OPSET)
        with tempfile.TemporaryDirectory(prefix="mpanet-int8-") as scratch:
            float_path = Path(scratch) / "float.onnx"
            write_onnx(model, float_path, opset)
            measured = quantize_onnx(float_path, folder / ONNX_FILE, paths, model.image_size, holdout, min_cosine)
        return {"opset": opset, "input": input_description(model),
                "quantization": {"method": "onnxruntime quantize_static, QDQ", "weights": "int8 per channel",
                                 "activations": "uint8 per tensor, MinMax",
                                 "calibration": os.fspath(options["calibration"]),
                                 "calibration_images": len(paths),
                                 "holdout_images": len(holdout),
                                 "holdout": [p.relative_to(root).as_posix() for p in holdout],
                                 **measured}}


register(Int8Runtime())
