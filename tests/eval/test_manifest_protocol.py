"""Manifest protocol against an independent per-query numpy computation from the manifest's rows."""

from __future__ import annotations

import csv
import random
import zlib

import numpy as np
import pytest

from mpanet_tf.data.manifest import ManifestDataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet, feature_set_from_records, load_features, save_features
from mpanet_tf.eval.manifest_protocol import ManifestProtocolOptions, evaluate_manifest

DIM = 10


def build_manifest(root):
    """Persons p1..p6 with uneven cameras (two film both modalities); queries of both modalities."""
    rng = np.random.default_rng(0)
    rows = []
    for person in ("p1", "p2", "p3", "p4", "p5", "p6"):
        for camera in ("north", "south", "hall"):
            for modality in ("visible", "infrared"):
                if camera == "hall" and modality == "infrared":
                    continue
                for number in range(int(rng.integers(0, 5))):
                    split = "query" if (modality == "infrared") != (person == "p6") and number == 0 else "gallery"
                    rows.append([f"{modality}/{person}/{camera}_{number}.jpg", person, camera, modality, split])
    rows.append(["visible/p9/north_0.jpg", "p9", "north", "visible", "gallery"])      # a distractor
    queried = {r[1] for r in rows if r[4] == "query"}
    rows = [r for r in rows if r[4] == "gallery" or r[1] in {g[1] for g in rows if g[4] == "gallery"}]
    assert len(queried) >= 4
    for row in rows:
        (root / row[0]).parent.mkdir(parents=True, exist_ok=True)
        (root / row[0]).write_bytes(b"img")
    with open(root / "data.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path", "person", "camera", "modality", "split"]] + rows)
    return root / "data.csv", rows


def feature_of(path: str, person: str) -> np.ndarray:
    centre = np.random.default_rng(zlib.crc32(person.encode())).normal(size=DIM)
    return centre + 1.4 * np.random.default_rng(zlib.crc32(path.encode())).normal(size=DIM)


def reference(rows, cross_modality=True, single_shot=False, trials=10):
    """Mean (R1, R5, mAP, mINP) over the evaluations, from the CSV rows and the documented rules."""
    def natural(name):
        return (0, int(name), name) if name.isdigit() else (1, 0, name)

    person_no = {p: i + 1 for i, p in enumerate(sorted({r[1] for r in rows}, key=natural))}
    camera_no = {c: i + 1 for i, c in enumerate(sorted({r[2] for r in rows}, key=natural))}
    query = [r for r in rows if r[4] == "query"]
    pool = [r for r in rows if r[4] == "gallery"]
    draws = [pool]
    if single_shot:
        cells = {}
        for r in pool:
            cells.setdefault((person_no[r[1]], camera_no[r[2]], r[3] == "infrared"), []).append(r)
        draws = []
        for trial in range(trials):
            random.seed(trial)
            draws.append([random.choice(sorted(cells[key], key=lambda r: r[0])) for key in sorted(cells)])
    scores = []
    for gallery in draws:
        g = np.array([feature_of(r[0], r[1]) for r in gallery])
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        r1 = r5 = ap = inp = 0.0
        valid = 0
        for q_row in query:
            q = feature_of(q_row[0], q_row[1])
            q /= np.linalg.norm(q)
            ranked = [gallery[i] for i in np.argsort(-(g @ q))
                      if not (gallery[i][1] == q_row[1] and gallery[i][2] == q_row[2])
                      and not (cross_modality and gallery[i][3] == q_row[3])]
            hits = [k for k, r in enumerate(ranked) if r[1] == q_row[1]]
            if not hits:
                continue
            valid += 1
            ap += np.mean([(n + 1) / (k + 1) for n, k in enumerate(hits)])
            inp += len(hits) / (hits[-1] + 1)
            unique = list(dict.fromkeys(r[1] for r in ranked))
            r1 += unique.index(q_row[1]) < 1
            r5 += unique.index(q_row[1]) < 5
        scores.append([100 * r1 / valid, 100 * r5 / valid, 100 * ap / valid, 100 * inp / valid])
    return np.mean(scores, axis=0)


def manifest_features(manifest):
    data = ManifestDataset(manifest)
    query, gallery = data.query_records(), data.gallery_records()
    return feature_set_from_records(
        query, np.array([feature_of(r.relpath, data.person_name(r.person_id)) for r in query]),
        gallery, np.array([feature_of(r.relpath, data.person_name(r.person_id)) for r in gallery]))


@pytest.mark.parametrize("cross_modality", [True, False])
@pytest.mark.parametrize("sampling", ["all", "single-shot"])
def test_matches_the_independent_computation(tmp_path, cross_modality, sampling):
    manifest, rows = build_manifest(tmp_path)
    features = manifest_features(manifest)
    save_features(tmp_path / "f.npz", features)
    features = load_features(tmp_path / "f.npz")                 # the modality flags survive the file
    options = ManifestProtocolOptions(cross_modality=cross_modality, gallery_sampling=sampling)
    result = evaluate_manifest(features, options)
    expected = reference(rows, cross_modality, sampling == "single-shot")
    got = (result["rank1"], result["rank5"], result["mAP"], result["mINP"])
    assert got == pytest.approx(tuple(expected), abs=1e-6)
    assert result["trials"] == (10 if sampling == "single-shot" else 1)
    assert result["sampling"] == sampling
    assert result["cross_modality"] is cross_modality


def test_cross_modality_changes_the_result(tmp_path):
    manifest, _ = build_manifest(tmp_path)
    features = manifest_features(manifest)
    cross = evaluate_manifest(features)
    both = evaluate_manifest(features, ManifestProtocolOptions(cross_modality=False))
    assert (cross["mAP"], cross["per_trial"][0]["valid_queries"]) != (both["mAP"], both["per_trial"][0]["valid_queries"])


def test_features_without_modality_and_bad_options_are_refused(tmp_path):
    manifest, _ = build_manifest(tmp_path)
    f = manifest_features(manifest)
    bare = FeatureSet(f.query_features, f.query_ids, f.query_cams, f.query_paths,
                      f.gallery_features, f.gallery_ids, f.gallery_cams, f.gallery_paths)
    with pytest.raises(DatasetError, match="modality"):
        evaluate_manifest(bare)
    with pytest.raises(ConfigError, match="'all' or 'single-shot'"):
        ManifestProtocolOptions(gallery_sampling="multi")
    with pytest.raises(ConfigError, match="trials"):
        ManifestProtocolOptions(trials=0)
