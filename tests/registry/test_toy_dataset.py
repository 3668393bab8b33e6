"""A fifth dataset defined only under tests/ (reader + protocol + spec, registered) works with every command.

The toy dataset of :mod:`tests.registry.toy_dataset` / :mod:`tests.registry.toy_protocol` goes
through ``dataset-info``, ``synth``, ``train``, ``eval`` (with its own ``--toy-metric`` option),
``visualize ranks`` (its own ``--toy-side``) and ``tsne``, ``index build|add`` (its own
``--toy-modality``), ``index info`` and ``search --index`` without any edit of the package or the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import PRESETS, MPANetConfig
from mpanet_tf.data.registry import dataset_names, get_dataset, load_dataset, unregister_dataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import load_features
from mpanet_tf.index.format import GalleryIndex
from tests.registry.toy_dataset import ToyDataset, write_toy_tree
from tests.registry.toy_protocol import register_toy


@pytest.fixture(scope="module")
def toy():
    """The toy dataset registered for this module's tests only (other tests see sysu and regdb)."""
    register_toy()
    yield
    unregister_dataset("toy")


@pytest.fixture(scope="module")
def toy_root(toy, tmp_path_factory):
    return write_toy_tree(tmp_path_factory.mktemp("toy") / "TOY")


@pytest.fixture(scope="module")
def toy_run(toy_root, tmp_path_factory):
    """Two training steps on the toy tree, with the run's final evaluation (the toy protocol's)."""
    output = tmp_path_factory.mktemp("runs") / "toy"
    result = invoke("train", "--dataset", "toy", "--data-root", toy_root, "--output", output,
                    "--backbone-weights", "none", "--steps-per-epoch", 2, "--quiet")
    assert result.exit_code == 0, result.output
    return output


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def numpy_rank1_map(features, cosine: bool):
    """Rank-1 and mAP (percent) of infrared queries against the visible gallery, by hand."""
    query, gallery = features.query_features.astype(np.float64), features.gallery_features.astype(np.float64)
    if cosine:
        query = query / np.linalg.norm(query, axis=1, keepdims=True)
        gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    rank1, precisions = [], []
    for q in range(len(query)):
        order = np.argsort(((gallery - query[q]) ** 2).sum(axis=1), kind="stable")
        hits = features.gallery_ids[order] == features.query_ids[q]
        rank1.append(float(hits[0]))
        positions = np.flatnonzero(hits)
        precisions.append(np.mean([(k + 1) / (p + 1) for k, p in enumerate(positions)]))
    return 100 * np.mean(rank1), 100 * np.mean(precisions)


def test_registration_reaches_config_presets_and_choices(toy):
    assert dataset_names()[:2] == ("sysu", "regdb") and "toy" in dataset_names()
    config = MPANetConfig.preset("toy")
    assert (config.data.dataset, config.model.image_height, config.model.image_width) == ("toy", 64, 32)
    assert PRESETS["toy"]["data"]["data_root"] == "datasets/TOY"
    assert "toy" in invoke("eval", "--help").output and "--toy-metric" in invoke("eval", "--help").output
    assert "--toy-side" in invoke("visualize", "ranks", "--help").output
    for command in (["index", "build"], ["index", "add"]):
        assert "--toy-modality" in invoke(*command, "--help").output, command
    for command in (["dataset-info"], ["train"], ["prepare"], ["visualize", "tsne"], ["synth"], ["index", "build"]):
        assert "toy" in invoke(*command, "--help").output, command


def test_unknown_dataset_lists_the_registered_ones(toy, tmp_path):
    with pytest.raises(DatasetError, match="market.*sysu, regdb, llcm, manifest, toy"):
        load_dataset("market", tmp_path)
    with pytest.raises(ConfigError, match="'sysu', 'regdb', 'llcm', 'manifest' or 'toy'"):
        MPANetConfig.from_dict({"data": {"dataset": "market"}})
    assert get_dataset("TOY").title == "TOY"


def test_dataset_info_and_synth(toy_root, tmp_path):
    result = invoke("dataset-info", "--dataset", "toy", "--data-root", toy_root, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    # 4 train ids and 3 test ids, each with 2 visible and 2 infrared images (write_toy_tree's defaults).
    assert info == {"dataset": "toy", "root": str(toy_root), "train_ids": 4, "train_images": 16, "test_ids": 3,
                    "test_visible": 6, "test_infrared": 6}
    result = invoke("synth", "--layout", "toy", "--out", tmp_path / "synth", "--images-per-camera", 3)
    assert result.exit_code == 0 and "synthetic TOY tree" in result.output
    assert ToyDataset(tmp_path / "synth").counts()["test_visible"] == 9
    missing = invoke("dataset-info", "--dataset", "toy", "--data-root", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "TOY root" in missing.output


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_train_eval_and_visualize(toy_root, toy_run, tmp_path):
    run = json.loads((toy_run / "run.json").read_text())
    assert run["dataset"] == "toy" and run["num_classes"] == 4 and run["trial"] is None
    history = json.loads((toy_run / "history.json").read_text())
    final = [entry["eval"] for entry in history["epochs"] if "eval" in entry][-1]
    assert final["settings"] == ["TOY infrared->visible (euclidean)", "TOY infrared->visible (cosine)"]

    features, out = tmp_path / "toy.npz", tmp_path / "toy.json"
    result = invoke("eval", "--dataset", "toy", "--data-root", toy_root, "--model", toy_run, "--toy-metric", "cosine",
                    "--save-features", features, "--output", out, "-q")
    assert result.exit_code == 0, result.output
    assert "TOY infrared->visible (cosine)" in result.output
    saved = load_features(features)
    data = ToyDataset(toy_root)
    assert saved.query_paths.tolist() == [r.relpath for r in data.test_records(True)]
    assert saved.gallery_paths.tolist() == [r.relpath for r in data.test_records(False)]
    row = json.loads(out.read_text())
    rank1, mean_ap = numpy_rank1_map(saved, cosine=True)
    assert row["toy_metric"] == "cosine"
    assert row["rank1"] == pytest.approx(rank1, abs=1e-6) and row["mAP"] == pytest.approx(mean_ap, abs=1e-6)

    result = invoke("eval", "--dataset", "toy", "--features", features, "--all-settings", "--output", out, "-q")
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["toy_metric"] for r in rows] == ["euclidean", "cosine"]
    assert rows[0]["rank1"] == pytest.approx(numpy_rank1_map(saved, cosine=False)[0], abs=1e-6)

    picture = tmp_path / "ranks.png"
    result = invoke("visualize", "ranks", "--model", toy_run, "--dataset", "toy", "--data-root", toy_root,
                    "--queries", 2, "--top-k", 3, "--output", picture)
    assert result.exit_code == 0, result.output
    assert picture.stat().st_size > 0 and "2 queries" in result.output
    picture = tmp_path / "tsne.png"
    result = invoke("visualize", "tsne", "--model", toy_run, "--dataset", "toy", "--data-root", toy_root,
                    "--ids", 3, "--output", picture)
    assert result.exit_code == 0, result.output
    assert "3 identities, 12 images" in result.output and picture.stat().st_size > 0


def test_sysu_options_still_refused_rules(toy, toy_root, tmp_path):
    """The built-in protocols' option rules hold with a third protocol registered."""
    result = invoke("eval", "--dataset", "sysu", "--features", tmp_path / "x.npz", "--no-normalize")
    assert result.exit_code == 2 and "RegDB only" in result.output
    result = invoke("eval", "--dataset", "toy", "--features", tmp_path / "x.npz", "--toy-metric", "manhattan")
    assert result.exit_code == 2 and "manhattan" in result.output


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_visualize_ranks_reads_the_toy_option(toy_root, toy_run, tmp_path, monkeypatch):
    import mpanet_tf.cli.visualize_command as command

    calls = []

    def spy(*args, **kwargs):
        rows = real(*args, **kwargs)
        calls.append(rows)
        return rows

    real = command.visualize_ranks
    monkeypatch.setattr(command, "visualize_ranks", spy)
    data = ToyDataset(toy_root)
    for side, infrared in (("visible", False), ("infrared", True)):
        picture = tmp_path / f"{side}.png"
        result = invoke("visualize", "ranks", "--model", toy_run, "--dataset", "toy", "--data-root", toy_root,
                        "--toy-side", side, "--queries", 2, "--top-k", 3, "--output", picture)
        assert result.exit_code == 0, result.output
        rows = calls[-1]
        assert all(row.query.infrared == infrared for row in rows)
        assert {g.relpath for row in rows for g in row.gallery} <= {r.relpath for r in data.test_records(not infrared)}
        assert picture.stat().st_size > 0
    # Another dataset's option with the toy, or a dataset option without a dataset: one line, exit 2.
    refused = invoke("visualize", "ranks", "--model", toy_run, "--dataset", "toy", "--data-root", toy_root,
                     "--mode", "indoor", "--output", tmp_path / "x.png")
    assert refused.exit_code == 2 and "--mode is not an option of --dataset toy" in refused.output
    refused = invoke("visualize", "ranks", "--model", toy_run, "--query-folder", toy_root, "--gallery", toy_root,
                     "--toy-side", "visible", "--output", tmp_path / "x.png")
    assert refused.exit_code == 2 and "--toy-side is an option of a dataset's protocol" in refused.output


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_index_build_add_info_and_search(toy_root, toy_run, tmp_path):
    index = tmp_path / "toy.mpidx"
    result = invoke("index", "build", "--model", toy_run, "--dataset", "toy", "--data-root", toy_root,
                    "--split", "all", "--toy-modality", "infrared", "--output", index)
    assert result.exit_code == 0, result.output
    data = ToyDataset(toy_root)
    infrared = sorted(r.path for r in data.all_records() if r.infrared)
    assert len(infrared) == 14           # (4 train + 3 test ids) x 2 infrared images
    entries = GalleryIndex.open(index).entries
    assert sorted(e["path"] for e in entries) == infrared and {e["modality"] for e in entries} == {"infrared"}
    result = invoke("index", "add", "--index", index, "--model", toy_run, "--dataset", "toy", "--data-root",
                    toy_root, "--split", "all", "--toy-modality", "visible")
    assert result.exit_code == 0 and "(28 images" in result.output, result.output
    info = invoke("index", "info", "--index", index)
    assert info.exit_code == 0 and "toy all toy_modality=infrared" in info.output, info.output
    assert "toy all toy_modality=visible" in info.output

    query = data.test_records(False)[0]
    result = invoke("search", "--model", toy_run, "--query", query.path, "--index", index, "--top-k", 28)
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.output.splitlines()[2:]]
    assert "(28 gallery images)" in result.output.splitlines()[0] and len(lines) == 28
    distances = [float(line[1]) for line in lines]
    assert distances == sorted(distances) and distances[0] == pytest.approx(0.0, abs=1e-3)
    assert lines[0][2] == query.path     # the query itself is in the index (its visible test image)
