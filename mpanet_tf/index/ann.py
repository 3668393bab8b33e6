"""Approximate search (``search --ann``): a FAISS IVF-PQ index over the stored rows, then an exact
re-ranking of its candidates.

FAISS (``faiss-cpu``) is an optional extra: ``pip install 'mpanet-tf[ann]'``. The IVF-PQ index
(an inverted file of ``nlist`` coarse k-means cells; product quantisation of each row into ``m``
codes of ``nbits`` bits), behind a PCA to ``pca`` dims for wide embeddings (MPANet's 14,336-d
rows go to 256 dims, which keeps training and encoding affordable on a CPU), is trained once on a
sample of the index's rows (:func:`_train`) and kept beside them
(``ann.faiss``, what it covers in ``ann.json``); rows added later are encoded and appended to it
the next time ``--ann`` is used. A query visits ``nprobe`` cells and takes the
``refine x top_k`` nearest codes, whose exact distances are then recomputed from the stored rows
(:func:`mpanet_tf.index.exact.exact_search` on the candidates), so every returned distance is exact
and only the candidate set is approximate. ``benchmarks/gallery_scale.py`` reports its recall@10
against the exact search.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from mpanet_tf.index.exact import exact_search, unit_rows
from mpanet_tf.index.format import GalleryIndex, GalleryIndexError
from mpanet_tf.index.lock import write_lock
from mpanet_tf.io.atomic import atomic_path, atomic_write_json

ANN_FILE = "ann.faiss"
ANN_META = "ann.json"
#: Rows added to (or sampled for training) the FAISS index per call, bounding memory.
_ADD_ROWS = 16384


def require_faiss():
    """``faiss``; :class:`GalleryIndexError` (one line) when the optional extra is not installed."""
    try:
        import faiss
    except ImportError:
        raise GalleryIndexError("--ann needs FAISS, which is not installed; pip install 'mpanet-tf[ann]' "
                                "(faiss-cpu), or search without --ann") from None
    return faiss


#: Largest training sample for the FAISS index, in bytes of float32 rows.
SAMPLE_BYTES = 512 * 2**20
#: Rows the PCA is trained on (its cost grows with rows^2 x dim).
_PCA_ROWS = 2048


def ann_parameters(count: int, dim: int) -> dict:
    """Default settings for ``count`` rows of ``dim`` dims.

    pca = 256 when ``dim`` > 256 and there are at least 1024 rows to fit it (else 0, no PCA); nlist ~ 4 sqrt(count) cells (at least 39
    training rows each, as FAISS' k-means asks); m = the largest divisor of the (reduced) dim up to
    64 (one byte per sub-vector at nbits = 8; fewer bits when there are under 256 x 39 rows to train
    the codebooks); nprobe = nlist / 8, between 1 and 256 (at 10^6 synthetic 14,336-d rows,
    nlist 4,000: recall@10 0.67 at nprobe 64, 0.90 at 256 in 15 ms, 1.00 at 1,024 in 66 ms;
    benchmarks/RESULTS.md).
    """
    count, dim = max(1, int(count)), int(dim)
    pca = 256 if dim > 256 and count >= 1024 else 0
    reduced = pca or dim
    nlist = max(1, min(int(4 * math.sqrt(count)), count // 39))
    m = max(d for d in range(1, min(64, reduced) + 1) if reduced % d == 0)
    nbits = max(1, min(8, int(math.log2(max(2, count // 39)))))
    return {"pca": pca, "nlist": nlist, "m": m, "nbits": nbits, "nprobe": max(1, min(256, nlist // 8))}


def _rows_f32(rows, which) -> np.ndarray:
    """``rows[which]`` (a slice or sorted row numbers) as a contiguous float32 array."""
    return np.ascontiguousarray(rows[which], dtype=np.float32)


def _train(faiss, index: GalleryIndex, params: dict, seed: int):
    """A trained, empty FAISS index for ``params``.

    FAISS' k-means wants 39 training rows per centroid (the IVF cells; PQ's 2^nbits codes per
    sub-quantiser), so up to ``39 x max(nlist, 256)`` rows are drawn at random from the whole
    index (at most :data:`SAMPLE_BYTES` of float32 in the dims they are trained in). With a PCA,
    the PCA is fitted on :data:`_PCA_ROWS` of them (drawn from the whole sample, not its first
    rows) and the rest are projected chunk by chunk, so the IVF and PQ of a 14,336-d gallery get
    as many rows as a 256-d one.
    """
    rows = index.embeddings()
    rng = np.random.default_rng(seed)
    reduced = params["pca"] or index.dim
    wanted = 39 * max(256, params["nlist"])
    sample_size = min(index.count, wanted, max(1, SAMPLE_BYTES // (4 * reduced)))
    picked = np.sort(rng.choice(index.count, size=sample_size, replace=False))
    ivfpq = f"IVF{params['nlist']},PQ{params['m']}x{params['nbits']}"
    ann = faiss.index_factory(index.dim, f"PCA{reduced},{ivfpq}" if params["pca"] else ivfpq)
    _configure_training(faiss, ann)
    if not params["pca"]:
        ann.train(_rows_f32(rows, picked))
        return ann
    pca = faiss.downcast_VectorTransform(ann.chain.at(0))
    pca.train(_rows_f32(rows, np.sort(rng.choice(picked, size=min(_PCA_ROWS, len(picked)), replace=False))))
    step = max(1, SAMPLE_BYTES // 8 // (4 * index.dim))
    sample = np.concatenate([pca.apply(_rows_f32(rows, picked[i:i + step])) for i in range(0, len(picked), step)])
    faiss.downcast_index(ann.index).train(sample)
    ann.is_trained = True
    return ann


def _configure_training(faiss, ann) -> None:
    """Training settings of the IVF-PQ inside ``ann``.

    - Polysemous training off: ``index_factory`` turns on, for IVF-PQ, a simulated annealing over
      the PQ codes that only polysemous filtering (``polysemous_ht``, not used here) benefits
      from, and 95% of the training time (measured: 20 s of 21 s for 3,000 rows of PQ64x6; 1.2 s
      without).
    - No per-k-means warning: FAISS prints one stderr line per k-means (65 for PQ64 + IVF) when
      there are fewer than 39 rows per centroid, as in a small gallery; :func:`ann_parameters`
      already sizes the index to the rows there are, and the exact re-ranking fixes the order.
    """
    ivfpq = faiss.downcast_index(faiss.extract_index_ivf(ann))
    ivfpq.do_polysemous_training = False
    ivfpq.cp.min_points_per_centroid = 1
    ivfpq.pq.cp.min_points_per_centroid = 1


def _set_nprobe(faiss, ann, nprobe: int) -> None:
    faiss.extract_index_ivf(ann).nprobe = int(nprobe)


def prepare_ann(index: GalleryIndex, params: dict | None = None, seed: int = 0):
    """The FAISS index of ``index``: loaded, trained if missing, extended with rows added since.

    Returns:
        (faiss index, settings dict with ``rows``, ``nlist``, ``m``, ``nbits``, ``nprobe``).
    """
    faiss = require_faiss()

    if index.count == 0:
        raise GalleryIndexError(f"gallery index {index.path} is empty; add images before searching it")
    ann_file, meta_file = index.path / ANN_FILE, index.path / ANN_META
    with write_lock(index.path):
        settings, ann = None, None
        if ann_file.is_file() and meta_file.is_file():
            settings = json.loads(meta_file.read_text(encoding="utf-8"))
            stale = (settings.get("fingerprint") != index.fingerprint or settings.get("rows", 0) > index.count
                     or (params and any(settings.get(k) != v for k, v in params.items())))
            ann = None if stale else faiss.read_index(os.fspath(ann_file))
        if ann is None:
            settings = {**ann_parameters(index.count, index.dim), **(params or {}), "rows": 0,
                        "fingerprint": index.fingerprint}
            ann = _train(faiss, index, settings, seed)
        if settings["rows"] < index.count:
            rows = index.embeddings()
            for start in range(settings["rows"], index.count, _ADD_ROWS):
                ann.add(_rows_f32(rows, slice(start, start + _ADD_ROWS)))
            settings["rows"] = index.count
            with atomic_path(ann_file) as temp:
                faiss.write_index(ann, os.fspath(temp))
            atomic_write_json(meta_file, settings)
    return ann, settings


def ann_search(index: GalleryIndex, queries, top_k: int = 10, nprobe: int | None = None, refine: int = 4,
               prepared=None):
    """Approximate top-``top_k`` of ``queries`` (Q, D) or (D,): IVF-PQ candidates, exact re-ranking.

    Args:
        nprobe: cells visited per query (default from :func:`ann_parameters`).
        refine: candidates taken per wanted match before the exact re-ranking.
        prepared: a (faiss index, settings) pair from :func:`prepare_ann` to reuse.

    Returns:
        (indices (Q, k) int64, distances (Q, k) float32) as :func:`~mpanet_tf.index.exact.exact_search`.
    """
    ann, settings = prepared or prepare_ann(index)
    queries = unit_rows(queries)
    k = max(1, min(int(top_k), index.count))
    _set_nprobe(require_faiss(), ann, nprobe or settings["nprobe"])
    _, candidates = ann.search(np.ascontiguousarray(queries, dtype=np.float32), min(index.count, refine * k))
    rows = index.embeddings()
    indices = np.full((len(queries), k), -1, np.int64)
    distances = np.full((len(queries), k), np.inf, np.float32)
    for q, found in enumerate(candidates):
        found = np.unique(found[found >= 0])  # sorted: the stored order breaks ties, as in the exact search
        order, dist = exact_search(queries[q], rows[found], top_k=k)
        indices[q, :order.shape[1]], distances[q, :order.shape[1]] = found[order[0]], dist[0]
    return indices, distances
