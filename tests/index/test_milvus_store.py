"""The Milvus gallery store against Milvus Lite (the real engine, embedded in a folder under
tmp_path): the same entries, rows and exact rankings (ties included) as .mpidx, filters, ANN with
exact re-ranking, resume after kill -9, refusals, and migrate both ways."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from click.testing import CliRunner  # noqa: E402

from mpanet_tf.cli.main import cli  # noqa: E402
from mpanet_tf.index import GalleryIndex, GalleryIndexError, add_to_index, build_index, index_from_features  # noqa: E402
from mpanet_tf.index.milvus_store import MilvusStore, index_parameters  # noqa: E402
from mpanet_tf.index.migrate import migrate  # noqa: E402
from mpanet_tf.index.store import SearchFilter, open_store  # noqa: E402
from tests.export.test_savedmodel import write_images  # noqa: E402
from tests.index.conftest import make_embedder  # noqa: E402
from tests.index.gallery_split import FILTERS, expected_ids, gallery_split  # noqa: E402

FINGERPRINT = "sha256:" + "cd" * 32


def _same_store(a, b) -> None:
    """Same count, fingerprint, dim, dtype, entries and (bit-identical) rows."""
    assert (a.count(), a.fingerprint, a.dim, a.dtype) == (b.count(), b.fingerprint, b.dim, b.dtype)
    assert a.entries() == b.entries()
    np.testing.assert_array_equal(a.rows(0, a.count()), b.rows(0, b.count()))


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """One Milvus Lite folder for the module: the synthetic split copied from its .mpidx."""
    root = tmp_path_factory.mktemp("milvus")
    features, entries, queries = gallery_split()
    mpidx = root / "split.mpidx"
    index_from_features(mpidx, features, entries, FINGERPRINT)
    location = f"milvus:{root / 'split.db'}"
    with open_store(mpidx) as source:
        store = MilvusStore.create(location, FINGERPRINT, source.dim, "float32", (16, 8))
        half = source.count() // 2  # two adds: ids continue
        assert store.add(source.rows(0, half), source.entries()[:half]) == list(range(half))
        assert store.add(source.rows(half, source.count()), source.entries()[half:]) == \
            list(range(half, source.count()))
    yield {"root": root, "mpidx": mpidx, "milvus": store, "location": location, "entries": entries,
           "queries": queries}
    store.close()


def test_exact_search_equals_the_mpidx_ranking_ties_included(lite):
    with open_store(lite["mpidx"]) as mpidx:
        _same_store(mpidx, lite["milvus"])
        for top_k in (10, mpidx.count()):
            expected = mpidx.search(lite["queries"], top_k)
            found = lite["milvus"].search(lite["queries"], top_k)
            for q, (want, got) in enumerate(zip(expected, found)):
                assert [(h.rank, h.entry_id, h.distance, h.entry) for h in got] == \
                    [(h.rank, h.entry_id, h.distance, h.entry) for h in want], f"query {q}, top {top_k}"
    assert [h.entry_id for h in found[0][:6]] == [7, 40, 41, 42, 43, 44]  # row 7 and its 5 copies
    assert [h.entry_id for h in found[1][:3]] == [60, 90, 91]
    assert lite["milvus"].entry(7) == lite["entries"][7] and lite["milvus"].entry(10**6) is None


@pytest.mark.parametrize("condition", FILTERS)
def test_filters_select_exactly_the_matching_entries(lite, condition):
    wanted = expected_ids(lite["entries"], *condition)
    filters = SearchFilter(*condition)
    with open_store(lite["mpidx"]) as mpidx:
        by_mpidx = mpidx.search(lite["queries"][:4], 200, filters)
    by_milvus = lite["milvus"].search(lite["queries"][:4], 200, filters)
    for want, got in zip(by_mpidx, by_milvus):
        assert {h.entry_id for h in got} == wanted
        assert [(h.entry_id, h.distance) for h in got] == [(h.entry_id, h.distance) for h in want]


def test_ivf_and_hnsw_collections_rerank_by_the_exact_distance(lite, tmp_path):
    queries = lite["queries"]
    with open_store(lite["mpidx"]) as mpidx:
        exact = mpidx.search(queries, 10)
        full = mpidx.search(queries, mpidx.count())
        rows, entries = mpidx.rows(0, mpidx.count()), mpidx.entries()
    distance = [{h.entry_id: h.distance for h in row} for row in full]
    visible = SearchFilter(modalities=("visible",))
    for kind, params in (("IVF_FLAT", index_parameters("IVF_FLAT", nlist=8)),
                         ("HNSW", index_parameters("HNSW", hnsw_m=8, ef_construction=64))):
        with MilvusStore.create(f"milvus:{tmp_path / kind}.db", FINGERPRINT, 24, index=params) as store:
            store.add(rows, entries)
            if kind == "IVF_FLAT":  # exact mode visits every cell: the .mpidx ranking
                assert [[(h.entry_id, h.distance) for h in r] for r in store.search(queries, 10)] == \
                    [[(h.entry_id, h.distance) for h in r] for r in exact]
            else:
                with pytest.raises(GalleryIndexError, match="HNSW index, which cannot search exactly"):
                    store.search(queries, 10)
            approx = store.search(queries, 10, ann=True, nprobe=8 if kind == "IVF_FLAT" else 200)
            filtered = store.search(queries, 10, ann=True, nprobe=2, filters=visible)
        recall = np.mean([len({h.entry_id for h in a} & {h.entry_id for h in e}) / 10 for a, e in zip(approx, exact)])
        assert recall >= (1.0 if kind == "IVF_FLAT" else 0.9), kind  # IVF: every cell visited
        for q, row in enumerate(filtered + approx):
            assert [h.distance for h in row] == sorted(h.distance for h in row)
            assert all(h.distance == distance[q % len(queries)][h.entry_id] for h in row)  # exact re-ranking
        assert all(entries[h.entry_id]["modality"] == "visible" for row in filtered for h in row)


def test_build_and_add_give_the_mpidx_entries_and_rows(pictures, model_file, tmp_path):
    more = tmp_path / "more"
    write_images(more / "c", sizes=((40, 20),) * 3, seed=9, suffixes=(".png",))
    location = f"milvus:{tmp_path / 'built.db'}"
    embedder = make_embedder(model_file)
    for target in (tmp_path / "g.mpidx", location):
        build_index(embedder, target, images=pictures, batch_size=4, progress=False).close() \
            if target == location else build_index(embedder, target, images=pictures, batch_size=4, progress=False)
        added = add_to_index(target, embedder, images=more, batch_size=2, progress=False)
        if target == location:
            added.close()
    with open_store(tmp_path / "g.mpidx") as mpidx, open_store(location) as milvus:
        _same_store(mpidx, milvus)
        assert milvus.count() == 14 and milvus.image_size == (16, 8)
        assert milvus.meta["sources"] == mpidx.index.meta["sources"] and milvus.meta["pending"] is None
    lines = CliRunner().invoke(cli, ["index", "info", "--index", location]).output.splitlines()
    assert lines[1] == "images: 14" and lines[2] == "embeddings: 24-d float32, L2-normalised, Euclidean distance"
    assert "vector index: FLAT" in lines[5] and lines[-1] == f"source: folder {more}"


_KILLED_BUILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from mpanet_tf.runtimes.embedder import Embedder
    from mpanet_tf.index import build_index
    from tests.index.conftest import make_embedder

    embedder = make_embedder(Path({model!r}))
    inner = embedder.embed

    def slow(batch):
        if inner.calls == 2:  # two batches embedded and committed: wait for the kill
            print("committed", flush=True)
            time.sleep(600)
        return inner(batch)

    build_index(Embedder(slow, embedder.image_size, embedder.kind, embedder.source), {output!r},
                images={images!r}, batch_size=2, progress=False)
""")


def test_a_build_killed_with_sigkill_resumes_to_the_same_collection(pictures, model_file, tmp_path):
    location = f"milvus:{tmp_path / 'killed.db'}"
    script = _KILLED_BUILD.format(root=os.getcwd(), model=str(model_file), output=location, images=str(pictures))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    try:
        line = process.stdout.readline()
        assert line.strip() == "committed", process.stderr.read()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with MilvusStore.open(location, allow_pending=True) as partial:
        assert partial.count() == 4 and partial.meta["pending"]["command"] == "build"
    with pytest.raises(GalleryIndexError, match="unfinished `index build`"):
        open_store(location)
    build_index(make_embedder(model_file), location, images=pictures, batch_size=2, progress=False).close()
    reference = build_index(make_embedder(model_file), tmp_path / "whole.mpidx", images=pictures, batch_size=2,
                            progress=False)
    assert reference.count == 11
    with open_store(location) as resumed, open_store(tmp_path / "whole.mpidx") as whole:
        _same_store(resumed, whole)
        assert resumed.meta["sources"] == whole.index.meta["sources"]


def test_foreign_and_other_model_collections_are_refused_in_one_line(lite, tmp_path, model_file, pictures):
    from pymilvus import DataType, MilvusClient

    foreign = tmp_path / "foreign.db"
    client = MilvusClient(str(foreign))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection("gallery", schema=schema)
    client.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["index", "info", "--index", f"milvus:{foreign}"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "is not a gallery of mpanet-tf" in result.output
    result = runner.invoke(cli, ["index", "info", "--index", f"milvus:{tmp_path / 'none.db'}"])
    assert result.exit_code == 2 and "does not exist" in result.output and result.output.count("\n") == 1
    with pytest.raises(GalleryIndexError, match="built by another model") as error:
        lite["milvus"].check_model("sha256:" + "00" * 32, "model-b.onnx")
    assert "\n" not in str(error.value)
    with pytest.raises(GalleryIndexError, match="built by another model"):
        add_to_index(lite["location"], make_embedder(model_file), images=pictures, progress=False)
    result = runner.invoke(cli, ["index", "info", "--index", "milvus://nohost/x"])
    assert result.exit_code == 2 and "milvus://HOST:PORT/COLLECTION" in result.output


def test_without_the_extra_a_milvus_index_says_so(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    result = CliRunner().invoke(cli, ["index", "info", "--index", f"milvus:{tmp_path / 'g.db'}"])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "pip install 'mpanet-tf[milvus]'" in result.output


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_migrate_round_trips_both_ways_and_resumes(lite, tmp_path, monkeypatch, dtype):
    features, entries, _ = gallery_split()
    source = tmp_path / "src.mpidx"
    index_from_features(source, features, entries, FINGERPRINT, dtype=dtype)
    location = f"milvus:{tmp_path / 'moved.db'}"
    calls = {"n": 0}
    real_add = MilvusStore.add

    def interrupted(self, rows, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, rows, batch)

    monkeypatch.setattr(MilvusStore, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        migrate(source, location, batch_rows=50)
    monkeypatch.setattr(MilvusStore, "add", real_add)
    with MilvusStore.open(location, allow_pending=True) as partial:
        assert partial.count() == 100
    result = CliRunner().invoke(cli, ["index", "migrate", str(source), location, "--batch-rows", "50"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"migrated: {len(entries)} entries")
    back = tmp_path / "back.mpidx"
    assert migrate(location, back, batch_rows=64) == (len(entries), FINGERPRINT)
    with open_store(source) as a, open_store(location) as b, open_store(back) as c:
        _same_store(a, b)
        _same_store(a, c)
        assert b.dtype == c.dtype == dtype
        hits = [s.search(a.rows(3, 6), 10) for s in (a, b, c)]
        assert hits[0] == hits[2]  # the .mpidx copied back is the original
        for want, got in zip(hits[0], hits[1]):  # float64 re-ranking of other row subsets: last bits only
            assert [(h.entry_id, h.entry) for h in got] == [(h.entry_id, h.entry) for h in want]
            np.testing.assert_allclose([h.distance for h in got], [h.distance for h in want], rtol=0, atol=1e-6)
    assert (back / "embeddings.bin").read_bytes() == (source / "embeddings.bin").read_bytes()
    assert GalleryIndex.open(back).meta["sources"] == GalleryIndex.open(source).meta["sources"]
    result = CliRunner().invoke(cli, ["index", "migrate", str(source), str(back)])
    assert result.exit_code == 2 and "one of SRC and DST" in result.output
