"""Issue 15, done-when: LLCM and the manifest through the command line.

- ``dataset-info --dataset llcm --json`` matches the files of a hand-built tree;
- ``eval --dataset llcm`` on a hand-built tree's features equals the independent implementation
  of the reference rules (tests/eval/test_llcm_protocol.py), both modes;
- a synthetic camera-folder tree -> ``manifest --from-folders`` -> ``train`` -> ``eval`` end to
  end, and the reported metrics equal an independent numpy computation of the manifest protocol
  on the saved features.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from tests.data.llcm_tree import build_llcm_tree
from tests.data.test_llcm import counts_from_disk
from tests.eval.test_llcm_protocol import llcm_features, reference_llcm


def _ok(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_llcm_dataset_info_json_matches_the_files(tmp_path):
    root = build_llcm_tree(tmp_path / "LLCM")
    result = _ok(CliRunner().invoke(cli, ["dataset-info", "--dataset", "llcm", "--data-root", str(root), "--json"]))
    info = json.loads(result.stdout)
    expected = counts_from_disk(root)
    for key in ("train_ids", "train_visible", "train_infrared", "test_ids", "test_visible", "test_infrared"):
        assert info[key] == expected[key], key


def test_llcm_eval_matches_the_independent_reference(tmp_path):
    from mpanet_tf.eval.features import save_features

    root = build_llcm_tree(tmp_path / "LLCM")
    save_features(tmp_path / "f.npz", llcm_features(root))
    result = _ok(CliRunner().invoke(cli, ["eval", "--dataset", "llcm", "--data-root", str(root), "--features",
                                          str(tmp_path / "f.npz"), "--all-settings", "--output",
                                          str(tmp_path / "r.json")]))
    results = json.loads((tmp_path / "r.json").read_text())
    assert [r["mode"] for r in results] == ["i2v", "v2i"]
    for entry in results:
        r1, mean_ap, minp = reference_llcm(str(root), entry["mode"])
        assert (entry["rank1"], entry["mAP"], entry["mINP"]) == pytest.approx((r1, mean_ap, minp), abs=1e-4)
    assert "LLCM infrared->visible" in result.stdout and "LLCM visible->infrared" in result.stdout


def _manifest_metrics(npz) -> tuple[float, float, float]:
    """R1, mAP, mINP (percent) of the manifest protocol, from the saved features alone: cross-modality,
    whole gallery, same person + same camera removed, identity-deduplicated CMC."""
    data = np.load(npz)
    q = data["query_features"] / np.linalg.norm(data["query_features"], axis=1, keepdims=True)
    g = data["gallery_features"] / np.linalg.norm(data["gallery_features"], axis=1, keepdims=True)
    r1 = ap = inp = 0.0
    valid = 0
    for i in range(len(q)):
        order = np.argsort(((g - q[i]) ** 2).sum(1), kind="stable")
        kept = [j for j in order
                if data["gallery_infrared"][j] != data["query_infrared"][i]
                and not (data["gallery_ids"][j] == data["query_ids"][i] and data["gallery_cams"][j] == data["query_cams"][i])]
        hits = [k for k, j in enumerate(kept) if data["gallery_ids"][j] == data["query_ids"][i]]
        if not hits:
            continue
        valid += 1
        ap += np.mean([(n + 1) / (k + 1) for n, k in enumerate(hits)])
        inp += len(hits) / (hits[-1] + 1)
        unique = list(dict.fromkeys(int(data["gallery_ids"][j]) for j in kept))
        r1 += unique[0] == int(data["query_ids"][i])
    return 100 * r1 / valid, 100 * ap / valid, 100 * inp / valid


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_manifest_from_folders_train_then_eval_end_to_end(tmp_path):
    from mpanet_tf.data.synthetic_folders import generate_camera_folders

    folders = generate_camera_folders(tmp_path / "cams", ids=10, images_per_camera=2, seed=3, size=(64, 32))
    manifest = tmp_path / "cams" / "data.csv"
    runner = CliRunner()
    _ok(runner.invoke(cli, ["manifest", "--from-folders", str(folders), "--output", str(manifest),
                            "--test-fraction", "0.4", "--seed", "1"]))
    _ok(runner.invoke(cli, ["dataset-info", "--dataset", "manifest", "--data-root", str(manifest)]))
    run = tmp_path / "run"
    _ok(runner.invoke(cli, ["train", "--dataset", "manifest", "--data-root", str(manifest), "--output", str(run),
                            "--backbone-weights", "none", "--image-size", "64x32", "--batch-ids", "2",
                            "--images-per-id", "2", "--epochs", "1", "--steps-per-epoch", "2", "--quiet"]))
    _ok(runner.invoke(cli, ["eval", "--dataset", "manifest", "--data-root", str(manifest), "--model", str(run),
                            "--save-features", str(tmp_path / "f.npz"), "--output", str(tmp_path / "r.json"),
                            "--quiet"]))
    result = json.loads((tmp_path / "r.json").read_text())
    expected = _manifest_metrics(tmp_path / "f.npz")
    assert (result["rank1"], result["mAP"], result["mINP"]) == pytest.approx(expected, abs=1e-3)
    assert result["dataset"] == "manifest" and result["cross_modality"] is True
