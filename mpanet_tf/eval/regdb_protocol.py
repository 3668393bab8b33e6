"""RegDB evaluation (facts §5.3, MPANet utils/eval_regdb.py; decision 7).

- ``"i2v"``: thermal query (cam 3) against the visible gallery (cam 2); ``"v2i"``: roles swapped.
- No camera filtering (the two sides never share a camera).
- Plain squared Euclidean on the raw BN-neck features by default (the authors' evaluator leaves
  its normalisation commented out); ``normalize=True`` L2-normalises first, as AGW does.
- Unique-id CMC, mAP and mINP as for SYSU (:mod:`mpanet_tf.eval.metrics`).

One call evaluates one model on one trial's test split; the ten per-trial models of the usual
10-trial average are combined with :func:`mpanet_tf.eval.report.combine_trials`.
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.metrics import evaluate_ranking, l2_normalize, no_junk, pairwise_squared_distance
from mpanet_tf.eval.report import make_result

VISIBLE_CAMERA = 2
THERMAL_CAMERA = 3
DIRECTIONS = ("i2v", "v2i")


def _thermal_query(features: FeatureSet) -> FeatureSet:
    """The feature set arranged as I->V (thermal query, visible gallery), whichever way it was saved."""
    query_cams, gallery_cams = set(features.query_cams.tolist()), set(features.gallery_cams.tolist())
    if query_cams == {THERMAL_CAMERA} and gallery_cams == {VISIBLE_CAMERA}:
        return features
    if query_cams == {VISIBLE_CAMERA} and gallery_cams == {THERMAL_CAMERA}:
        return features.swapped()
    raise DatasetError(
        f"RegDB features must pair thermal (camera 3) with visible (camera 2) images, got query cameras "
        f"{sorted(query_cams)} and gallery cameras {sorted(gallery_cams)}; were they extracted from SYSU-MM01?")


def evaluate_regdb(features: FeatureSet, direction: str = "i2v", normalize: bool = False,
                   rerank: bool = False, rerank_params: dict | None = None, trial: int | None = None) -> dict:
    """Evaluate one RegDB direction on one trial's test features.

    Args:
        features: thermal and visible test features of one trial (either side may be the query).
        direction: ``"i2v"`` (thermal query) or ``"v2i"`` (visible query).
        normalize: L2-normalise before the distance (off by default, as the authors).
        rerank: k-reciprocal re-ranking (:mod:`mpanet_tf.eval.rerank`).
        trial: the RegDB trial number, stored in the per-trial entry.

    Returns:
        a result dict (:mod:`mpanet_tf.eval.report`) with one trial.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"RegDB direction must be 'i2v' or 'v2i', got {direction!r}")
    arranged = _thermal_query(features)
    if direction == "v2i":
        arranged = arranged.swapped()
    prepare = l2_normalize if normalize else (lambda x: np.asarray(x, dtype=np.float32))
    query, gallery = prepare(arranged.query_features), prepare(arranged.gallery_features)
    if rerank:
        from mpanet_tf.eval.rerank import k_reciprocal_rerank

        dist = k_reciprocal_rerank(query, gallery, **(rerank_params or {}))
    else:
        dist = pairwise_squared_distance(query, gallery)
    metrics = evaluate_ranking(dist, arranged.query_ids, arranged.query_cams,
                               arranged.gallery_ids, arranged.gallery_cams, junk=no_junk)
    entry = {"trial": trial, **metrics.as_dict(), "gallery_size": int(len(gallery)),
             "valid_queries": metrics.num_valid}
    return make_result([entry], dataset="regdb", regdb_mode=direction, normalize=bool(normalize),
                       rerank=bool(rerank))
