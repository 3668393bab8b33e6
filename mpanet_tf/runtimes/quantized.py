"""The int8 runtime: a statically quantised ONNX model (ONNX Runtime QDQ, per-channel weights).

``mpanet-tf export --quantize int8 --calibration DIR [--calibration-images N]`` writes
``OUTPUT/int8/<version>/model.onnx`` beside the float artifacts:

1. the float32 ONNX graph of :mod:`mpanet_tf.runtimes.onnx` (the BN-folded embedding);
2. ONNX Runtime's pre-processing (``quant_pre_process``: graph optimisation, shape inference);
3. ``quantize_static`` in the QDQ format, convolutions only (:data:`QUANTIZED_OPS`): weights
   int8 per output channel (symmetric), activations uint8 per tensor, their ranges (MinMax)
   calibrated on N real images of the target data, read with the project's image path
   (:func:`mpanet_tf.data.images.load_image`, exactly the inputs evaluation feeds). The
   convolutions whose input another float op also reads stay float32
   (:func:`float32_convolutions`): PAM's mask conv and MAM's first channel-attention conv.

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

from mpanet_tf.data.image_files import find_images
from mpanet_tf.data.images import load_image
from mpanet_tf.errors import ExportError
from mpanet_tf.runtimes.onnx import DEFAULT_OPSET, INPUT_NAME, ONNX_FILE, OnnxRuntime, input_description, write_onnx
from mpanet_tf.runtimes.registry import ExportOptions, register

# Measured on the quickstart model (96x48, 300 drawn images, benchmarks/RESULTS.md): mean cosine to
# float32 0.9958 from 8 images on, worst 0.976 / 0.980 / 0.987 / 0.987 for 8 / 16 / 32 / 64 images,
# no gain beyond. ONNX Runtime's MinMax calibrater keeps only each tensor's min and max per batch:
# peak memory at 384x128 was 1.8 GB for 8, 32 and 128 images alike; 128 images took 26 s here.
DEFAULT_CALIBRATION_IMAGES = 64
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


def calibration_paths(source, count: int | None = None) -> list[Path]:
    """``count`` image files of the folder ``source`` (searched recursively, as ``search`` lists a
    gallery), evenly spread over the sorted list so every camera/identity folder contributes.

    Raises:
        DatasetError: ``source`` is not a folder or holds no image.
    """
    paths = find_images(source, what="calibration")
    count = min(int(count or DEFAULT_CALIBRATION_IMAGES), len(paths))
    picks = np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))
    return [paths[i] for i in picks]


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
        return {INPUT_NAME: np.stack([load_image(p, self.image_size) for p in chunk]).astype(np.float32)}

    def rewind(self):
        self.position = 0


def quantize_onnx(float_path, output_path, paths, image_size) -> list[str]:
    """Statically quantise the float ONNX file ``float_path`` to ``output_path`` (QDQ, int8
    per-channel weights, uint8 activations calibrated on the image files ``paths``).

    Returns:
        the names of the convolutions left in float32 (:func:`float32_convolutions`).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, output_path = Path(float_path), Path(output_path)
    prepared = float_path.with_name("prepared.onnx")
    try:
        quant_pre_process(os.fspath(float_path), os.fspath(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimisation; quantise the converted graph as it is
        prepared = float_path
    import onnx

    kept = float32_convolutions(onnx.load(os.fspath(prepared)))
    quantize_static(
        os.fspath(prepared), os.fspath(output_path), CalibrationImages(paths, image_size),
        op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=kept,
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    return kept


class Int8Runtime(OnnxRuntime):
    name = "int8"
    label = "int8 ONNX"
    help = ("OUTPUT/int8/<version>/model.onnx: ONNX Runtime QDQ int8 (per-channel weights), "
            "calibrated on --calibration images")
    quantized = True
    priority = 40
    subdir = "int8"
    accepts_unlabelled = False

    def check_options(self, options: ExportOptions) -> None:
        if not options.calibration:
            raise ExportError("--quantize int8 needs --calibration DIR: a folder of images of the target "
                              "data (a dataset root works) to calibrate the activation ranges")
        calibration_paths(options.calibration, 1)  # a missing or empty folder fails here, before writing

    def write(self, model, folder: Path, options: ExportOptions) -> dict:
        paths = calibration_paths(options.calibration, options.calibration_images)
        opset = int(options.opset or DEFAULT_OPSET)
        with tempfile.TemporaryDirectory(prefix="mpanet-int8-") as scratch:
            float_path = Path(scratch) / "float.onnx"
            write_onnx(model, float_path, opset)
            kept = quantize_onnx(float_path, folder / ONNX_FILE, paths, model.image_size)
        return {"opset": opset, "input": input_description(model),
                "quantization": {"method": "onnxruntime quantize_static, QDQ", "weights": "int8 per channel",
                                 "activations": "uint8 per tensor, MinMax",
                                 "calibration": os.fspath(options.calibration),
                                 "calibration_images": len(paths),
                                 "float32_convolutions": kept}}


register(Int8Runtime())
