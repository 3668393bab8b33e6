"""A `.keras` file as the code before the keras-hub split (issue 24) saved it, rebuilt from a small fixture.

A full `.keras` of even the tiny test model holds a whole ResNet-50 (~100 MB), too big to commit.
``tests/fixtures/legacy_keras/`` therefore keeps what identifies the old format, recorded from a
file that code saved (``python -m tests.legacy_keras`` on that commit, 4726ef2):

- ``config.json`` and ``metadata.json``: the archive's own entries, verbatim (the old
  ``MPANet.get_config``: the whole training config and ``num_classes``);
- ``weights_layout.json``: every dataset of its ``model.weights.h5`` as ``[path, shape, dtype]``;
- ``embeddings.npz``: ``images`` (2, 64, 32, 3) uint8 and the ``embeddings`` (2, 14336) float32
  that the old code's ``load_model(...).embed(images)`` gave for the archive
  :func:`write_legacy_keras` builds.

:func:`write_legacy_keras` writes ``model.weights.h5`` from the recorded layout alone (values from
:func:`layout_values`, a seeded function of each dataset's path and shape; no model involved) and
zips it with the recorded ``config.json`` and ``metadata.json``: byte for byte what the old code
loaded to produce ``embeddings``.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "legacy_keras"
IMAGE_SIZE = (64, 32)


def layout_values(path: str, shape) -> np.ndarray:
    """Deterministic float32 values for the weights dataset ``path`` of ``shape``.

    Scalars 0.2 (the EMA rate; metric states); vectors in [0.5, 1.5] (BN gamma, beta, mean and a
    positive variance); kernels N(0, 1/fan_in) with fan_in = prod(shape[:-1]), so activations stay
    finite through the 16 blocks.
    """
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    if len(shape) == 0:
        return np.asarray(0.2, np.float32)
    if len(shape) == 1:
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def h5_layout(h5_file) -> list[list]:
    """``[[path, shape, dtype], ...]`` of every dataset in an open ``h5py.File``, sorted by path."""
    found = []

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            found.append([name, list(item.shape), str(item.dtype)])

    h5_file.visititems(visit)
    return sorted(found)


def keras_file_layout(path) -> list[list]:
    """The weights layout (:func:`h5_layout`) of a ``.keras`` archive."""
    import io

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    with h5py.File(io.BytesIO(data), "r") as h5_file:
        return h5_layout(h5_file)


def write_legacy_keras(out_path, fixture_dir=FIXTURE_DIR) -> Path:
    """Build the old-format ``.keras`` archive from the fixture folder; returns ``out_path``."""
    import io

    fixture_dir, out_path = Path(fixture_dir), Path(out_path)
    layout = json.loads((fixture_dir / "weights_layout.json").read_text())
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5_file:
        for name, shape, dtype in layout:
            h5_file.create_dataset(name, data=layout_values(name, shape).astype(dtype))
    with zipfile.ZipFile(out_path, "w") as archive:
        archive.writestr("metadata.json", (fixture_dir / "metadata.json").read_text())
        archive.writestr("config.json", (fixture_dir / "config.json").read_text())
        archive.writestr("model.weights.h5", buffer.getvalue())
    return out_path


def fixture_images() -> np.ndarray:
    """The recorded input images, (2, 64, 32, 3) float32 in [0, 255]."""
    return np.load(FIXTURE_DIR / "embeddings.npz")["images"].astype(np.float32)


def record_fixture(fixture_dir=FIXTURE_DIR) -> None:
    """Save today's smallest test model (tests/test_model.py ``small_config``, 3 classes) and record
    the fixture from that file. Run once, on the code whose format the fixture preserves."""
    import tempfile

    from mpanet_tf import MPANetConfig, build_model, load_model

    fixture_dir = Path(fixture_dir)
    fixture_dir.mkdir(parents=True, exist_ok=True)
    config = MPANetConfig()
    config.model.image_height, config.model.image_width = IMAGE_SIZE
    config.data.batch_ids, config.data.images_per_id = 2, 4
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "today.keras"
        build_model(config, num_classes=3).save(saved)
        with zipfile.ZipFile(saved) as archive:
            for entry in ("config.json", "metadata.json"):
                (fixture_dir / entry).write_bytes(archive.read(entry))
        layout = keras_file_layout(saved)
        (fixture_dir / "weights_layout.json").write_text("[\n" + ",\n".join(json.dumps(e) for e in layout) + "\n]\n")
        rebuilt = write_legacy_keras(Path(tmp) / "legacy.keras", fixture_dir)
        assert keras_file_layout(rebuilt) == keras_file_layout(saved)
        images = np.random.default_rng(0).integers(0, 256, (2, *IMAGE_SIZE, 3)).astype(np.uint8)
        embeddings = load_model(rebuilt).embed(images.astype(np.float32))
    assert np.isfinite(embeddings).all() and embeddings.shape == (2, 14336)
    np.savez(fixture_dir / "embeddings.npz", images=images, embeddings=embeddings)


if __name__ == "__main__":
    record_fixture()
