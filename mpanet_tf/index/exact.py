"""Exact nearest-neighbour search over stored unit embeddings, in bounded-memory chunks.

Distance (the one of ``mpanet-tf search`` and of the SYSU-MM01 evaluation, design.md §5.1): the
Euclidean distance between L2-normalised embeddings, ``d(q, g) = ||q - g||_2`` in [0, 2]. The
gallery rows are read ``chunk_rows`` at a time (a numpy array or a ``numpy.memmap`` of an index on
disk, so a gallery larger than RAM works), converted to float64, and compared with the queries by
one matrix product per chunk::

    d(q, g)^2 = ||g||^2 + ||q||^2 - 2 g.q        (clamped at 0)

The number of rows per chunk depends only on the dimension (:func:`chunk_rows_for`), so a gallery
held in memory and the same rows memory-mapped from an index are cut into the same chunks and give
bit-identical distances. Ties keep the gallery order (the order of a stable sort).
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.eval.metrics import l2_normalize
from mpanet_tf.index.format import GalleryIndexError

#: Bytes of float64 gallery rows compared per matrix product.
CHUNK_BYTES = 64 * 2**20


def chunk_rows_for(dim: int) -> int:
    """Gallery rows per chunk for ``dim``-d embeddings (about :data:`CHUNK_BYTES` of float64)."""
    return max(1, CHUNK_BYTES // (8 * max(1, int(dim))))


def unit_rows(features) -> np.ndarray:
    """(N, D) or (D,) embeddings -> (N, D) float64 rows of unit L2 norm (norm clamped at 1e-12)."""
    features = np.asarray(features, dtype=np.float64)
    return l2_normalize(features.reshape(-1, features.shape[-1]), dtype=np.float64)


def _chunk_distances(queries: np.ndarray, block: np.ndarray, start: int = 0, source: str = "the gallery") -> np.ndarray:
    """(Q, D) float64 queries, (R, D) rows (row ``start`` onwards of ``source``) -> (Q, R) float64
    Euclidean distances; :class:`GalleryIndexError` for a row holding NaN or inf (a damaged index
    would otherwise rank nothing, or rank wrongly, without a word)."""
    block = np.asarray(block, dtype=np.float64)
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        row = start + int(np.argmin(finite))
        raise GalleryIndexError(f"{source}: row {row} holds NaN or inf, so it cannot be ranked; rebuild the "
                                "rows (`mpanet-tf index build`) or check the model that embedded them")
    squared = (np.einsum("ij,ij->i", block, block)[None, :] + np.einsum("ij,ij->i", queries, queries)[:, None]
               - 2.0 * (queries @ block.T))
    return np.sqrt(np.maximum(squared, 0.0))


def _best(indices: np.ndarray, distances: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest ``distances`` (ties by smaller index), sorted; the rest dropped."""
    if len(distances) > k:
        # every candidate tied with the k-th distance survives, so the tie order stays exact
        keep = distances <= np.partition(distances, k - 1)[k - 1]
        indices, distances = indices[keep], distances[keep]
    order = np.lexsort((indices, distances))[:k]
    return indices[order], distances[order]


def exact_search(queries, rows, top_k: int | None = None, chunk_rows: int | None = None,
                 source: str = "the gallery"):
    """Rank ``rows`` for every query by the Euclidean distance of unit vectors.

    Args:
        queries: (Q, D) or (D,) query embeddings; L2-normalised here (float64).
        rows: (G, D) gallery rows, already L2-normalised (float32 or float16; an array or memmap).
        top_k: matches kept per query (default: all G, i.e. the full ranking).
        chunk_rows: rows per matrix product (default :func:`chunk_rows_for`).
        source: the rows' origin as messages name it (``"gallery index /x.mpidx"``).

    Returns:
        (indices (Q, k) int64 best first, distances (Q, k) float32), k = min(top_k, G). Equal
        distances keep the gallery order, exactly as ``np.argsort(..., kind="stable")`` of the
        full distance row.
    """
    queries = unit_rows(queries)
    total, dim = int(rows.shape[0]), int(rows.shape[1])
    if queries.shape[1] != dim:
        raise ValueError(f"queries are {queries.shape[1]}-d but the gallery rows are {dim}-d")
    k = total if top_k is None else max(0, min(int(top_k), total))
    step = int(chunk_rows or chunk_rows_for(dim))
    if k == total:  # the full ranking: every distance, one stable sort
        full = np.zeros((len(queries), total), np.float64)
        for start in range(0, total, step):
            full[:, start:start + step] = _chunk_distances(queries, rows[start:start + step], start, source)
        order = np.argsort(full, axis=1, kind="stable")
        return order.astype(np.int64), np.take_along_axis(full, order, axis=1).astype(np.float32)
    best = [(np.zeros(0, np.int64), np.zeros(0, np.float64)) for _ in range(len(queries))]
    for start in range(0, total, step):
        stop = min(total, start + step)
        distances = _chunk_distances(queries, rows[start:stop], start, source)
        candidates = np.arange(start, stop, dtype=np.int64)
        for q in range(len(queries)):
            kept_i, kept_d = best[q]
            best[q] = _best(np.concatenate([kept_i, candidates]), np.concatenate([kept_d, distances[q]]), k)
    indices = np.stack([b[0] for b in best]) if best else np.zeros((0, k), np.int64)
    distances = np.stack([b[1] for b in best]).astype(np.float32) if best else np.zeros((0, k), np.float32)
    return indices, distances
