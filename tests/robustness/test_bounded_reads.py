"""Issue 26, item 3: reads are bounded before they start.

Only regular files are opened as images or queries (``/dev/zero`` read without end, a FIFO hung);
an image's header is checked before the rest of the file is read (a 100 MB file with the header
of a tiny JPEG cost gigabytes). Every hostile file is made here; sparse files cost no disk. An
alarm turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import tracemalloc

import numpy as np
import pytest
from mpanet_tf.data.images import MAX_FILE_BYTES, load_image, read_image_file
from mpanet_tf.errors import BadImageError
from mpanet_tf.eval.features import extract_features


@contextlib.contextmanager
def deadline(seconds):
    def fail(signum, frame):
        raise AssertionError(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tiny_jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 64, 3), 90, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _embed(batch):
    return np.ones((len(batch), 4), np.float32)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "query.jpg"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "folder"])
def test_only_regular_files_are_read_as_images(kind, fifo, tmp_path):
    path = {"/dev/zero": "/dev/zero", "fifo": str(fifo), "folder": str(tmp_path)}[kind]
    with deadline(60):
        with pytest.raises(BadImageError, match="not a regular file|a folder") as caught:
            load_image(path, (32, 16))
        assert path in str(caught.value)
        with pytest.raises(BadImageError, match="not a regular file|a folder"):
            extract_features(_embed, [path], (32, 16), 1, progress=False)
        features, skipped = extract_features(_embed, [path], (32, 16), 1, progress=False, skip_bad_images=True)
        assert skipped == [0] and len(features) == 0


def test_search_query_from_a_device_or_pipe_is_one_line(fifo, tmp_path):
    from mpanet_tf.errors import DatasetError
    from mpanet_tf.search import search
    from tests.export.test_savedmodel import write_images
    from tests.index.conftest import make_embedder

    embedder = make_embedder(tmp_path / "m.onnx")
    gallery = tmp_path / "gallery"
    write_images(gallery, sizes=((40, 20),) * 2)
    for query in ("/dev/zero", str(fifo)):
        with deadline(120):
            with pytest.raises(DatasetError, match="not a regular file") as caught:
                search(embedder, query, gallery)
        assert f"query image {query}" in str(caught.value) and "\n" not in str(caught.value)


def test_header_is_checked_before_the_file_is_read(tmp_path):
    path = tmp_path / "big.jpg"
    head = _tiny_jpeg()
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(100 * 2**20)                     # 100 MB, sparse: a 64x32 JPEG header, then zeros
    tracemalloc.start()
    try:
        with pytest.raises(BadImageError, match="bytes for a 64x32 image"):
            read_image_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, peak                         # the header (256 KiB) was read, not the 100 MB
    with pytest.raises(BadImageError, match="bytes for a 64x32 image"):   # the tf.data path refuses it too
        extract_features(_embed, [str(path)], (32, 16), 1, progress=False)


def test_file_larger_than_any_image_is_never_opened(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(BadImageError, match="above the limit of 320 MiB"):
        extract_features(_embed, [str(path)], (32, 16), 1, progress=False)


def test_a_real_image_still_loads(tmp_path):
    path = tmp_path / "ok.jpg"
    path.write_bytes(_tiny_jpeg())
    assert load_image(path, (32, 16)).shape == (32, 16, 3)
    assert extract_features(_embed, [str(path)], (32, 16), 1, progress=False).shape == (1, 4)
