"""Re-identification metrics: CMC, mAP and mINP from a distance matrix, vectorised (design.md §5).

For every query the gallery is sorted by ascending distance; entries the junk rule marks are
removed; what remains is the query's *kept* ranked list. Then, over the valid queries (those with at
least one true match among the kept entries):

- **CMC** (design.md §5.1): the kept list is collapsed to unique identities in first-occurrence order
  and rank-k is the percentage of valid queries whose identity is among the first k unique ids.
  Identities the junk rule removes from a query's list entirely simply do not occur in that
  query's collapsed list (the authors' ``get_cmc`` crashes on a shape mismatch there).
- **mAP**: AP over the un-collapsed kept list, ``AP = mean_i i / rank(i-th true match)``.
- **mINP** (AGW, design.md §5.2): ``(#true matches) / (1-based kept rank of the last true match)``.

Everything is computed with argsort, boolean masks and cumulative sums over blocks of queries;
there is no per-query Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mpanet_tf.errors import DatasetError

#: SYSU-MM01 camera -> location: cameras 2 and 3 are at the same place (design.md §5.1;
#: InnovArul/SYSU_MM01_pythoneval uses the same map 1,2,2,4,5,6).
SYSU_CAMERA_LOCATIONS = {1: 1, 2: 2, 3: 2, 4: 4, 5: 5, 6: 6}

#: The ranks reported by the evaluators (design.md §5.1: R1, R5, R10, R20).
REPORTED_RANKS = (1, 5, 10, 20)

#: A junk rule: (query_cams (q,), gallery_cams (G,)) -> bool (q, G), True = drop from the ranking.
JunkRule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def no_junk(query_cams: np.ndarray, gallery_cams: np.ndarray) -> np.ndarray:
    """Keep every gallery entry (RegDB, design.md §5.3): all-False (q, G)."""
    return np.zeros((len(query_cams), len(gallery_cams)), dtype=bool)


def same_location_junk(query_cams: np.ndarray, gallery_cams: np.ndarray) -> np.ndarray:
    """SYSU rule (design.md §5.1): drop gallery entries whose camera location equals the query's.

    Query cam 3 counts as cam 2, so cam-3 queries ignore cam-2 gallery images; cam-6 queries keep
    everything (no visible camera shares location 6). (q,), (G,) -> bool (q, G).
    """
    lookup = np.arange(max(SYSU_CAMERA_LOCATIONS) + 1)
    for camera, location in SYSU_CAMERA_LOCATIONS.items():
        lookup[camera] = location
    q = lookup[np.asarray(query_cams, dtype=np.int64)]
    g = lookup[np.asarray(gallery_cams, dtype=np.int64)]
    return q[:, None] == g[None, :]


@dataclass
class RankingMetrics:
    """CMC, mAP and mINP of one distance matrix, in percent.

    Attributes:
        cmc: (max_rank,) percentage of valid queries matched within the first k unique ids.
        mAP: mean average precision over valid queries.
        mINP: mean inverse negative penalty over valid queries.
        num_valid: queries with at least one kept true match.
        num_queries: all queries.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy in percent (the last CMC value when k exceeds the curve)."""
        return float(self.cmc[min(k, len(self.cmc)) - 1])

    def as_dict(self, ranks=REPORTED_RANKS) -> dict:
        """``{"rank1": .., "rank5": .., "rank10": .., "rank20": .., "mAP": .., "mINP": ..}``."""
        out = {f"rank{k}": self.rank(k) for k in ranks}
        out["mAP"] = float(self.mAP)
        out["mINP"] = float(self.mINP)
        return out


def pairwise_squared_distance(a: np.ndarray, b: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Squared Euclidean distances ``|a|^2 + |b|^2 - 2 a.b``: (Q, D), (G, D) -> (Q, G).

    The matrix product runs in ``dtype`` (float32 by default, as the authors' GPU code); same
    ranking as Euclidean and, for L2-normalised rows, as cosine distance.
    """
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    dist = a @ b.T
    dist *= -2.0
    dist += np.einsum("ij,ij->i", a, a)[:, None]
    dist += np.einsum("ij,ij->i", b, b)[None, :]
    return dist


def normalized_squared_distance(a: np.ndarray, b: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Squared Euclidean distance of the L2-normalised rows, ``2 - 2 cos(a_i, b_j)``: (Q, D), (G, D) -> (Q, G).

    Equal to :func:`pairwise_squared_distance` of :func:`l2_normalize`-d rows (the SYSU evaluator,
    design.md §5.1) but computed from the raw rows and their norms, so no normalised copy of the
    features is written.
    """
    a = np.asarray(a, dtype=dtype)
    b = np.asarray(b, dtype=dtype)
    inv_a = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", a, a)), 1e-12)
    inv_b = 1.0 / np.maximum(np.sqrt(np.einsum("ij,ij->i", b, b)), 1e-12)
    dist = a @ b.T
    dist *= (-2.0 * inv_a)[:, None]
    dist *= inv_b[None, :]
    dist += 2.0
    return dist


def l2_normalize(features: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Rows divided by their L2 norm (clamped at 1e-12, as torch's F.normalize): (N, D) -> (N, D)."""
    features = np.asarray(features, dtype=dtype)
    norms = np.sqrt(np.einsum("ij,ij->i", features, features))
    return features / np.maximum(norms, 1e-12)[:, None]


def evaluate_ranking(distmat, query_ids, query_cams, gallery_ids, gallery_cams,
                     junk: JunkRule | None = None, max_rank: int = 20,
                     chunk_size: int = 1024) -> RankingMetrics:
    """CMC / mAP / mINP of a (Q, G) distance matrix (smaller = more similar).

    Args:
        distmat: (Q, G) distances.
        query_ids, query_cams: (Q,) integers.
        gallery_ids, gallery_cams: (G,) integers.
        junk: a :data:`JunkRule`; None keeps everything (:func:`no_junk`).
        max_rank: length of the returned CMC curve.
        chunk_size: queries processed together (bounds memory at a few (chunk, G) arrays).

    Raises:
        DatasetError: no query has a true match in the gallery (the two sets share no identity).
    """
    distmat = np.asarray(distmat)
    query_ids = np.asarray(query_ids, dtype=np.int64)
    query_cams = np.asarray(query_cams, dtype=np.int64)
    gallery_ids = np.asarray(gallery_ids, dtype=np.int64)
    gallery_cams = np.asarray(gallery_cams, dtype=np.int64)
    num_q, num_g = distmat.shape
    if (len(query_ids), len(query_cams), len(gallery_ids), len(gallery_cams)) != (num_q, num_q, num_g, num_g):
        raise ValueError(f"distance matrix {distmat.shape} does not match {len(query_ids)} query ids, "
                         f"{len(query_cams)} query cams, {len(gallery_ids)} gallery ids, {len(gallery_cams)} gallery cams")
    if num_g == 0:
        raise DatasetError(f"the gallery is empty ({num_q} queries); nothing to rank against")
    junk = junk or no_junk

    # Gallery columns grouped by identity: slot[g] = place of column g in the id-grouped layout,
    # starts[u] = first slot of the u-th identity, query_col = each query's identity index.
    unique_ids, id_index = np.unique(gallery_ids, return_inverse=True)
    by_id = np.argsort(id_index, kind="stable")
    slot = np.empty(num_g, dtype=np.int64)
    slot[by_id] = np.arange(num_g)
    starts = np.searchsorted(id_index[by_id], np.arange(len(unique_ids)))
    id_index = id_index.astype(np.int32)
    query_col = np.searchsorted(unique_ids, query_ids)
    present = (query_col < len(unique_ids)) & (unique_ids[np.minimum(query_col, len(unique_ids) - 1)] == query_ids)
    query_col = np.where(present, query_col, -1).astype(np.int32)
    absent = num_g + 1

    hits = np.zeros(max_rank, dtype=np.int64)   # valid queries whose unique-id rank == k+1
    ap_sum = inp_sum = 0.0
    num_valid = 0
    for begin in range(0, num_q, chunk_size):
        end = min(begin + chunk_size, num_q)
        count = end - begin
        rows = np.arange(count)[:, None]
        order = np.argsort(distmat[begin:end], axis=1)                           # (q, G)
        kept = ~junk(query_cams[begin:end], gallery_cams)[rows, order]            # sorted order
        match = (id_index[order] == query_col[begin:end, None]) & kept
        kept_rank = np.cumsum(kept, axis=1, dtype=np.int32)                       # 1-based among kept
        num_true = match.sum(axis=1)
        valid = num_true > 0
        if not valid.any():
            continue
        cum_true = np.cumsum(match, axis=1, dtype=np.int32)
        precision = np.where(match, cum_true / np.maximum(kept_rank, 1), 0.0)
        ap = precision.sum(axis=1) / np.maximum(num_true, 1)
        last_rank = np.where(match, kept_rank, 0).max(axis=1)
        inp = num_true / np.maximum(last_rank, 1)

        # CMC: kept rank of each identity's first kept image (``absent`` when none is kept); the
        # unique-id rank of the true id is 1 + the number of ids whose first kept image comes earlier.
        position = np.empty((count, num_g), dtype=np.int32)
        np.put_along_axis(position, slot[order], np.where(kept, kept_rank, absent), axis=1)
        first = np.minimum.reduceat(position, starts, axis=1)                     # (q, U)
        true_first = first[np.arange(count), np.maximum(query_col[begin:end], 0)]
        unique_rank = (first < true_first[:, None]).sum(axis=1) + 1

        num_valid += int(valid.sum())
        ap_sum += float(ap[valid].sum())
        inp_sum += float(inp[valid].sum())
        ranks = unique_rank[valid]
        hits += np.bincount(ranks[ranks <= max_rank] - 1, minlength=max_rank)

    if num_valid == 0:
        raise DatasetError(
            f"no query has a true match among the {num_g} gallery images ({num_q} queries); "
            "the query and gallery features must come from the same identities (test split)")
    cmc = 100.0 * np.cumsum(hits) / num_valid
    return RankingMetrics(cmc=cmc, mAP=100.0 * ap_sum / num_valid, mINP=100.0 * inp_sum / num_valid,
                          num_valid=num_valid, num_queries=num_q)
