"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), the ``re_ranking`` function the re-ID code bases share (MPANet utils/rerank.py;
k1=20, k2=6, lambda=0.3).

With N = Q + G probe-and-gallery items and the pairwise distance d (row i divided by its maximum):

- R(i, k) = {j in N(i, k) : i in N(j, k)}, N(i, k) = the k+1 nearest items of i (itself included);
- R*(i) = R(i, k1) plus R(c, k1/2) of every c in R(i, k1) with |R(c, k1/2) ∩ R(i, k1)| > 2/3 |R(c, k1/2)|;
- V[i, j] = exp(-d[i, j]) / sum over R*(i), zero outside R*(i) (Eq. 7); local query expansion
  replaces V[i] by the mean of V over its k2 nearest items;
- Jaccard distance d_J(i, j) = 1 - m / (2 - m), m = sum_k min(V[i, k], V[j, k]) (Eq. 10-11);
- final = (1 - lambda) d_J + lambda d (Eq. 12), query rows x gallery columns.

Differences from the reference code: neighbour sets, expansion and query expansion are sparse
matrix products (no per-item loop); V is float32 (the reference stores float16), so distances can
differ in the fourth decimal.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mpanet_tf.eval.metrics import pairwise_squared_distance


def _sorted_neighbours(dist: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` nearest columns of every row, nearest first: (N, N) -> (N, count) int."""
    count = min(count, dist.shape[1])
    part = np.argpartition(dist, count - 1, axis=1)[:, :count]
    within = np.argsort(np.take_along_axis(dist, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, within, axis=1)


def _indicator(rows_of: np.ndarray, size: int) -> sp.csr_matrix:
    """Sparse 0/1 matrix with ones at (i, rows_of[i, :]): (N, k) -> (N, size)."""
    n, k = rows_of.shape
    data = np.ones(n * k, dtype=np.float32)
    return sp.csr_matrix((data, (np.repeat(np.arange(n), k), rows_of.reshape(-1))), shape=(n, size))


def k_reciprocal_sets(initial_rank: np.ndarray, k: int) -> sp.csr_matrix:
    """R(i, k) as a sparse 0/1 (N, N) matrix: j in the k+1 nearest of i and i in the k+1 nearest of j.

    Args:
        initial_rank: (N, >= k+1) neighbour indices, nearest first (column 0 is usually i itself).
    """
    forward = _indicator(initial_rank[:, :k + 1], initial_rank.shape[0])
    return forward.multiply(forward.T).tocsr()


def _minimum_overlap(v_query: sp.csr_matrix, v_gallery_csc: sp.csc_matrix, chunk: int = 256) -> np.ndarray:
    """m[i, j] = sum_k min(Vq[i, k], Vg[j, k]) for sparse non-negative rows: -> (Q, G) float32."""
    num_q, num_g = v_query.shape[0], v_gallery_csc.shape[0]
    out = np.zeros((num_q, num_g), dtype=np.float32)
    col_ptr, col_rows, col_vals = v_gallery_csc.indptr, v_gallery_csc.indices, v_gallery_csc.data
    for begin in range(0, num_q, chunk):
        block = v_query[begin:begin + chunk].tocoo()
        counts = col_ptr[block.col + 1] - col_ptr[block.col]              # gallery entries per (i, k)
        total = int(counts.sum())
        if total == 0:
            continue
        owner = np.repeat(np.arange(len(block.data)), counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        where = col_ptr[block.col][owner] + offset
        values = np.minimum(block.data[owner], col_vals[where])
        flat = block.row[owner].astype(np.int64) * num_g + col_rows[where]
        rows = min(chunk, num_q - begin)
        out[begin:begin + rows] = np.bincount(flat, weights=values, minlength=rows * num_g).reshape(rows, num_g)
    return out


def k_reciprocal_rerank_distances(query_gallery: np.ndarray, query_query: np.ndarray,
                                  gallery_gallery: np.ndarray, k1: int = 20, k2: int = 6,
                                  lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked (Q, G) distances from the three blocks of the original distance matrix.

    Args:
        query_gallery: (Q, G), query_query: (Q, Q), gallery_gallery: (G, G) original distances
            (the reference uses squared Euclidean).
        k1, k2, lambda_value: Zhong et al.'s parameters (20, 6, 0.3).
    """
    num_q = query_gallery.shape[0]
    original = np.block([[query_query, query_gallery], [query_gallery.T, gallery_gallery]]).astype(np.float32)
    original = (original / np.max(original, axis=0)).T    # as the reference: rows scaled by their maximum
    num = original.shape[0]
    half = int(np.around(k1 / 2))
    initial_rank = _sorted_neighbours(original, max(k1 + 1, k2))

    reciprocal = k_reciprocal_sets(initial_rank, k1)                           # R(i, k1)
    reciprocal_half = k_reciprocal_sets(initial_rank, half)                    # R(c, k1/2)
    overlap = (reciprocal_half @ reciprocal.T).tocsr()                         # [c, i] = |R(c,k1/2) ∩ R(i,k1)|
    half_sizes = np.asarray(reciprocal_half.sum(axis=1)).ravel()
    candidates = reciprocal.T.multiply(overlap).tocoo()                        # c in R(i) with their overlap
    accept = candidates.data > 2.0 / 3.0 * half_sizes[candidates.row]
    chosen = sp.csr_matrix((np.ones(int(accept.sum()), np.float32),
                            (candidates.col[accept], candidates.row[accept])), shape=(num, num))
    expansion = ((reciprocal + chosen @ reciprocal_half) > 0).tocsr()          # R*(i)

    rows, cols = expansion.nonzero()
    weights = np.exp(-original[rows, cols])
    sums = np.bincount(rows, weights=weights, minlength=num)
    v = sp.csr_matrix(((weights / sums[rows]).astype(np.float32), (rows, cols)), shape=(num, num))
    if k2 != 1:
        expand = _indicator(initial_rank[:, :k2], num) * (1.0 / k2)
        v = (expand @ v).tocsr()

    overlap_min = _minimum_overlap(v[:num_q], v[num_q:].tocsc())
    jaccard = 1.0 - overlap_min / (2.0 - overlap_min)
    return jaccard * (1.0 - lambda_value) + original[:num_q, num_q:] * lambda_value


def k_reciprocal_rerank(query_features: np.ndarray, gallery_features: np.ndarray, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3) -> np.ndarray:
    """Re-ranked distances from features: (Q, D), (G, D) -> (Q, G), squared Euclidean as the reference."""
    return k_reciprocal_rerank_distances(
        pairwise_squared_distance(query_features, gallery_features),
        pairwise_squared_distance(query_features, query_features),
        pairwise_squared_distance(gallery_features, gallery_features),
        k1=k1, k2=k2, lambda_value=lambda_value)
