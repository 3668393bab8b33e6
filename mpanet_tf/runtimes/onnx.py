"""The ONNX runtime: the MPANet embedding converted with tf2onnx (1.17), run by ONNX Runtime.

Layout: ``OUTPUT/onnx/<version>/model.onnx`` with its ``mpanet_export.json``. The graph is the
model's forward pass at its fixed input size:

- input ``images``: float32 (N, H, W, 3) RGB in [0, 255], **already resized** to the model's size
  (H x W = ``model.image_size``, e.g. 384 x 128 for SYSU) with
  :func:`mpanet_tf.data.images.load_image` or PIL's ``Image.open(p).convert("RGB").resize((w, h),
  Image.BILINEAR)``, which give the same pixels. The ImageNet
  normalisation is inside the graph.
- output ``embeddings``: float32 (N, D), D = 14336 with PAM: the BN-neck feature (design.md §1.5),
  not L2-normalised.

Why no uint8 any-size input as in the SavedModel: the SavedModel's resize (PIL's bilinear filter
built from the dynamic input size with TensorFlow control flow) is not part of the ONNX graph, and
decoding files has no ONNX op. Opset
17 (:data:`DEFAULT_OPSET`) is used; ONNX Runtime >= 1.14 runs it.

Recognised paths: an ``.onnx`` file (unless its ``mpanet_export.json`` names another runtime,
e.g. int8), or a folder (not a run folder) holding
``onnx/<version>/model.onnx`` (the highest version is taken).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mpanet_tf import run_folder
from mpanet_tf.cli_option import CliOption
from mpanet_tf.runtimes import onnx_conversion
from mpanet_tf.runtimes.embedder import Embedder
from mpanet_tf.runtimes.export_info import read_export_info
from mpanet_tf.runtimes.registry import ExportOptions, Runtime, register

DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
ONNX_FILE = "model.onnx"


def input_description(model) -> str:
    height, width = model.image_size
    return (f"{INPUT_NAME}: float32 (N, {height}, {width}, 3) RGB in [0, 255], already resized to "
            f"{height}x{width} (PIL's bilinear resize, aspect ratio ignored)")


def write_onnx(model, path, opset: int = DEFAULT_OPSET) -> None:
    """Convert the embedding of ``model`` (:func:`mpanet_tf.inference.embedding_function`, the
    BN-folded graph: images float32 (N, H, W, 3) -> embeddings float32 (N, D)) to ONNX and write
    it to ``path``.

    tf2onnx's stages are run one by one (:mod:`mpanet_tf.runtimes.onnx_conversion`) so that the
    conversion holds a few copies of the weights, not ~50: its peak is ~0.3 GiB above the RSS
    before it for the 97 MB MPANet, instead of ~4.7 GiB through ``tf2onnx.convert.from_function``.

    tf2onnx normally deep-copies the whole graph (weights included) before each of its optimizer
    passes (36 for the MPANet) so that a failing pass can be rolled back; for a ResNet-50 that
    copying is ~40% of the conversion time. The first attempt runs the passes unguarded; if it
    fails, the conversion is repeated with tf2onnx's guarded passes.

    Raises whatever tf2onnx raises; :func:`mpanet_tf.export.export_model` turns it into an
    :class:`~mpanet_tf.errors.ExportError`.
    """
    try:
        onnx_conversion.convert(_frozen_embedding(model), path, opset)
    except Exception:  # an optimizer pass failed unguarded: retry the slow, guarded way
        onnx_conversion.convert(_frozen_embedding(model), path, opset, guarded=True)


def _frozen_embedding(model) -> onnx_conversion.FrozenGraph:
    """The frozen embedding graph of ``model`` (``images`` -> ``embeddings``); the traced function
    and the folded network are released when this returns."""
    import tensorflow as tf

    from mpanet_tf.inference import embedding_function  # deferred: TensorFlow; the CLI lists runtimes without it

    embedding = embedding_function(model)

    @tf.function(input_signature=embedding.input_signature, autograph=False)
    def function(images):
        return {OUTPUT_NAME: embedding.tensor(images)}

    return onnx_conversion.freeze(function.get_concrete_function())


def onnx_session(path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` (``threads`` intra-op threads, default: ORT's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def session_image_size(session) -> tuple[int, int]:
    """(H, W) of the ``images`` input of an exported MPANet ONNX session."""
    shape = session.get_inputs()[0].shape
    return int(shape[1]), int(shape[2])


def onnx_embedder(session):
    """``embed(images (N, H, W, 3) float32 in [0, 255]) -> (N, D) float32`` through ONNX Runtime."""

    def embed(images):
        batch = np.asarray(images, dtype=np.float32)
        return session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]

    return embed


def external_data_files(path: Path) -> list[Path]:
    """The files beside the ONNX file ``path`` that hold its initialisers' external data, sorted
    (none when the file is not a readable ONNX graph: its bytes are all there is to hash, and
    loading it names the problem)."""
    import onnx  # heavy (~1 s); only a fingerprint reads it

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and friends: a corrupt or foreign file
        return []
    locations = {entry.value for tensor in model.graph.initializer
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    return sorted(path.parent / location for location in locations)


def latest_version_file(folder: Path, subdir: str, filename: str = ONNX_FILE) -> Path | None:
    """``folder/subdir/<highest version>/filename``, or None."""
    versions = [p for p in (folder / subdir).glob("*") if p.name.isdigit() and (p / filename).is_file()]
    return max(versions, key=lambda p: int(p.name)) / filename if versions else None


class OnnxRuntime(Runtime):
    """ONNX files in ``OUTPUT/<subdir>/<version>/model.onnx`` run by ONNX Runtime on images
    resized by the evaluation path (subclassed by the int8 runtime)."""

    name = "onnx"
    label = "ONNX"
    help = "OUTPUT/onnx/<version>/model.onnx (float32, images already resized)"
    priority = 30
    subdir = "onnx"
    accepts_unlabelled = True  # an .onnx file without export info is opened as float ONNX
    cli_options = (CliOption(("--opset",), "opset", f"ONNX opset [default: {DEFAULT_OPSET}].", type=int, minimum=13),)

    def target(self, output: Path, version: int) -> Path:
        return Path(output) / self.subdir / str(int(version))

    def artifact(self, target: Path) -> Path:
        return target / ONNX_FILE

    def write(self, model, folder: Path, options: ExportOptions) -> dict:
        opset = int(options["opset"] or DEFAULT_OPSET)
        write_onnx(model, folder / ONNX_FILE, opset)
        return {"opset": opset, "input": input_description(model)}

    def find(self, path: Path) -> Path | None:
        if path.is_file() and path.suffix.lower() == ".onnx":
            labelled = read_export_info(path.parent).get("format")
            return path if labelled == self.name or (labelled is None and self.accepts_unlabelled) else None
        if path.is_dir() and not run_folder.is_run_folder(path):
            return latest_version_file(path, self.subdir)
        return None

    def files(self, artifact: Path) -> list[Path]:
        """The ``.onnx`` file and the external-data files its initialisers name (a model over 2 GB
        keeps its weights beside the graph; the exporter here writes one file)."""
        if not artifact.is_file():
            return []
        return [artifact, *external_data_files(artifact)]

    def load(self, path: Path):
        session = onnx_session(path)
        return Embedder(onnx_embedder(session), session_image_size(session), self.name, path)


register(OnnxRuntime())
