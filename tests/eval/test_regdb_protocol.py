"""RegDB protocol: both directions, raw vs normalised distances, per-trial combination."""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.regdb_protocol import evaluate_regdb
from mpanet_tf.eval.report import combine_trials
from tests.eval.test_metrics import slow_metrics


def make_regdb(seed=0, ids=6, per_id=4, dim=10):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    pids = np.repeat(np.arange(1, ids + 1), per_id)
    # norms vary a lot, so raw and normalised distances rank differently
    scale = rng.uniform(0.2, 5.0, size=(2, len(pids), 1))
    thermal = (centres[pids - 1] + rng.normal(size=(len(pids), dim))) * scale[0]
    visible = (centres[pids - 1] + rng.normal(size=(len(pids), dim))) * scale[1]
    paths_t = [f"Thermal/{p}/t_{i}.bmp" for i, p in enumerate(pids)]
    paths_v = [f"Visible/{p}/v_{i}.bmp" for i, p in enumerate(pids)]
    return FeatureSet(thermal, pids, [3] * len(pids), paths_t, visible, pids, [2] * len(pids), paths_v)


def reference(query, query_ids, gallery, gallery_ids, normalize):
    if normalize:
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    dist = ((query[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
    return slow_metrics(dist, query_ids, np.full(len(query), 3), gallery_ids, np.full(len(gallery), 2), False)


@pytest.mark.parametrize("normalize", [False, True])
def test_both_directions_match_reference(normalize):
    fs = make_regdb()
    i2v = evaluate_regdb(fs, "i2v", normalize=normalize, trial=1)
    v2i = evaluate_regdb(fs, "v2i", normalize=normalize, trial=1)
    ref_i2v = reference(fs.query_features, fs.query_ids, fs.gallery_features, fs.gallery_ids, normalize)
    ref_v2i = reference(fs.gallery_features, fs.gallery_ids, fs.query_features, fs.query_ids, normalize)
    for got, ref in ((i2v, ref_i2v), (v2i, ref_v2i)):
        assert got["rank1"] == pytest.approx(ref["cmc"][0], abs=1e-6)
        assert got["rank5"] == pytest.approx(ref["cmc"][4], abs=1e-6)
        assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)
        assert got["mINP"] == pytest.approx(ref["mINP"], abs=1e-6)
    assert (i2v["regdb_mode"], i2v["trials"]) == ("i2v", 1)
    assert i2v["per_trial"][0]["trial"] == 1 and i2v["normalize"] is normalize


def test_raw_distances_are_the_default_and_differ_from_normalised():
    fs = make_regdb(1)
    raw, unit = evaluate_regdb(fs), evaluate_regdb(fs, normalize=True)
    assert raw["mAP"] != pytest.approx(unit["mAP"], abs=1e-6)


def test_features_saved_visible_first_give_the_same_directions():
    fs = make_regdb(2)
    for direction in ("i2v", "v2i"):
        assert evaluate_regdb(fs.swapped(), direction)["mAP"] == pytest.approx(evaluate_regdb(fs, direction)["mAP"])


def test_wrong_cameras_and_direction_are_one_line_errors():
    fs = make_regdb()
    sysu_like = FeatureSet(fs.query_features, fs.query_ids, [6] * len(fs.query_ids), fs.query_paths,
                           fs.gallery_features, fs.gallery_ids, fs.gallery_cams, fs.gallery_paths)
    with pytest.raises(DatasetError, match="camera 3"):
        evaluate_regdb(sysu_like)
    with pytest.raises(ConfigError, match="i2v"):
        evaluate_regdb(fs, "t2v")


def test_ten_trial_models_combine_into_mean_and_std():
    results = [evaluate_regdb(make_regdb(seed), "i2v", trial=seed + 1) for seed in range(3)]
    combined = combine_trials(results)
    values = [r["rank1"] for r in results]
    assert combined["trials"] == 3
    assert combined["rank1"] == pytest.approx(np.mean(values))
    assert combined["rank1_std"] == pytest.approx(np.std(values, ddof=1))
    assert [t["trial"] for t in combined["per_trial"]] == [1, 2, 3]
    with pytest.raises(ValueError, match="different settings"):
        combine_trials([results[0], evaluate_regdb(make_regdb(), "v2i")])
