"""Exact search: distances and the stable tie order, against numpy's full computation."""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf.index.exact import exact_search, unit_rows


def _reference(query, rows):
    q = query / np.linalg.norm(query)
    distances = np.linalg.norm(rows.astype(np.float64) - q, axis=1)
    order = np.argsort(distances, kind="stable")
    return order, distances[order]


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, None])
@pytest.mark.parametrize("top_k", [None, 1, 5, 40])
def test_matches_numpy_with_ties_in_gallery_order(chunk_rows, top_k):
    rng = np.random.default_rng(0)
    rows = unit_rows(rng.normal(size=(50, 12))).astype(np.float32)
    rows[[3, 17, 31, 44]] = rows[9]          # exact ties: must come back in gallery order
    queries = np.vstack([rows[9] * 2.5, rng.normal(size=(3, 12))])
    indices, distances = exact_search(queries, rows, top_k=top_k, chunk_rows=chunk_rows)
    k = 50 if top_k is None else top_k
    assert indices.shape == distances.shape == (4, k) and distances.dtype == np.float32
    for q in range(4):
        order, expected = _reference(queries[q], rows)
        np.testing.assert_array_equal(indices[q], order[:k])
        np.testing.assert_allclose(distances[q], expected[:k], atol=1e-6)
    assert indices[0, :5].tolist() == [3, 9, 17, 31, 44][:k]


def test_chunking_does_not_change_a_bit():
    rng = np.random.default_rng(1)
    rows = unit_rows(rng.normal(size=(300, 40))).astype(np.float16)
    query = rng.normal(size=40)
    whole = exact_search(query, rows, chunk_rows=1000)
    for chunk in (1, 13, 256):
        chunked = exact_search(query, rows, chunk_rows=chunk)
        np.testing.assert_array_equal(chunked[0], whole[0])
    top = exact_search(query, rows, top_k=10, chunk_rows=13)
    np.testing.assert_array_equal(top[0], whole[0][:, :10])


def test_memmap_rows(tmp_path):
    rows = unit_rows(np.random.default_rng(2).normal(size=(120, 16))).astype(np.float32)
    rows.tofile(tmp_path / "rows.bin")
    mapped = np.memmap(tmp_path / "rows.bin", dtype=np.float32, mode="r", shape=rows.shape)
    query = rows[5] + 0.01
    in_memory, on_disk = exact_search(query, rows, top_k=7), exact_search(query, mapped, top_k=7, chunk_rows=9)
    np.testing.assert_array_equal(in_memory[0], on_disk[0])
    np.testing.assert_array_equal(in_memory[1], on_disk[1])
    assert in_memory[0][0, 0] == 5
