"""A third dataset defined only under tests/ (reader + protocol, registered) works with every command.

The toy dataset of :mod:`tests.registry.toy_dataset` / :mod:`tests.registry.toy_protocol` goes
through ``dataset-info``, ``synth``, ``train``, ``eval`` (with its own ``--toy-metric`` option)
and ``visualize ranks|tsne`` without any edit of the package or the CLI.
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
from tests.registry.toy_dataset import ToyDataset, register_toy, write_toy_tree


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
    for command in (["dataset-info"], ["train"], ["prepare"], ["visualize", "tsne"], ["synth"]):
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
