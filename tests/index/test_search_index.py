"""search --index: the same ranking as search --gallery over the same folder (a real tiny MPANet),
refusal of another model's index, the ANN mode's recall (with faiss) and float16's effect."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.index import GalleryIndex, index_from_features
from mpanet_tf.index.exact import exact_search
from tests.export.test_savedmodel import write_images, write_tiny_run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("index-search")
    run, _ = write_tiny_run(root / "run", seed=5)
    other, _ = write_tiny_run(root / "other", seed=6)
    folder = root / "gallery"
    images = write_images(folder / "cam1" / "0001", sizes=((96, 48), (80, 40), (64, 32), (64, 32)), seed=6,
                          suffixes=(".jpg", ".png"))
    images += write_images(folder / "cam3" / "0002", sizes=((90, 45), (64, 32), (100, 50)), seed=7,
                           suffixes=(".bmp", ".JPEG"))
    index = root / "gallery.mpidx"
    result = CliRunner().invoke(cli, ["index", "build", "--model", str(run), "--images", str(folder),
                                      "--output", str(index), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    return {"root": root, "run": run, "other": other, "folder": folder, "images": sorted(images), "index": index}


def _ranking(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()[:1].isdigit()]


def test_index_ranking_equals_search_gallery_for_queries_of_each_format(tiny, tmp_path):
    """Three of the seven gallery images as queries (a JPEG, a PNG and a BMP; each search of the
    folder embeds the whole gallery again, ~30 s a query on 2 cores)."""
    from mpanet_tf.runtimes.embedder import load_embedder
    from mpanet_tf.search import search, search_index

    embedder = load_embedder(tiny["run"])  # loaded once; the CLI below checks one query end to end
    count = len(tiny["images"])
    queries = tiny["images"][::3]
    assert {q.suffix.lower() for q in queries} == {".jpg", ".png", ".bmp"}
    for query in queries:
        by_folder = search(embedder, query, tiny["folder"], batch_size=4)
        by_index = search_index(embedder, query, tiny["index"], top_k=count)
        assert [str(p) for p in by_index.paths] == [str(p) for p in by_folder.paths]
        np.testing.assert_array_equal(by_index.distances, by_folder.distances)
        assert by_index.paths[0] == query
        # a shorter list is the head of the full one (the chunked top-k merge keeps the order)
        top = search_index(embedder, query, tiny["index"], top_k=3)
        assert top.paths == by_index.paths[:3] and top.gallery_size == count
    runner = CliRunner()
    common = ["search", "--model", str(tiny["run"]), "--query", str(tiny["images"][4]), "--top-k", str(count)]
    by_folder = runner.invoke(cli, [*common, "--gallery", str(tiny["folder"]), "--batch-size", "4"])
    picture = tmp_path / "ranked.png"
    by_index = runner.invoke(cli, [*common, "--index", str(tiny["index"]), "--output", str(picture)])
    assert by_folder.exit_code == 0 and by_index.exit_code == 0, by_folder.output + by_index.output
    assert len(_ranking(by_index.output)) == count and f"({count} gallery images)" in by_index.output
    assert _ranking(by_index.output) == _ranking(by_folder.output)
    from PIL import Image

    with Image.open(picture) as image:
        assert image.size[0] > (count + 1) * 32


def test_another_models_index_is_refused(tiny):
    for args in (["search", "--model", str(tiny["other"]), "--query", str(tiny["images"][0]),
                  "--index", str(tiny["index"])],
                 ["index", "add", "--model", str(tiny["other"]), "--index", str(tiny["index"]),
                  "--images", str(tiny["folder"])]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "another model" in result.output and len(result.output.strip().splitlines()) == 1
    assert GalleryIndex.open(tiny["index"]).count == len(tiny["images"])


def _clustered(count, dim, clusters, seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return centres[rng.integers(0, clusters, count)] + 0.35 * rng.normal(size=(count, dim)), centres


@pytest.mark.parametrize("dim", [16, 320])  # 320 > 256: the PCA path (PCA256,IVF,PQ)
def test_ann_recall_at_10(tmp_path, dim):
    faiss = pytest.importorskip("faiss")
    from mpanet_tf.index.ann import ann_search, prepare_ann

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # OpenMP threads spin against each other on a busy 2-core machine

    rows, centres = _clustered(2000, dim, 60, seed=0)
    entries = [{"path": f"img{i:05d}.jpg"} for i in range(len(rows))]
    index = index_from_features(tmp_path / "ann.mpidx", rows, entries, "sha256:synthetic")
    queries = centres[:50] + 0.35 * np.random.default_rng(2).normal(size=(50, dim))
    exact, _ = exact_search(queries, index.embeddings(), top_k=10)
    prepared = prepare_ann(index)
    approx, distances = ann_search(index, queries, top_k=10, prepared=prepared)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.9, recall
    assert np.all(np.diff(distances, axis=1) >= 0)
    # the FAISS index is kept and extended, not retrained, when rows are added
    assert (index.path / "ann.faiss").is_file() and prepared[1]["rows"] == 2000
    assert prepared[1]["pca"] == (256 if dim > 256 else 0)
    faiss.omp_set_num_threads(threads)


def test_ann_without_faiss_is_one_line(monkeypatch, tmp_path):
    import builtins

    from mpanet_tf.index.ann import require_faiss
    from mpanet_tf.index.format import GalleryIndexError

    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "faiss" else real_import(name, *a, **k))
    with pytest.raises(GalleryIndexError, match=r"pip install 'mpanet-tf\[ann\]'"):
        require_faiss()


def test_float16_storage_changes_r1_and_map_by_little():
    """On clustered synthetic identities: R1/mAP of float16 rows within 0.5 point of float32."""
    from mpanet_tf.eval.metrics import evaluate_ranking
    from mpanet_tf.index.exact import unit_rows

    rng = np.random.default_rng(3)
    ids = rng.integers(0, 100, 2000)
    centres = rng.normal(size=(100, 256))
    gallery = centres[ids] + 2.5 * rng.normal(size=(2000, 256))
    query_ids = np.arange(100)
    queries = centres + 2.5 * rng.normal(size=(100, 256))
    scores = {}
    for dtype in (np.float32, np.float16):
        order, distances = exact_search(queries, unit_rows(gallery).astype(dtype))
        distmat = np.empty(order.shape)
        np.put_along_axis(distmat, order, distances, axis=1)
        metrics = evaluate_ranking(distmat, query_ids, np.zeros(100), ids, np.ones(2000))
        scores[dtype] = (metrics.cmc[0], metrics.mAP)
    assert 20 < scores[np.float32][0] < 100  # percent: neither trivial nor hopeless
    for key in (0, 1):
        assert abs(scores[np.float16][key] - scores[np.float32][key]) <= 0.5


def test_search_ann_nprobe_option(tiny, capfd):
    """``search --ann --nprobe N`` reaches the ANN search (on 7 images every one is a candidate, so
    the exactly re-ranked list equals the exact search's), and training the FAISS index on so few
    rows prints no FAISS warning (it printed one line per k-means, 65); ``--nprobe`` without
    ``--ann`` is a usage error (exit 2)."""
    pytest.importorskip("faiss")
    runner = CliRunner()
    common = ["search", "--model", str(tiny["run"]), "--query", str(tiny["images"][2]), "--index",
              str(tiny["index"]), "--top-k", "3"]
    exact = runner.invoke(cli, common)
    approx = runner.invoke(cli, [*common, "--ann", "--nprobe", "1"])
    assert exact.exit_code == 0 and approx.exit_code == 0, exact.output + approx.output
    assert len(_ranking(approx.output)) == 3 and _ranking(approx.output) == _ranking(exact.output)
    assert "WARNING clustering" not in capfd.readouterr().err
    refused = runner.invoke(cli, [*common, "--nprobe", "4"])
    assert refused.exit_code == 2 and "--nprobe only applies with --ann" in refused.output
