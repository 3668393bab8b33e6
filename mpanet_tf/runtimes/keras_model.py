"""The Keras runtime: a run folder written by ``mpanet-tf train`` or a ``.keras`` file.

Loaded with :func:`mpanet_tf.model.load_model` and embedded through the inference graph with the
backbone BatchNorms folded into the convolutions (:func:`mpanet_tf.inference.embedding_function`,
built once at load time: same numbers up to float rounding, ~8% less CPU time), on images resized
by the evaluation path (design.md §1.5: the BN-neck output, no flip, no L2 normalisation). It is the
fallback of :func:`~mpanet_tf.runtimes.registry.find_runtime`: a path no other runtime recognises
is opened here, and :func:`~mpanet_tf.model.load_model` names what is missing. Not an export
format (training writes it).
"""

from __future__ import annotations

from pathlib import Path

from mpanet_tf import run_folder
from mpanet_tf.runtimes.embedder import Embedder
from mpanet_tf.runtimes.registry import Runtime, register


class KerasRuntime(Runtime):
    name = "keras"
    label = "Keras"
    help = "run folder or .keras file (written by training)"
    exportable = False
    priority = 1000

    def find(self, path: Path) -> Path | None:
        if path.is_file() and path.suffix == ".keras":
            return path
        if path.is_dir() and (run_folder.is_run_folder(path) or (path / run_folder.FINAL_MODEL).is_file()):
            return path
        return None

    def files(self, artifact: Path) -> list[Path]:
        """A run folder: ``config.json``, ``model.keras`` and the newest complete checkpoint's
        ``.weights.h5``, those that exist (what loading reads); a ``.keras`` file: itself."""
        if not run_folder.is_run_folder(artifact):
            return super().files(artifact)
        files = [artifact / run_folder.CONFIG_FILE, artifact / run_folder.FINAL_MODEL]
        latest = run_folder.latest_checkpoint(artifact)
        if latest is not None:
            files.append(latest[0])
        return [f for f in files if f.is_file()]

    def load(self, path: Path):
        from mpanet_tf.inference import embedding_function  # deferred: TensorFlow; the CLI lists runtimes without it
        from mpanet_tf.model import load_model  # deferred: Keras/TensorFlow, as above

        loaded = load_model(path)
        return Embedder(embedding_function(loaded), loaded.image_size, self.name, path)


register(KerasRuntime())
