"""A toy runtime, defined only in the tests, to show that a runtime is a one-file addition.

``toy``: the model saved as ``OUTPUT/toy/<version>/toy.keras`` beside a sidecar ``toy.json``
holding the ``--toy-note`` export option (the runtime's own option), embedded with
``MPANet.embed``. Both files make up the artifact (:meth:`ToyRuntime.files`), so an index's model
fingerprint changes when either does. Importing this module registers it; :func:`remove`
unregisters it. Registered through the entry-point group ``mpanet_tf.runtimes`` or
``MPANET_TF_RUNTIMES=tests.runtimes.toy_runtime``, the CLI offers it with no import at all.
"""

from __future__ import annotations

import json
from pathlib import Path

from mpanet_tf.cli_option import CliOption
from mpanet_tf.errors import ExportError
from mpanet_tf.runtimes import Runtime, register, unregister
from mpanet_tf.runtimes.embedder import Embedder

TOY_FILE = "toy.keras"
NOTE_FILE = "toy.json"


class ToyRuntime(Runtime):
    name = "toy"
    label = "Toy"
    help = "OUTPUT/toy/<version>/toy.keras (tests only)"
    cli_options = (CliOption(("--toy-note",), "toy_note", "Toy: a note kept beside the model.", type=str),)

    def target(self, output: Path, version: int) -> Path:
        return Path(output) / "toy" / str(int(version))

    def artifact(self, target: Path) -> Path:
        return target / TOY_FILE

    def check_options(self, options) -> None:
        if options["toy_note"] is not None and not options["toy_note"].strip():
            raise ExportError("--toy-note is empty; give it some text or leave it out")

    def write(self, model, folder: Path, options) -> dict:
        model.save(folder / TOY_FILE)
        (folder / NOTE_FILE).write_text(json.dumps({"note": options["toy_note"]}))
        return {"toy_version": options.version, "toy_note": options["toy_note"]}

    def find(self, path: Path) -> Path | None:
        if path.is_file() and path.name == TOY_FILE:
            return path
        if path.is_dir() and (path / "toy").is_dir():
            versions = [p for p in (path / "toy").iterdir() if p.name.isdigit() and (p / TOY_FILE).is_file()]
            return max(versions, key=lambda p: int(p.name)) / TOY_FILE if versions else None
        return None

    def files(self, artifact: Path) -> list[Path]:
        return [f for f in (artifact, artifact.parent / NOTE_FILE) if f.is_file()]

    def load(self, path: Path):
        from mpanet_tf.model import load_model  # TensorFlow only when a toy artifact is opened

        model = load_model(path)
        return Embedder(model.embed, model.image_size, self.name, path)


register(ToyRuntime())


def remove() -> None:
    unregister(ToyRuntime.name)
