"""Gallery-index scale: build time, size on disk, exact and ANN query latency, ANN recall@10.

Synthetic embeddings stand in for a gallery (MPANet embeddings cost ~0.1 s per image to compute on
this CPU, measured in the inference sections; this benchmark measures the index, not the model):
``ids`` identity centres ~ N(0, I) and rows = centre[id] + ``sigma`` * N(0, I), generated block by
block from fixed seeds (never the whole gallery in memory), written with
:func:`mpanet_tf.index.index_from_features` (normalise + append + fsync + commit, as ``index build``
does after embedding). Queries are fresh noisy draws of random centres.

Per case ``COUNT:DIM:DTYPE``:

- build: seconds to write the index; size: bytes on disk;
- exact: latency of one query (``exact_search`` over the memory-mapped rows, full top-10), median
  of ``--repeats``; and per query within one batch of ``--queries`` queries;
- ann: FAISS IVF-PQ (:mod:`mpanet_tf.index.ann`) preparation time (train + add), latency of one
  query (median), recall@10 against the exact top-10 over ``--queries`` queries (for each
  ``--refine``), and the identity precision@10 of the exact and the ANN results (share of the 10
  returned rows showing the query's identity: what a re-ID user sees);
- with ``--rank-metrics``: R1/mAP of the queries' identities over the gallery in float32 and in
  float16 storage (full exact ranking);
- with ``--milvus``: the same rows in Milvus Lite (:mod:`mpanet_tf.index.milvus_store`, the
  ``[milvus]`` extra), copied from the ``.mpidx`` as ``index migrate`` does: a FLAT collection
  (build rate in rows/s, exact latency of one query: Milvus candidates + exact float64 re-ranking,
  and whether its top-10 equals the ``.mpidx`` exact top-10 for every query) and an IVF_FLAT
  collection (``--milvus-nlist`` cells; ANN latency and recall@10 against the exact top-10 at the
  default nprobe = nlist/8 and at each ``--milvus-nprobe``).

Run: ``OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/gallery_scale.py --workdir /tmp/gs``
(the index folders are deleted afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

BLOCK = 1024


class SyntheticRows:
    """(count, dim) rows generated on demand, block by block, from fixed seeds (slices only)."""

    def __init__(self, count: int, dim: int, ids: int, sigma: float, seed: int = 0):
        self.shape, self.sigma, self.seed = (int(count), int(dim)), float(sigma), int(seed)
        rng = np.random.default_rng([seed, 0])
        self.centres = rng.standard_normal((ids, dim), dtype=np.float32)
        self.ids = rng.integers(0, ids, count)

    def __len__(self):
        return self.shape[0]

    def _block(self, number: int) -> np.ndarray:
        start, stop = number * BLOCK, min(self.shape[0], (number + 1) * BLOCK)
        noise = np.random.default_rng([self.seed, 1, number]).standard_normal((stop - start, self.shape[1]),
                                                                            dtype=np.float32)
        return self.centres[self.ids[start:stop]] + self.sigma * noise

    def __getitem__(self, item: slice) -> np.ndarray:
        start, stop, _ = item.indices(self.shape[0])
        blocks = [self._block(b) for b in range(start // BLOCK, (stop - 1) // BLOCK + 1)] if stop > start else []
        rows = np.concatenate(blocks) if blocks else np.zeros((0, self.shape[1]), np.float32)
        return rows[start - (start // BLOCK) * BLOCK:][:stop - start]

    def queries(self, count: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 2, seed])
        ids = rng.integers(0, len(self.centres), count)
        return self.centres[ids] + self.sigma * rng.standard_normal((count, self.shape[1]), dtype=np.float32), ids


def _median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rank_metrics(queries, query_ids, index, gallery_ids) -> tuple[float, float]:
    from mpanet_tf.eval.metrics import evaluate_ranking
    from mpanet_tf.index.exact import exact_search

    order, distances = exact_search(queries, index.embeddings())
    distmat = np.empty(order.shape)
    np.put_along_axis(distmat, order, distances, axis=1)
    metrics = evaluate_ranking(distmat, query_ids, np.zeros(len(query_ids)), gallery_ids, np.ones(len(gallery_ids)))
    return float(metrics.cmc[0]), float(metrics.mAP)


def _identity_precision(found, query_ids, gallery_ids) -> float:
    """Share of the returned rows (Q, 10) that show the query's identity."""
    return float(np.mean(gallery_ids[found] == np.asarray(query_ids)[:, None]))


def run_case(workdir: Path, count: int, dim: int, dtype: str, args) -> dict:
    from mpanet_tf.index import index_from_features
    from mpanet_tf.index.exact import exact_search

    ids = max(10, count // args.rows_per_identity)
    rows = SyntheticRows(count, dim, ids, args.sigma)
    entries = [{"path": f"synthetic/{i:07d}.jpg", "person_id": int(p)} for i, p in enumerate(rows.ids)]
    folder = workdir / f"g{count}_{dim}_{dtype}.mpidx"
    shutil.rmtree(folder, ignore_errors=True)
    result = {"count": count, "dim": dim, "dtype": dtype, "identities": ids}
    start = time.perf_counter()
    index = index_from_features(folder, rows, entries, "sha256:synthetic", dtype=dtype)
    result["build_s"] = time.perf_counter() - start
    result["size_bytes"] = index.size_on_disk()
    queries, query_ids = rows.queries(args.queries)
    mapped = index.embeddings()
    result["exact_1_query_s"] = _median_time(lambda: exact_search(queries[0], mapped, top_k=10), args.repeats)
    start = time.perf_counter()
    exact, _ = exact_search(queries, mapped, top_k=10)
    result["exact_batch_per_query_s"] = (time.perf_counter() - start) / len(queries)
    result["exact_identity_precision_at_10"] = _identity_precision(exact, query_ids, rows.ids)
    print(json.dumps(result), flush=True)
    if not args.no_ann:
        from mpanet_tf.index.ann import ann_search, prepare_ann

        start = time.perf_counter()
        prepared = prepare_ann(index)
        result["ann_prepare_s"] = time.perf_counter() - start
        result["ann_settings"] = {k: v for k, v in prepared[1].items() if k != "fingerprint"}
        result["ann_size_bytes"] = (folder / "ann.faiss").stat().st_size
        result["ann_1_query_s"] = _median_time(lambda: ann_search(index, queries[:1], 10, prepared=prepared),
                                               args.repeats)
        settings = [(None, int(r)) for r in args.refine.split(",")]
        settings += [(int(n), 4) for n in args.nprobe.split(",") if n]
        for nprobe, refine in settings:
            approx, _ = ann_search(index, queries, 10, prepared=prepared, refine=refine, nprobe=nprobe)
            suffix = ("" if refine == 4 else f"_refine{refine}") + (f"_nprobe{nprobe}" if nprobe else "")
            if nprobe:
                result[f"ann_1_query_s{suffix}"] = _median_time(
                    lambda: ann_search(index, queries[:1], 10, prepared=prepared, nprobe=nprobe), args.repeats)
            result[f"ann_recall_at_10{suffix}"] = float(np.mean([len(set(a) & set(e)) / 10
                                                                for a, e in zip(approx, exact)]))
            result[f"ann_identity_precision_at_10{suffix}"] = _identity_precision(approx, query_ids, rows.ids)
        print(json.dumps(result), flush=True)
    if args.milvus:
        result.update(run_milvus(workdir, index, queries, exact, args))
        print(json.dumps(result), flush=True)
    if args.rank_metrics:
        result["r1_map"] = {dtype: _rank_metrics(queries, query_ids, index, rows.ids)}
        other = "float16" if dtype == "float32" else "float32"
        twin = index_from_features(workdir / f"twin_{other}.mpidx", rows, entries, "sha256:synthetic", dtype=other)
        result["r1_map"][other] = _rank_metrics(queries, query_ids, twin, rows.ids)
        shutil.rmtree(twin.path, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def _copy_to_milvus(location: str, index, params: dict):
    """A Milvus Lite collection holding ``index``'s rows and entries; (store, seconds)."""
    from mpanet_tf.index.milvus_store import MilvusStore
    from mpanet_tf.index.mpidx_store import MpidxStore

    source = MpidxStore(index.path)
    start = time.perf_counter()
    store = MilvusStore.create(location, index.fingerprint, index.dim, index.dtype, index=params)
    entries, step = source.entries(), 4096
    for low in range(0, index.count, step):
        store.add(source.rows(low, low + step), entries[low:low + step])
    return store, time.perf_counter() - start


def run_milvus(workdir: Path, index, queries, exact, args) -> dict:
    """The Milvus Lite rows of one case (module docstring)."""
    from mpanet_tf.index.milvus_store import index_parameters

    result = {}
    flat_db = workdir / f"milvus_flat_{index.count}.db"
    shutil.rmtree(flat_db, ignore_errors=True)
    store, seconds = _copy_to_milvus(f"milvus:{flat_db}", index, index_parameters("FLAT"))
    with store:
        result["milvus_flat_build_rows_per_s"] = index.count / seconds
        start = time.perf_counter()
        store.search(queries[:1], 10)  # the first search after inserting loads the segments
        result["milvus_first_query_s"] = time.perf_counter() - start
        result["milvus_exact_1_query_s"] = _median_time(lambda: store.search(queries[:1], 10), args.repeats)
        found = store.search(queries, 10)
        result["milvus_exact_equals_mpidx_top10"] = all(
            [h.entry_id for h in row] == list(want) for row, want in zip(found, exact))
    shutil.rmtree(flat_db, ignore_errors=True)
    ivf_db = workdir / f"milvus_ivf_{index.count}.db"
    shutil.rmtree(ivf_db, ignore_errors=True)
    nlist = args.milvus_nlist or max(1, int(4 * np.sqrt(index.count)))
    store, seconds = _copy_to_milvus(f"milvus:{ivf_db}", index, index_parameters("IVF_FLAT", nlist=nlist))
    with store:
        result["milvus_ivf_nlist"] = nlist
        result["milvus_ivf_build_rows_per_s"] = index.count / seconds
        store.search(queries[:1], 10, ann=True)  # loads the segments, builds the IVF
        for nprobe in [None] + [int(n) for n in args.milvus_nprobe.split(",") if n]:
            suffix = f"_nprobe{nprobe}" if nprobe else ""
            result[f"milvus_ann_1_query_s{suffix}"] = _median_time(
                lambda: store.search(queries[:1], 10, ann=True, nprobe=nprobe), args.repeats)
            found = store.search(queries, 10, ann=True, nprobe=nprobe)
            result[f"milvus_ann_recall_at_10{suffix}"] = float(np.mean(
                [len({h.entry_id for h in row} & set(want.tolist())) / 10 for row, want in zip(found, exact)]))
    shutil.rmtree(ivf_db, ignore_errors=True)
    return result


def machine() -> str:
    try:
        model = [line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")][0]
    except (OSError, IndexError):
        model = platform.processor()
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[:3]
    return f"{model}; load average {' '.join(load)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="Folder for the index files (deleted after).")
    parser.add_argument("--cases", default="10000:14336:float32,100000:14336:float32,1000000:128:float16",
                        help="COUNT:DIM:DTYPE,... ")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sigma", type=float, default=1.0, help="Noise scale around the identity centres.")
    parser.add_argument("--rows-per-identity", type=int, default=20,
                        help="Gallery rows per identity (default 20, as a camera network's gallery).")
    parser.add_argument("--nprobe", default="",
                        help="Also measure the ANN at these nprobe values (comma-separated; refine 4), "
                             "besides the index's default")
    parser.add_argument("--refine", default="4",
                        help="ANN candidates per wanted match before the exact re-ranking, comma-separated "
                             "(default 4, the search default; recall is reported for each)")
    parser.add_argument("--no-ann", action="store_true")
    parser.add_argument("--rank-metrics", action="store_true", help="Also R1/mAP in float32 vs float16.")
    parser.add_argument("--milvus", action="store_true",
                        help="Also the Milvus Lite rows (FLAT exact, IVF_FLAT ANN); needs the [milvus] extra.")
    parser.add_argument("--milvus-nlist", type=int, default=None, help="IVF_FLAT cells [4 sqrt(count)].")
    parser.add_argument("--milvus-nprobe", default="", help="Also the Milvus ANN at these nprobe values.")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="Write every result to this file.")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"# machine: {machine()}", flush=True)
    results = []
    for case in args.cases.split(","):
        count, dim, dtype = case.split(":")
        results.append(run_case(args.workdir, int(float(count)), int(dim), dtype, args))
    print(f"# machine after: {machine()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
