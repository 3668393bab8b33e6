"""Building, growing and resuming a gallery index (numpy embedder: fast and bit-reproducible)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mpanet_tf.index import GalleryIndex, GalleryIndexError, add_to_index, build_index
from mpanet_tf.index.exact import unit_rows
from mpanet_tf.index.fingerprint import model_fingerprint
from mpanet_tf.data.image_files import find_images
from tests.index.conftest import DIM, SIZE, make_embedder


def _expected_rows(paths, seed=0):
    """Independent: load each picture on the evaluation path, project, L2-normalise in numpy."""
    from mpanet_tf.data.images import load_image

    embedder = make_embedder.__globals__["ProjectionEmbedder"](seed)
    features = embedder(np.stack([load_image(p, SIZE) for p in paths]))
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def test_build_stores_unit_rows_paths_and_settings(pictures, model_file, tmp_path):
    index = build_index(make_embedder(model_file), tmp_path / "g.mpidx", images=pictures, batch_size=4,
                        progress=False)
    paths = find_images(pictures)
    assert index.count == len(paths) == 11 and index.dim == DIM and index.dtype == "float32"
    assert index.paths == [str(p.absolute()) for p in paths]
    assert all(e["person_id"] is None and e["camera"] is None and e["modality"] is None for e in index.entries)
    np.testing.assert_allclose(index.embeddings(), _expected_rows(paths), atol=2e-6)
    assert (tmp_path / "g.mpidx" / "embeddings.bin").stat().st_size == 11 * DIM * 4
    meta = index.meta
    assert meta["model"]["fingerprint"] == model_fingerprint(model_file)
    assert meta["embedding"]["image_size"] == list(SIZE) and meta["embedding"]["dim"] == DIM
    assert meta["pending"] is None and meta["sources"] == [{"kind": "folder", "path": str(pictures)}]


def test_fingerprint_is_sha256_of_the_bytes_and_moves_with_the_file(model_file, tmp_path):
    import hashlib

    content = model_file.read_bytes()
    line = f"\0{len(content)}\0{hashlib.sha256(content).hexdigest()}\n".encode()
    assert model_fingerprint(model_file) == "sha256:" + hashlib.sha256(line).hexdigest()
    copy = tmp_path / "elsewhere" / "renamed.onnx"
    copy.parent.mkdir()
    shutil.copy(model_file, copy)
    assert model_fingerprint(copy) == model_fingerprint(model_file)
    copy.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    assert model_fingerprint(copy) != model_fingerprint(model_file)


def test_add_equals_a_build_of_the_union(pictures, model_file, tmp_path):
    union = build_index(make_embedder(model_file), tmp_path / "union.mpidx", images=pictures, batch_size=3,
                        progress=False)
    grown = build_index(make_embedder(model_file), tmp_path / "grown.mpidx", images=pictures / "a",
                        batch_size=3, progress=False)
    assert grown.count == 6
    grown = add_to_index(grown.path, make_embedder(model_file), images=pictures / "b", batch_size=3,
                         progress=False)
    assert grown.count == union.count == 11
    by_path = dict(zip(union.paths, np.asarray(union.embeddings())))
    assert sorted(grown.paths) == sorted(union.paths)
    for path, row in zip(grown.paths, np.asarray(grown.embeddings())):
        np.testing.assert_allclose(row, by_path[path], atol=1e-6)
    # adding the same images again embeds nothing
    again = add_to_index(grown.path, make_embedder(model_file), images=pictures, progress=False)
    assert again.count == 11 and len(again.meta["sources"]) == 3


def _files(folder):
    return {name: (folder / name).read_bytes() for name in ("embeddings.bin", "entries.jsonl")}


@pytest.mark.parametrize("stop_at", [1, 2, 4])
def test_interrupted_build_resumes_to_the_same_index(pictures, model_file, tmp_path, stop_at):
    whole = build_index(make_embedder(model_file), tmp_path / "whole.mpidx", images=pictures, batch_size=3,
                        progress=False)
    output = tmp_path / "cut.mpidx"
    with pytest.raises(KeyboardInterrupt):
        build_index(make_embedder(model_file, stop_at=stop_at), output, images=pictures, batch_size=3,
                    progress=False)
    # what was committed survives: stop_at - 1 whole batches
    partial = GalleryIndex.open(output, allow_pending=True)
    assert partial.count == 3 * (stop_at - 1) and partial.meta["pending"]["command"] == "build"
    with pytest.raises(GalleryIndexError, match="unfinished"):
        GalleryIndex.open(output)
    # a kill -9 in the middle of the next batch leaves bytes past the commit: they must be dropped
    with open(output / "embeddings.bin", "ab") as handle:
        handle.write(b"\x01" * 50)
    with open(output / "entries.jsonl", "ab") as handle:
        handle.write(b'{"path": "half')
    resumed = build_index(make_embedder(model_file), output, images=pictures, batch_size=3, progress=False)
    assert resumed.count == whole.count and resumed.meta["pending"] is None
    assert _files(output) == _files(whole.path)


def test_float16_storage_is_within_tolerance(pictures, model_file, tmp_path):
    full = build_index(make_embedder(model_file), tmp_path / "f32.mpidx", images=pictures, progress=False)
    half = build_index(make_embedder(model_file), tmp_path / "f16.mpidx", images=pictures, dtype="float16",
                       progress=False)
    assert half.dtype == "float16" and half.embeddings().dtype == np.float16
    assert (half.path / "embeddings.bin").stat().st_size * 2 == (full.path / "embeddings.bin").stat().st_size
    # float16 keeps 11 significant bits: every component within 2^-11 relative of the float32 row
    np.testing.assert_allclose(np.asarray(half.embeddings(), np.float32), full.embeddings(), rtol=2**-11,
                               atol=2**-24)


def test_dataset_split_keeps_identity_camera_and_modality(sysu_tree, model_file, tmp_path):
    from mpanet_tf.data.sysu import SYSUDataset

    index = build_index(make_embedder(model_file), tmp_path / "sysu.mpidx", dataset="sysu", data_root=sysu_tree,
                        split="query", progress=False)
    records = SYSUDataset(sysu_tree).query_records()
    assert index.paths == [r.path for r in records]
    assert [(e["person_id"], e["camera"], e["modality"]) for e in index.entries] == \
        [(r.person_id, r.camera, "infrared") for r in records]


def test_refusals(pictures, model_file, tmp_path):
    output = tmp_path / "g.mpidx"
    build_index(make_embedder(model_file), output, images=pictures / "a", progress=False)
    other = make_embedder(tmp_path / "model-b.onnx", seed=1)
    with pytest.raises(GalleryIndexError, match="another model"):
        add_to_index(output, other, images=pictures / "b", progress=False)
    with pytest.raises(GalleryIndexError, match="another source"):
        build_index(make_embedder(model_file), output, images=pictures / "b", progress=False)
    with pytest.raises(GalleryIndexError, match="stores float32"):
        build_index(make_embedder(model_file), output, images=pictures / "a", dtype="float16", progress=False)
    assert json.loads((output / "meta.json").read_text())["count"] == 6
