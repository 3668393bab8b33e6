"""Speed of the official SYSU-MM01 protocol once features exist (design.md §5.1).

Synthetic features of the real sizes: 3,803 infrared queries, 14,336-d (7 x 2048, design.md §1.3),
a visible gallery pool of 96 ids x 4 cameras x ~20 images, and a random ``rand_perm_cam``. Times
``mpanet_tf.eval.sysu_protocol.evaluate_sysu`` (all-search, single-shot, 10 trials) against a
plain per-query implementation kept here as the baseline, written the way the authors'
utils/eval_sysu.py is (per trial: gallery names, ``np.in1d``, distance matrix, argsort, then a
Python loop over queries with list comprehensions). Checks the two agree to 1e-6 (in float64,
where rounding cannot reorder near-ties) and prints the timings and their ratio.

    .venv/bin/python benchmarks/eval_speed.py [--trials 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.metrics import normalized_squared_distance
from mpanet_tf.eval.sysu_protocol import evaluate_sysu, sysu_trial_galleries

NUM_QUERIES = 3803
FEATURE_DIM = 14336
NUM_IDS = 96
GALLERY_CAMERAS = (1, 2, 4, 5)
#: Per-dimension noise around each identity centre; chosen so that rank-1 lands near the paper's ~70%.
NOISE = 7.0


def synthetic(seed: int = 0, noise: float = NOISE, num_queries: int = NUM_QUERIES):
    """FeatureSet of the real SYSU test sizes and a random permutation mapping."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(np.arange(1, 534), NUM_IDS, replace=False))
    centres = rng.standard_normal((NUM_IDS, FEATURE_DIM), dtype=np.float32)
    # About 301 of the 384 (camera, id) cells hold images, as in the real test split (301 single-shot
    # gallery images); the others are absent.
    cells = [(cam, int(pid)) for cam in GALLERY_CAMERAS for pid in ids]
    absent = set(map(tuple, np.array(cells)[rng.choice(len(cells), len(cells) - 301, replace=False)].tolist()))
    g_ids, g_cams, g_paths, counts = [], [], [], {}
    for cam in GALLERY_CAMERAS:
        for pid in ids:
            if (cam, int(pid)) in absent:
                continue
            n = int(rng.integers(10, 35))
            counts[(cam, int(pid))] = n
            for number in range(1, n + 1):
                g_ids.append(int(pid))
                g_cams.append(cam)
                g_paths.append(f"cam{cam}/{pid:04d}/{number:04d}.jpg")
    q_index = rng.integers(0, NUM_IDS, num_queries)
    q_cams = rng.choice([3, 6], num_queries)
    q_paths = [f"cam{c}/{ids[i]:04d}/{n:04d}.jpg" for n, (i, c) in enumerate(zip(q_index, q_cams), start=1)]
    g_index = np.searchsorted(ids, g_ids)

    def noisy(index):
        out = rng.standard_normal((len(index), FEATURE_DIM), dtype=np.float32)
        out *= noise
        out += centres[index]
        return out

    features = FeatureSet(noisy(q_index), ids[q_index], q_cams, q_paths,
                          noisy(g_index), g_ids, g_cams, g_paths)
    perm = {key: np.stack([rng.permutation(n) + 1 for _ in range(10)]) for key, n in counts.items()}
    return features, perm


# ----------------------------------------------------------------------------- the baseline
def baseline_eval_sysu(features: FeatureSet, perm, mode="all", num_shots=1, num_trials=10, dtype=np.float32):
    """Per-query loops in the style of the authors' eval_sysu.py (no crash fix needed here)."""
    gallery_cams = [1, 2] if mode == "indoor" else [1, 2, 4, 5]
    query_cam_ids = features.query_cams.copy()
    query_cam_ids[query_cam_ids == 3] = 2
    query_feats = features.query_features.astype(dtype)
    query_feats = query_feats / np.linalg.norm(query_feats, axis=1, keepdims=True)
    keep = np.isin(features.gallery_cams, gallery_cams)
    gallery_feats = features.gallery_features[keep].astype(dtype)
    gallery_feats = gallery_feats / np.linalg.norm(gallery_feats, axis=1, keepdims=True)
    gallery_ids = features.gallery_ids[keep]
    gallery_cam_ids = features.gallery_cams[keep]
    gallery_names = np.array([os.path.splitext(p)[0] for p in features.gallery_paths[keep]])
    gallery_id_set = np.unique(gallery_ids)

    def get_gallery_names(trial_id):
        names = []
        for cam in gallery_cams:
            for i in gallery_id_set:
                if (cam, int(i)) not in perm:    # empty cell: skipped, as the official port does
                    continue
                instance_id = perm[(cam, int(i))][trial_id][:num_shots]
                names.extend([f"cam{cam}/{i:04d}/{ins:04d}" for ins in instance_id.tolist()])
        return names

    def get_unique(array):
        _, idx = np.unique(array, return_index=True)
        return array[np.sort(idx)]

    def get_cmc(sorted_indices, g_ids, g_cams):
        match_counter = np.zeros(len(get_unique(g_ids)))
        result = g_ids[sorted_indices]
        cam_locations_result = g_cams[sorted_indices]
        valid = 0
        for probe_index in range(sorted_indices.shape[0]):
            result_i = result[probe_index, :].copy()
            result_i[cam_locations_result[probe_index, :] == query_cam_ids[probe_index]] = -1
            result_i = np.array([i for i in result_i if i != -1])
            result_i_unique = get_unique(result_i)
            match_i = np.equal(result_i_unique, features.query_ids[probe_index])
            if np.sum(match_i) != 0:
                valid += 1
                match_counter[:len(match_i)] += match_i
        return np.cumsum(match_counter / valid)

    def get_map_minp(sorted_indices, g_ids, g_cams):
        result = g_ids[sorted_indices]
        cam_locations_result = g_cams[sorted_indices]
        valid, ap_sum, inp_sum = 0, 0.0, 0.0
        for probe_index in range(sorted_indices.shape[0]):
            result_i = result[probe_index, :].copy()
            result_i[cam_locations_result[probe_index, :] == query_cam_ids[probe_index]] = -1
            result_i = np.array([i for i in result_i if i != -1])
            match_i = np.equal(result_i, features.query_ids[probe_index])
            true_match_count = np.sum(match_i)
            if true_match_count != 0:
                valid += 1
                true_match_rank = np.where(match_i)[0]
                ap_sum += np.mean(np.arange(1, true_match_count + 1) / (true_match_rank + 1))
                inp_sum += true_match_count / (true_match_rank[-1] + 1)
        return ap_sum / valid, inp_sum / valid

    per_trial = []
    for t in range(num_trials):
        flag = np.isin(gallery_names, get_gallery_names(t))
        g_feat, g_ids, g_cams = gallery_feats[flag], gallery_ids[flag], gallery_cam_ids[flag]
        dist = (query_feats ** 2).sum(1)[:, None] + (g_feat ** 2).sum(1)[None, :] - 2 * query_feats @ g_feat.T
        sorted_indices = np.argsort(dist, axis=1, kind="stable")
        cmc = get_cmc(sorted_indices, g_ids, g_cams)
        mean_ap, minp = get_map_minp(sorted_indices, g_ids, g_cams)
        per_trial.append({"rank1": 100 * cmc[0], "rank5": 100 * cmc[4], "rank10": 100 * cmc[9],
                          "rank20": 100 * cmc[19], "mAP": 100 * mean_ap, "mINP": 100 * minp})
    return {key: float(np.mean([p[key] for p in per_trial])) for key in per_trial[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our protocol (median reported)")
    args = parser.parse_args()

    start = time.perf_counter()
    features, perm = synthetic()
    print(f"synthetic features: {len(features.query_ids)} queries, gallery pool {len(features.gallery_ids)}, "
          f"{features.query_features.shape[1]}-d, built in {time.perf_counter() - start:.1f} s")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}")

    ours_times, ours_cpu = [], []
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        ours = evaluate_sysu(features, perm=perm, mode="all", shots=1, trials=args.trials)
        ours_times.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    base = baseline_eval_sysu(features, perm, num_trials=args.trials)
    base_time, base_cpu = time.perf_counter() - start, time.process_time() - cpu
    ours_time = float(np.median(ours_times))

    galleries = sysu_trial_galleries(features, "all", 1, args.trials, "official", perm)
    union = np.unique(np.concatenate(galleries))
    start, cpu = time.perf_counter(), time.process_time()
    normalized_squared_distance(features.query_features, features.gallery_features[union])
    product_time, product_cpu = time.perf_counter() - start, time.process_time() - cpu

    ours64 = evaluate_sysu(features, perm=perm, mode="all", shots=1, trials=args.trials, compute_dtype=np.float64)
    base64 = baseline_eval_sysu(features, perm, num_trials=args.trials, dtype=np.float64)
    keys = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
    diff64 = max(abs(ours64[k] - base64[k]) for k in keys)
    diff32 = max(abs(ours[k] - base[k]) for k in keys)

    print(f"ours (float32), all-search single-shot, {args.trials} trials: {ours_time:.2f} s wall median "
          f"(runs: {', '.join(f'{t:.2f}' for t in ours_times)}; CPU s: {', '.join(f'{t:.2f}' for t in ours_cpu)})")
    print(f"  of which the one ({NUM_QUERIES} x {len(union)}) x 14336 float32 distance product: {product_time:.2f} s wall, "
          f"{product_cpu:.2f} CPU s ({2 * NUM_QUERIES * len(union) * 14336 / product_cpu / 1e9:.0f} GFLOP per CPU s)")
    print(f"baseline per-query loops (float32): {base_time:.2f} s wall, {base_cpu:.2f} CPU s")
    print(f"speed-up (wall, median run): {base_time / ours_time:.1f}x; best run {base_time / min(ours_times):.1f}x")
    print(f"load average after the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (shared machine)")
    print("metrics (ours float32): " + ", ".join(f"{k} {ours[k]:.4f}" for k in keys))
    print(f"max |ours - baseline| over metrics: float64 {diff64:.2e} (must be <= 1e-6), float32 {diff32:.2e}")
    if diff64 > 1e-6:
        raise SystemExit("FAIL: our protocol and the baseline disagree")
    print("agreement: OK")


if __name__ == "__main__":
    main()
