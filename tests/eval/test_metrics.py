"""CMC / mAP / mINP: hand-worked examples, the SYSU camera rule, and a slow per-query reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from mpanet_tf.errors import DatasetError
from mpanet_tf.eval.metrics import (
    evaluate_ranking, l2_normalize, no_junk, pairwise_squared_distance, same_location_junk,
)


def slow_metrics(distmat, query_ids, query_cams, gallery_ids, gallery_cams, junk_location: bool, max_rank=20):
    """Straightforward per-query port of the authors' get_cmc / get_mAP plus AGW's mINP.

    Junk (``junk_location``): query cam 3 is relabelled 2 and gallery entries of the query's
    camera are removed (MPANet eval_sysu). The CMC counts ranks over the unique ids that remain
    (the authors' code would crash when an identity disappears). Returns percentages.
    """
    hits = np.zeros(max_rank)
    aps, inps = [], []
    for q in range(len(query_ids)):
        order = np.argsort(distmat[q], kind="stable")
        ids = gallery_ids[order]
        cams = gallery_cams[order]
        if junk_location:
            qcam = 2 if query_cams[q] == 3 else query_cams[q]
            ids = ids[cams != qcam]
        match = ids == query_ids[q]
        if not match.any():
            continue
        positions = np.where(match)[0]
        aps.append(np.mean(np.arange(1, len(positions) + 1) / (positions + 1)))
        inps.append(len(positions) / (positions[-1] + 1))
        unique = []
        for pid in ids:
            if pid not in unique:
                unique.append(pid)
        rank = unique.index(query_ids[q])
        if rank < max_rank:
            hits[rank:] += 1
    n = len(aps)
    return {"cmc": 100 * hits / n, "mAP": 100 * np.mean(aps), "mINP": 100 * np.mean(inps), "num_valid": n}


def test_hand_worked_example_without_junk():
    gallery_ids = np.array([1, 1, 2, 3, 2])
    gallery_cams = np.array([1, 1, 1, 1, 1])
    query_ids = np.array([1, 2, 4])
    query_cams = np.array([3, 3, 3])
    dist = np.array([
        # query id 1: order g1, g2, g3, g4, g0 -> ids 1,2,3,2,1; true at ranks 1 and 5
        #   AP = (1/1 + 2/5) / 2 = 0.7; INP = 2/5 = 0.4; unique ids 1,2,3 -> unique rank 1
        [0.5, 0.1, 0.2, 0.3, 0.4],
        # query id 2: order g0, g1, g3, g4, g2 -> ids 1,1,3,2,2; true at ranks 4 and 5
        #   AP = (1/4 + 2/5) / 2 = 0.325; INP = 2/5 = 0.4; unique ids 1,3,2 -> unique rank 3
        [0.1, 0.2, 0.5, 0.3, 0.4],
        # query id 4: not in the gallery -> not a valid query
        [0.1, 0.2, 0.3, 0.4, 0.5],
    ])
    result = evaluate_ranking(dist, query_ids, query_cams, gallery_ids, gallery_cams, junk=no_junk)
    assert result.num_valid == 2 and result.num_queries == 3
    # CMC: rank 1 -> 1/2, ranks 2 -> 1/2, ranks >= 3 -> 2/2
    np.testing.assert_allclose(result.cmc[:5], [50, 50, 100, 100, 100])
    assert result.rank(20) == pytest.approx(100)
    assert result.mAP == pytest.approx(100 * (0.7 + 0.325) / 2)    # 51.25
    assert result.mINP == pytest.approx(100 * (0.4 + 0.4) / 2)     # 40
    d = result.as_dict()
    assert set(d) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    assert d["rank1"] == pytest.approx(50) and d["rank5"] == pytest.approx(100)


def test_camera_rule_cam3_ignores_cam2_but_cam6_does_not():
    gallery_ids = np.array([1, 2, 1, 2])
    gallery_cams = np.array([2, 1, 1, 2])
    query_ids = np.array([1, 1])
    query_cams = np.array([3, 6])
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    # cam-3 query: g0 (cam 2) and g3 (cam 2) are junk -> kept ids 2, 1: true at kept rank 2
    #   AP = 1/2, INP = 1/2, unique rank 2
    # cam-6 query: nothing junk -> ids 1,2,1,2: true at ranks 1, 3
    #   AP = (1/1 + 2/3)/2 = 5/6, INP = 2/3, unique rank 1
    result = evaluate_ranking(dist, query_ids, query_cams, gallery_ids, gallery_cams, junk=same_location_junk)
    np.testing.assert_allclose(result.cmc[:3], [50, 100, 100])
    assert result.mAP == pytest.approx(100 * (0.5 + 5 / 6) / 2)
    assert result.mINP == pytest.approx(100 * (0.5 + 2 / 3) / 2)
    mask = same_location_junk(np.array([3, 6]), np.array([1, 2, 4, 5]))
    np.testing.assert_array_equal(mask, [[False, True, False, False], [False, False, False, False]])


def test_identity_removed_entirely_by_the_camera_rule():
    # identity 5 only has cam-2 images: a cam-3 query never sees it.
    gallery_ids = np.array([1, 5, 5, 2])
    gallery_cams = np.array([1, 2, 2, 4])
    query_ids = np.array([2, 1])
    query_cams = np.array([3, 3])
    dist = np.array([
        [0.4, 0.1, 0.2, 0.3],   # order g1(5, junk) g2(5, junk) g3(2) g0(1): kept ids 2,1 -> rank 1, AP 1
        [0.3, 0.1, 0.2, 0.05],  # order g3(2) g1(junk) g2(junk) g0(1): kept ids 2,1 -> unique rank 2, AP 1/2
    ])
    result = evaluate_ranking(dist, query_ids, query_cams, gallery_ids, gallery_cams, junk=same_location_junk)
    np.testing.assert_allclose(result.cmc[:3], [50, 100, 100])
    assert result.mAP == pytest.approx(75.0)
    assert result.mINP == pytest.approx(100 * (1 + 0.5) / 2)


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_agrees_with_slow_reference_on_random_data(chunk_size):
    rng = np.random.default_rng(0)
    num_q, num_g = 40, 60
    query_ids = rng.integers(0, 12, num_q)
    gallery_ids = rng.integers(0, 10, num_g)        # some query ids are absent -> invalid queries
    query_cams = rng.choice([3, 6], num_q)
    gallery_cams = rng.choice([1, 2, 4, 5], num_g)
    dist = rng.random((num_q, num_g))
    for junk, location in ((same_location_junk, True), (no_junk, False)):
        fast = evaluate_ranking(dist, query_ids, query_cams, gallery_ids, gallery_cams, junk=junk,
                                chunk_size=chunk_size)
        slow = slow_metrics(dist, query_ids, query_cams, gallery_ids, gallery_cams, location)
        np.testing.assert_allclose(fast.cmc, slow["cmc"], atol=1e-9)
        assert fast.mAP == pytest.approx(slow["mAP"], abs=1e-9)
        assert fast.mINP == pytest.approx(slow["mINP"], abs=1e-9)
        assert fast.num_valid == slow["num_valid"]


def test_no_valid_query_is_a_one_line_error():
    with pytest.raises(DatasetError, match="no query has a true match"):
        evaluate_ranking(np.zeros((2, 2)), [1, 2], [3, 3], [7, 8], [1, 1])


def test_distance_and_normalisation_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 8)), rng.normal(size=(7, 8))
    np.testing.assert_allclose(pairwise_squared_distance(a, b, dtype=np.float64), cdist(a, b, "sqeuclidean"),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pairwise_squared_distance(a, b), cdist(a, b, "sqeuclidean"), rtol=1e-4, atol=1e-4)
    unit = l2_normalize(a)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, a / np.linalg.norm(a, axis=1, keepdims=True), rtol=1e-6)
