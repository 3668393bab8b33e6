"""Fixtures of the gallery-index tests: a deterministic numpy embedder over a folder of pictures.

The numpy embedder (a fixed random projection of the resized pixels) makes the format, resume
and refusal tests fast and bit-reproducible; the ranking-parity tests use a real tiny MPANet.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.export.test_savedmodel import write_images

SIZE = (16, 8)
DIM = 24


class ProjectionEmbedder:
    """embed((N, 16, 8, 3) float32) -> (N, 24): pixels @ a fixed random matrix; counts its calls and
    raises KeyboardInterrupt on call number ``stop_at`` (an interrupted build)."""

    def __init__(self, seed: int = 0, stop_at: int | None = None):
        self.matrix = np.random.default_rng(seed).normal(size=(SIZE[0] * SIZE[1] * 3, DIM)).astype(np.float32)
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, batch):
        self.calls += 1
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        batch = np.asarray(batch, dtype=np.float32)
        return batch.reshape(len(batch), -1) @ self.matrix


def make_embedder(model_file, seed: int = 0, stop_at: int | None = None):
    """An :class:`Embedder` whose fingerprint is that of ``model_file`` (written with ``seed``)."""
    from mpanet_tf.runtimes.embedder import Embedder

    if not model_file.exists():
        model_file.write_bytes(np.random.default_rng(seed).bytes(256))
    return Embedder(ProjectionEmbedder(seed, stop_at), SIZE, "keras", model_file)


@pytest.fixture
def pictures(tmp_path):
    """A folder of 11 pictures in two sub-folders (one greyscale per folder)."""
    folder = tmp_path / "pictures"
    write_images(folder / "a", sizes=((40, 20),) * 6, seed=3, suffixes=(".png", ".jpg"))
    write_images(folder / "b", sizes=((30, 16),) * 5, seed=4, suffixes=(".bmp",))
    return folder


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model-a.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(256))
    return path


@pytest.fixture(scope="session")
def sysu_tree(tmp_path_factory):
    from mpanet_tf.data.synthetic import generate_sysu

    return generate_sysu(tmp_path_factory.mktemp("sysu"), ids=6, images_per_camera=2, seed=3, size=(32, 16))
