"""k-reciprocal re-ranking against a loop implementation and its defining neighbour sets."""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf.eval.rerank import k_reciprocal_rerank, k_reciprocal_sets


def loop_rerank(query, gallery, k1, k2, lambda_value):
    """Per-item loops as in Zhong et al.'s published re_ranking (V kept in float32, not float16)."""
    feat = np.concatenate([query, gallery]).astype(np.float64)
    num_q, num = len(query), len(query) + len(gallery)
    original = ((feat[:, None, :] - feat[None, :, :]) ** 2).sum(-1).astype(np.float32)
    original = np.transpose(original / np.max(original, axis=0))
    v = np.zeros_like(original, dtype=np.float32)
    initial_rank = np.argsort(original, kind="stable").astype(np.int32)
    for i in range(num):
        forward = initial_rank[i, :k1 + 1]
        backward = initial_rank[forward, :k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for candidate in reciprocal:
            half = int(np.around(k1 / 2))
            c_forward = initial_rank[candidate, :half + 1]
            c_backward = initial_rank[c_forward, :half + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, reciprocal)) > 2 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    if k2 != 1:
        v = np.stack([np.mean(v[initial_rank[i, :k2], :], axis=0) for i in range(num)])
    jaccard = np.zeros((num_q, num), dtype=np.float32)
    for i in range(num_q):
        temp_min = np.zeros(num, dtype=np.float32)
        for k in np.where(v[i, :] != 0)[0]:
            rows = np.where(v[:, k] != 0)[0]
            temp_min[rows] += np.minimum(v[i, k], v[rows, k])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    final = jaccard * (1 - lambda_value) + original[:num_q] * lambda_value
    return final[:, num_q:]


@pytest.mark.parametrize("k1,k2", [(4, 2), (6, 1), (20, 6)])
def test_matches_loop_reference(k1, k2):
    rng = np.random.default_rng(k1)
    centres = rng.normal(size=(5, 6))
    query = centres[rng.integers(0, 5, 9)] + 0.6 * rng.normal(size=(9, 6))
    gallery = centres[rng.integers(0, 5, 23)] + 0.6 * rng.normal(size=(23, 6))
    fast = k_reciprocal_rerank(query, gallery, k1=k1, k2=k2, lambda_value=0.3)
    slow = loop_rerank(query, gallery, k1, k2, 0.3)
    assert fast.shape == (9, 23)
    np.testing.assert_allclose(fast, slow, atol=2e-5)


def test_reciprocal_sets_on_a_line():
    # Points on a line at 0, 1, 2, 10, 11: nearest-first neighbour lists by hand (k=1 -> 2 nearest).
    #   0: [0, 1]  1: [1, 0 or 2] (tie broken toward 0 by order)  2: [2, 1]  3: [3, 4]  4: [4, 3]
    initial_rank = np.array([[0, 1, 2, 3, 4],
                             [1, 0, 2, 3, 4],
                             [2, 1, 0, 3, 4],
                             [3, 4, 2, 1, 0],
                             [4, 3, 2, 1, 0]])
    sets = k_reciprocal_sets(initial_rank, k=1).toarray().astype(bool)
    # R(0) = {0, 1} (1 lists 0); R(1) = {1, 0}; R(2) = {2} (1 does not list 2); R(3) = {3, 4}; R(4) = {4, 3}
    expected = {0: {0, 1}, 1: {0, 1}, 2: {2}, 3: {3, 4}, 4: {3, 4}}
    for i, members in expected.items():
        assert set(np.flatnonzero(sets[i])) == members
    # Brute force for a larger k on random ranks: j in R(i) iff j in top(i) and i in top(j).
    rng = np.random.default_rng(0)
    ranks = np.stack([np.r_[i, rng.permutation(np.delete(np.arange(12), i))] for i in range(12)])
    sets = k_reciprocal_sets(ranks, k=4).toarray().astype(bool)
    for i in range(12):
        brute = {j for j in ranks[i, :5] if i in ranks[j, :5]}
        assert set(np.flatnonzero(sets[i])) == brute


def test_rerank_pulls_true_neighbours_closer_on_clustered_data():
    # Two tight clusters; a query between them but in a cluster's k-reciprocal neighbourhood.
    rng = np.random.default_rng(2)
    a = rng.normal(size=(8, 3)) * 0.05
    b = rng.normal(size=(8, 3)) * 0.05 + np.array([1.0, 0, 0])
    gallery = np.concatenate([a[1:], b[1:]])
    query = np.stack([a[0], b[0]])
    dist = k_reciprocal_rerank(query, gallery, k1=5, k2=2, lambda_value=0.3)
    assert dist[0, :7].max() < dist[0, 7:].min()
    assert dist[1, 7:].max() < dist[1, :7].min()
