"""A toy runtime, defined only in the tests, to show that a runtime is a one-file addition.

``toy``: the model saved as ``OUTPUT/toy/<version>/toy.keras``, embedded with ``MPANet.embed``.
Importing this module registers it; :func:`remove` unregisters it.
"""

from __future__ import annotations

from pathlib import Path

from mpanet_tf.runtimes import Runtime, register, unregister

TOY_FILE = "toy.keras"


class ToyRuntime(Runtime):
    name = "toy"
    label = "Toy"
    help = "OUTPUT/toy/<version>/toy.keras (tests only)"

    def target(self, output: Path, version: int) -> Path:
        return Path(output) / "toy" / str(int(version))

    def artifact(self, target: Path) -> Path:
        return target / TOY_FILE

    def write(self, model, folder: Path, options) -> dict:
        model.save(folder / TOY_FILE)
        return {"toy_version": options.version}

    def find(self, path: Path) -> Path | None:
        if path.is_file() and path.name == TOY_FILE:
            return path
        if path.is_dir() and (path / "toy").is_dir():
            versions = [p for p in (path / "toy").iterdir() if p.name.isdigit() and (p / TOY_FILE).is_file()]
            return max(versions, key=lambda p: int(p.name)) / TOY_FILE if versions else None
        return None

    def load(self, path: Path):
        import keras

        from mpanet_tf.runtimes.embedder import Embedder

        model = keras.saving.load_model(path, compile=False)
        return Embedder(model.embed, model.image_size, self.name, path)


register(ToyRuntime())


def remove() -> None:
    unregister(ToyRuntime.name)
