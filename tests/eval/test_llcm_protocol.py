"""LLCM protocol against an independent, loop-by-loop implementation of the reference rules.

The reference below is written from design.md §12 alone (DEEN's ``process_query_llcm`` /
``process_gallery_llcm`` walk of the folders with ``os.listdir``, ``random.seed(trial)`` and
``random.choice``, then per-query loops); it shares no code with the library.
"""

from __future__ import annotations

import os
import random
import zlib

import numpy as np
import pytest

from mpanet_tf.data.llcm import LLCMDataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import feature_set_from_records
from mpanet_tf.eval.llcm_protocol import (
    LLCMProtocolOptions, evaluate_llcm, evaluate_llcm_settings, llcm_trial_galleries,
)
from tests.data.llcm_tree import build_llcm_tree

DIM = 12
VIS = ["test_vis/cam%d" % c for c in range(1, 10)]
NIR = ["test_nir/cam%d" % c for c in (1, 2, 4, 5, 6, 7, 8, 9)]


def feature_of(relpath: str, pid: int) -> np.ndarray:
    """A feature computed from the path alone: an identity centre plus path-seeded noise, unnormalised."""
    centre = np.random.default_rng(pid).normal(size=DIM)
    noise = np.random.default_rng(zlib.crc32(relpath.encode())).normal(size=DIM)
    return (centre + 1.3 * noise) * (1 + zlib.crc32(relpath.encode()) % 5)


def reference_llcm(root, mode: str, trials: int = 10):
    """Mean R1, mAP, mINP (percent) over the trials, straight from docs/design.md."""
    line = open(os.path.join(root, "idx", "test_id.txt")).read().splitlines()[0]
    ids = ["%04d" % int(x) for x in line.split(",")]
    query_cams, gallery_cams = (NIR, VIS) if mode == "i2v" else (VIS, NIR)

    def parse(path):            # "<root>/test_xxx/camC/PPPP/name"
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        parts = rel.split("/")
        return rel, int(parts[2]), int(parts[1][3:])

    query_files = []
    for pid in sorted(ids):
        for cam in query_cams:
            img_dir = os.path.join(root, cam, pid)
            if os.path.isdir(img_dir):
                query_files.extend(sorted(img_dir + "/" + name for name in os.listdir(img_dir)))
    scores = []
    for trial in range(trials):
        random.seed(trial)
        gallery_files = []
        for pid in sorted(ids):
            for cam in gallery_cams:
                img_dir = os.path.join(root, cam, pid)
                if os.path.isdir(img_dir):
                    gallery_files.append(random.choice(sorted(img_dir + "/" + name for name in os.listdir(img_dir))))
        gallery = [parse(p) for p in gallery_files]
        g_feat = np.array([feature_of(rel, pid) for rel, pid, _ in gallery])
        g_feat /= np.linalg.norm(g_feat, axis=1, keepdims=True)
        r1 = ap_sum = inp_sum = 0.0
        valid = 0
        for path in query_files:
            rel, q_pid, q_cam = parse(path)
            q = feature_of(rel, q_pid)
            q = q / np.linalg.norm(q)
            order = np.argsort(-(g_feat @ q))
            ranked = [gallery[i] for i in order if not (gallery[i][1] == q_pid and gallery[i][2] == q_cam)]
            hits = [k for k, (_, pid, _) in enumerate(ranked) if pid == q_pid]
            if not hits:
                continue
            valid += 1
            ap_sum += np.mean([(n + 1) / (k + 1) for n, k in enumerate(hits)])
            inp_sum += len(hits) / (hits[-1] + 1)
            unique = []
            for _, pid, _ in ranked:
                if pid not in unique:
                    unique.append(pid)
            r1 += unique[0] == q_pid
        scores.append((100 * r1 / valid, 100 * ap_sum / valid, 100 * inp_sum / valid))
    return np.mean(scores, axis=0)


def llcm_features(root):
    data = LLCMDataset(root)
    query, gallery = data.test_infrared(), data.test_visible()
    return feature_set_from_records(
        query, np.array([feature_of(r.relpath, r.person_id) for r in query]),
        gallery, np.array([feature_of(r.relpath, r.person_id) for r in gallery]))


@pytest.mark.parametrize("mode", ["i2v", "v2i"])
def test_matches_the_independent_reference_on_a_hand_built_tree(tmp_path, mode):
    root = build_llcm_tree(tmp_path / "LLCM")
    features = llcm_features(root)
    result = evaluate_llcm(features, LLCMProtocolOptions(mode=mode))
    r1, mean_ap, minp = reference_llcm(str(root), mode)
    assert (result["rank1"], result["mAP"], result["mINP"]) == pytest.approx((r1, mean_ap, minp), abs=1e-6)
    assert result["trials"] == 10 and result["mode"] == mode
    assert len({tuple(t[k] for k in ("rank1", "mAP")) for t in result["per_trial"]}) > 1  # draws differ
    assert result["rank1"] < 100           # a non-trivial ranking


def test_the_saved_orientation_does_not_matter_and_both_settings_come_out(tmp_path):
    features = llcm_features(build_llcm_tree(tmp_path / "LLCM"))
    both = evaluate_llcm_settings(features, trials=3)
    assert [r["mode"] for r in both] == ["i2v", "v2i"]
    swapped = evaluate_llcm(features.swapped(), LLCMProtocolOptions("v2i", 3))
    assert swapped["mAP"] == pytest.approx(both[1]["mAP"]) and swapped["mINP"] == pytest.approx(both[1]["mINP"])


def test_gallery_draw_is_one_file_per_existing_folder(tmp_path):
    root = build_llcm_tree(tmp_path / "LLCM")
    features = llcm_features(root)
    galleries = llcm_trial_galleries(features, trials=4)
    folders = {p.rsplit("/", 1)[0] for p in features.gallery_paths.tolist()}
    for rows in galleries:
        assert sorted(p.rsplit("/", 1)[0] for p in features.gallery_paths[rows].tolist()) == sorted(folders)


def test_same_id_same_camera_entries_are_removed(tmp_path):
    # Id 1: infrared query in cam2, visible cam2 (removed) and cam5 images; id 2 in visible cam1.
    cells = {1: {"test_vis": {2: 1, 5: 1}, "test_nir": {2: 1}}, 2: {"test_vis": {1: 1}, "test_nir": {1: 1}}}
    root = build_llcm_tree(tmp_path / "LLCM", cells=cells)
    data = LLCMDataset(root)
    query, gallery = data.test_infrared(), data.test_visible()
    q_rel = {r.person_id: r.relpath for r in query}
    # Query of id 1 is identical to its own-camera gallery image, far from its cam5 image and
    # closer to id 2's image: with removal the first kept image is id 2's, so R1 misses.
    vectors = {("vis", 1, 2): [1, 0, 0], ("vis", 1, 5): [0, 0, 1], ("vis", 2, 1): [0.9, 0.1, 0],
               ("nir", 1, 2): [1, 0, 0], ("nir", 2, 1): [0, 1, 0]}
    def feature(r):
        return vectors[("nir" if r.infrared else "vis", r.person_id, r.camera)]
    features = feature_set_from_records(query, np.array([feature(r) for r in query], float),
                                        gallery, np.array([feature(r) for r in gallery], float))
    assert q_rel[1].startswith("test_nir/cam2/")
    result = evaluate_llcm(features, LLCMProtocolOptions("i2v", 1))
    per = result["per_trial"][0]
    # id-1 query: kept list [id2 (0.9,0.1,0), id1 cam5] -> miss at R1, AP 1/2, INP 1/2.
    # id-2 query (0,1,0): gallery id2 cam1 is the same camera -> removed; no match -> skipped.
    assert per["valid_queries"] == 1
    assert (per["rank1"], per["mAP"], per["mINP"]) == pytest.approx((0.0, 50.0, 50.0))


def test_options_and_foreign_features_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'i2v'"):
        LLCMProtocolOptions(mode="all")
    with pytest.raises(ConfigError, match="trials"):
        LLCMProtocolOptions(trials=0)
    features = llcm_features(build_llcm_tree(tmp_path / "LLCM"))
    features.gallery_paths[0] = "cam1/0001/0001.jpg"
    with pytest.raises(DatasetError, match="not an LLCM test image"):
        evaluate_llcm(features)
