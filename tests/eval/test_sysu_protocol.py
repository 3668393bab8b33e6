"""SYSU protocols: official permutation galleries, the .mat file, AGW seeded sampling, camera rule."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import scipy.io

from mpanet_tf.data.registry import get_dataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.report import format_table
from mpanet_tf.eval.sysu_protocol import (
    agw_gallery_keys, evaluate_sysu, evaluate_sysu_settings, official_gallery_keys, sysu_trial_galleries,
)
from tests.eval.test_metrics import slow_metrics

# Images per (camera, id) of a tiny test split; (4, 5) is absent and (2, 7) has no cell in the perm.
COUNTS = {(1, 1): 3, (2, 1): 2, (4, 1): 12, (5, 1): 1,
          (1, 5): 4, (2, 5): 1, (5, 5): 2,
          (1, 7): 2, (2, 7): 3, (4, 7): 1, (5, 7): 2}
QUERY_COUNTS = {(3, 1): 3, (6, 1): 2, (3, 5): 2, (6, 5): 3, (3, 7): 2, (6, 7): 2}


def make_features(seed=0, dim=16):
    rng = np.random.default_rng(seed)
    centres = {pid: rng.normal(size=dim) for pid in (1, 5, 7)}

    def side(counts):
        ids, cams, paths, feats = [], [], [], []
        for (cam, pid), n in sorted(counts.items()):
            for number in range(1, n + 1):
                ids.append(pid)
                cams.append(cam)
                paths.append(f"cam{cam}/{pid:04d}/{number:04d}.jpg")
                feats.append(centres[pid] + 1.5 * rng.normal(size=dim))
        return np.array(feats), ids, cams, paths

    qf, qi, qc, qp = side(QUERY_COUNTS)
    gf, gi, gc, gp = side(COUNTS)
    return FeatureSet(qf, qi, qc, qp, gf, gi, gc, gp)


def make_perm(seed=0, trials=10):
    rng = np.random.default_rng(seed)
    perm = {key: np.stack([rng.permutation(n) + 1 for _ in range(trials)]) for key, n in COUNTS.items()}
    del perm[(2, 7)]                         # a missing cell
    perm[(1, 7)] = np.zeros((0, 0))          # an empty cell
    return perm


def reference_result(features, key_lists):
    """Per trial: the gallery by path, L2-normalised float64 distances, the slow per-query metrics."""
    query = features.query_features / np.linalg.norm(features.query_features, axis=1, keepdims=True)
    trials = []
    for keys in key_lists:
        rows = [i for i, p in enumerate(features.gallery_paths) if os.path.splitext(p)[0] in set(keys)]
        gallery = features.gallery_features[rows]
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
        dist = ((query[:, None, :] - gallery[None, :, :]) ** 2).sum(-1)
        trials.append(slow_metrics(dist, features.query_ids, features.query_cams,
                                   features.gallery_ids[rows], features.gallery_cams[rows], True))
    return trials


def expected_official_keys(perm, trial, shots, cameras, ids=(1, 5, 7)):
    keys = set()
    for cam in cameras:
        for pid in ids:
            cell = perm.get((cam, pid))
            if cell is not None and cell.size:
                keys |= {f"cam{cam}/{pid:04d}/{n:04d}" for n in cell[trial][:shots]}
    return keys


def test_official_keys_take_row_t_first_n_and_skip_empty_cells():
    perm = make_perm()
    keys = official_gallery_keys(perm, [1, 5, 7], (1, 2, 4, 5), trial=3, shots=1)
    # one key per non-empty cell: (1,1) (2,1) (4,1) (5,1) (1,5) (2,5) (5,5) (4,7) (5,7)
    assert len(keys) == 9
    assert f"cam4/0001/{perm[(4, 1)][3][0]:04d}" in keys
    assert not any(k.startswith("cam1/0007") or k.startswith("cam2/0007") for k in keys)
    ten = official_gallery_keys(perm, [1], (4,), trial=2, shots=10)
    assert ten == [f"cam4/0001/{n:04d}" for n in perm[(4, 1)][2][:10]]
    few = official_gallery_keys(perm, [1], (1,), trial=0, shots=10)   # only 3 images in that cell
    assert len(few) == 3


@pytest.mark.parametrize("mode,shots", [("all", 1), ("indoor", 1), ("all", 10), ("indoor", 10)])
def test_official_protocol_matches_reference(mode, shots):
    features, perm = make_features(), make_perm()
    cameras = (1, 2, 4, 5) if mode == "all" else (1, 2)
    result = evaluate_sysu(features, perm=perm, mode=mode, shots=shots, trials=10)
    key_lists = [expected_official_keys(perm, t, shots, cameras) for t in range(10)]
    reference = reference_result(features, key_lists)
    assert result["trials"] == 10 and len(result["per_trial"]) == 10
    for got, ref, keys in zip(result["per_trial"], reference, key_lists):
        assert got["gallery_size"] == len(keys)
        assert got["rank1"] == pytest.approx(ref["cmc"][0], abs=1e-6)
        assert got["rank10"] == pytest.approx(ref["cmc"][9], abs=1e-6)
        assert got["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)
        assert got["mINP"] == pytest.approx(ref["mINP"], abs=1e-6)
    rank1 = [ref["cmc"][0] for ref in reference]
    assert result["rank1"] == pytest.approx(np.mean(rank1), abs=1e-6)
    assert result["rank1_std"] == pytest.approx(np.std(rank1, ddof=1), abs=1e-6)
    assert (result["mode"], result["shots"], result["sampling"]) == (mode, shots, "official")


def test_settings_share_one_distance_computation_and_agree_with_single_calls():
    features, perm = make_features(1), make_perm(1)
    settings = [("all", 1), ("indoor", 10)]
    together = evaluate_sysu_settings(features, settings, trials=4, perm=perm)
    for (mode, shots), result in zip(settings, together):
        alone = evaluate_sysu(features, perm=perm, mode=mode, shots=shots, trials=4)
        for key in ("rank1", "rank20", "mAP", "mINP"):
            assert result[key] == pytest.approx(alone[key], abs=1e-9)


def test_mat_file_written_with_scipy_is_read_and_used(tmp_path):
    features, perm = make_features(2), make_perm(2)
    # The official structure: 'rand_perm_cam' 6x1 cell; camera c's cell is a cell over ids (index id-1)
    # of (10, n) arrays of 1-based numbers; ids without images get empty arrays.
    cells = np.empty((6, 1), dtype=object)
    for cam in range(1, 7):
        inner = np.empty((9, 1), dtype=object)
        for pid in range(1, 10):
            cell = perm.get((cam, pid))
            inner[pid - 1, 0] = cell.astype(np.float64) if cell is not None and cell.size else np.zeros((0, 0))
        cells[cam - 1, 0] = inner
    root = tmp_path / "SYSU-MM01"
    (root / "exp").mkdir(parents=True)
    mat = root / "exp" / "rand_perm_cam.mat"
    scipy.io.savemat(str(mat), {"rand_perm_cam": cells})
    from_dict = evaluate_sysu(features, perm=perm, trials=10)
    from_file = evaluate_sysu(features, perm=str(mat), trials=10)
    from_root = evaluate_sysu(features, perm=str(root), trials=10)
    for key in ("rank1", "rank10", "mAP", "mINP"):
        assert from_file[key] == pytest.approx(from_dict[key], abs=1e-12)
        assert from_root[key] == pytest.approx(from_dict[key], abs=1e-12)
    assert [t["gallery_size"] for t in from_file["per_trial"]] == [9] * 10


def test_missing_mat_file_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetError, match="evaluation/data_split"):
        evaluate_sysu(make_features(), perm=str(tmp_path / "rand_perm_cam.mat"))
    with pytest.raises(ConfigError, match="rand_perm_cam"):
        evaluate_sysu(make_features(), perm=None)
    with pytest.raises(ConfigError, match="--trials"):
        evaluate_sysu(make_features(), perm=make_perm(trials=10), trials=11)


def test_camera_rule_on_a_sysu_gallery():
    # Query feature equals id 1's cam-2 image; id 2's cam-1 image is next closest, id 1's cam-1 far away.
    e = np.eye(4)
    gallery = FeatureSet([e[0], e[0]], [1, 1], [3, 6], ["cam3/0001/0001.jpg", "cam6/0001/0001.jpg"],
                         [e[0], e[0] + 0.2 * e[1], e[2]], [1, 2, 1], [2, 1, 1],
                         ["cam2/0001/0001.jpg", "cam1/0002/0001.jpg", "cam1/0001/0001.jpg"])
    perm = {(2, 1): np.ones((10, 1), int), (1, 2): np.ones((10, 1), int), (1, 1): np.ones((10, 1), int)}
    result = evaluate_sysu(gallery, perm=perm, trials=1)
    # cam-3 query: cam-2 image dropped -> ids 2, 1 -> miss at rank 1, AP 1/2
    # cam-6 query: the cam-2 image of id 1 first -> hit at rank 1; ids 1,2,1 -> AP (1 + 2/3)/2
    assert result["rank1"] == pytest.approx(50)
    assert result["mAP"] == pytest.approx(100 * (0.5 + 5 / 6) / 2)


def test_agw_sampling_mirrors_random_seed_over_sorted_folders(tmp_path):
    # A folder tree like SYSU's; AGW lists cam{c}/{id:04d} with os.listdir and sorts.
    for (cam, pid), n in COUNTS.items():
        folder = tmp_path / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True)
        for number in range(1, n + 1):
            (folder / f"{number:04d}.jpg").write_bytes(b"")
    features = make_features(3)
    galleries = sysu_trial_galleries(features, mode="all", shots=1, trials=5, sampling="seed")
    for trial, rows in enumerate(galleries):
        random.seed(trial)
        chosen = []
        for pid in sorted(["%04d" % x for x in (7, 1, 5)]):
            for cam in ["cam1", "cam2", "cam4", "cam5"]:
                img_dir = os.path.join(str(tmp_path), cam, pid)
                if os.path.isdir(img_dir):
                    files = sorted([img_dir + "/" + name for name in os.listdir(img_dir)])
                    chosen.append(random.choice(files))
        expected = {os.path.relpath(p, tmp_path).replace(os.sep, "/") for p in chosen}
        assert {features.gallery_paths[i] for i in rows} == expected
    again = sysu_trial_galleries(features, mode="all", shots=1, trials=5, sampling="seed")
    assert all(np.array_equal(a, b) for a, b in zip(galleries, again))
    assert len({tuple(rows) for rows in galleries}) > 1


def test_agw_protocol_is_single_shot_and_reports_minp():
    features = make_features(4)
    with pytest.raises(ConfigError, match="single-shot"):
        evaluate_sysu(features, sampling="seed", shots=10)
    result = evaluate_sysu(features, sampling="seed", trials=3)
    keys = [agw_gallery_keys({(c, p): [f"cam{c}/{p:04d}/{n:04d}" for n in range(1, k + 1)]
                              for (c, p), k in COUNTS.items()}, [1, 5, 7], (1, 2, 4, 5), t) for t in range(3)]
    reference = reference_result(features, keys)
    assert result["mINP"] == pytest.approx(np.mean([r["mINP"] for r in reference]), abs=1e-6)
    assert result["sampling"] == "seed"


def test_rerank_option_changes_the_distances_but_keeps_the_schema():
    features, perm = make_features(5), make_perm(5)
    plain = evaluate_sysu(features, perm=perm, trials=2)
    reranked = evaluate_sysu(features, perm=perm, trials=2, rerank=True, rerank_params={"k1": 4, "k2": 2})
    assert reranked["rerank"] is True and plain["rerank"] is False
    assert set(plain) == set(reranked)
    assert 0 <= reranked["mAP"] <= 100


def test_table_shows_mean_and_std():
    result, = get_dataset("sysu").get_protocol().label([evaluate_sysu(make_features(), perm=make_perm(), trials=3)])
    assert (result["dataset"], result["setting"]) == ("sysu", "SYSU all-search single-shot")
    table = format_table([result])
    assert "SYSU all-search single-shot" in table
    assert f"{result['rank1']:.2f} ± {result['rank1_std']:.2f}" in table


def test_permutation_file_missing_test_ids_is_refused(tmp_path):
    """Issue 14: a rand_perm_cam.mat covering only some test ids inflated the scores with exit 0."""
    from click.testing import CliRunner

    from mpanet_tf.cli.main import cli
    from mpanet_tf.data.sysu import write_rand_perm_cam
    from mpanet_tf.errors import DatasetError
    from mpanet_tf.eval.features import save_features

    features = make_features()
    partial = {key: cell for key, cell in make_perm().items() if key[1] != 5}   # id 5 left out entirely
    with pytest.raises(DatasetError, match="no cell for 1 of the 3 test ids"):
        evaluate_sysu(features, perm=partial, mode="all", shots=1, trials=10)
    # the same through the command line: one line, exit 2
    save_features(tmp_path / "f.npz", features)
    write_rand_perm_cam(tmp_path / "perm.mat", partial, num_ids=9)
    result = CliRunner().invoke(cli, ["eval", "--dataset", "sysu", "--features", str(tmp_path / "f.npz"),
                                      "--rand-perm", str(tmp_path / "perm.mat")])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ids 5" in lines[0], result.stderr


def test_permutation_file_missing_one_camera_cell_warns_once_per_setting():
    perm = make_perm()                        # (2, 7) has no cell, id 7 is covered by cams 4 and 5
    with pytest.warns(UserWarning, match="no cell for 2 .camera, id. folders"):
        evaluate_sysu(make_features(), perm=perm, mode="all", shots=1, trials=2)
