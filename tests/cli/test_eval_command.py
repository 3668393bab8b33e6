"""``mpanet-tf eval`` end to end on synthetic SYSU/RegDB trees.

The models are tiny real SavedModels with the project's ``serve_encoded`` contract (image bytes in,
``embeddings`` out; here a downsampled picture), so the model path, the bytes-wanting embedder,
feature files, per-trial ``{trial}`` models and ``seed-*`` folders are exercised without training.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.data.regdb import RegDBDataset
from mpanet_tf.data.synthetic import generate_regdb, generate_sysu
from mpanet_tf.data.sysu import SYSUDataset
from mpanet_tf.eval.features import load_features
from mpanet_tf.eval.regdb_protocol import evaluate_regdb
from mpanet_tf.eval.sysu_protocol import evaluate_sysu


def write_pixel_savedmodel(folder, size=(8, 4)):
    """SavedModel whose serve_encoded embeds an image as its pixels downsampled to ``size``."""
    import tensorflow as tf

    class PixelModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve_encoded(self, image_bytes):
            def one(data):
                image = tf.cast(tf.io.decode_image(data, channels=3, expand_animations=False), tf.float32)
                return tf.reshape(tf.image.resize(image, size), [-1])

            return {"embeddings": tf.map_fn(one, image_bytes, fn_output_signature=tf.float32)}

    module = PixelModel()
    tf.saved_model.save(module, str(folder), signatures={"serve_encoded": module.serve_encoded})
    return folder


@pytest.fixture(scope="module")
def sysu(tmp_path_factory):
    base = tmp_path_factory.mktemp("sysu")
    root = generate_sysu(base / "SYSU-MM01", ids=10, images_per_camera=2, size=(32, 16))
    model = write_pixel_savedmodel(base / "model")
    return root, model, base


@pytest.fixture(scope="module")
def regdb(tmp_path_factory):
    base = tmp_path_factory.mktemp("regdb")
    root = generate_regdb(base / "RegDB", ids=8, images_per_modality=2, size=(32, 16))
    for trial, size in ((1, (8, 4)), (2, (4, 2))):
        write_pixel_savedmodel(base / f"t{trial}", size)
    for seed, size in ((1, (8, 4)), (2, (2, 2))):
        write_pixel_savedmodel(base / "runs" / f"seed-{seed}", size)
    return root, base


def invoke(*args):
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


def test_sysu_model_features_round_trip(sysu, tmp_path):
    root, model, _ = sysu
    features, out, again = tmp_path / "f.npz", tmp_path / "r.json", tmp_path / "r2.json"
    result = invoke("--dataset", "sysu", "--data-root", root, "--model", model, "--save-features", features,
                    "--trials", 3, "--output", out, "-q")
    assert result.exit_code == 0, result.output
    assert "SYSU all-search single-shot" in result.output
    saved = load_features(features)
    dataset = SYSUDataset(root)
    assert saved.query_paths.tolist() == [r.relpath for r in dataset.query_records()]
    assert saved.gallery_paths.tolist() == [r.relpath for r in dataset.gallery_records("all")]
    assert saved.query_features.shape[1] == 8 * 4 * 3
    first = json.loads(out.read_text())
    direct = evaluate_sysu(saved, perm=str(root), trials=3)
    assert first["rank1"] == pytest.approx(direct["rank1"]) and first["mAP"] == pytest.approx(direct["mAP"])
    result = invoke("--dataset", "sysu", "--data-root", root, "--features", features, "--trials", 3, "--output", again)
    assert result.exit_code == 0, result.output
    second = json.loads(again.read_text())
    assert {k: second[k] for k in ("rank1", "mAP", "mINP")} == {k: first[k] for k in ("rank1", "mAP", "mINP")}


def test_sysu_all_settings_and_seeded_sampling(sysu, tmp_path):
    root, model, base = sysu
    features = tmp_path / "f.npz"
    assert invoke("--dataset", "sysu", "--data-root", root, "--model", model, "--save-features", features,
                  "--trials", 2, "-q").exit_code == 0
    out = tmp_path / "all.json"
    result = invoke("--dataset", "sysu", "--data-root", root, "--features", features, "--all-settings",
                    "--trials", 2, "--output", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["mode"], r["shots"]) for r in rows] == [("all", 1), ("all", 10), ("indoor", 1), ("indoor", 10)]
    # AGW's protocol needs no .mat: point --data-root at an empty folder.
    out = tmp_path / "seed.json"
    result = invoke("--dataset", "sysu", "--data-root", tmp_path, "--features", features, "--sampling", "seed",
                    "--trials", 2, "--output", out)
    assert result.exit_code == 0, result.output
    seeded = json.loads(out.read_text())
    assert seeded["sampling"] == "seed" and seeded["trials"] == 2 and "mINP" in seeded


def test_missing_permutation_file_is_one_line_and_exit_2(sysu, tmp_path):
    root, model, _ = sysu
    result = invoke("--dataset", "sysu", "--data-root", tmp_path, "--model", model)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "evaluation/data_split" in lines[0] and "Traceback" not in result.output


def test_regdb_per_trial_models_and_both_directions(regdb, tmp_path):
    root, base = regdb
    out = tmp_path / "r.json"
    result = invoke("--dataset", "regdb", "--data-root", root, "--model", str(base / "t{trial}"), "--trial", "1,2",
                    "--all-settings", "--save-features", str(tmp_path / "f{trial}.npz"), "--output", out, "-q")
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["regdb_mode"] for r in rows] == ["i2v", "v2i"]
    for row in rows:
        direct = [evaluate_regdb(load_features(tmp_path / f"f{t}.npz"), row["regdb_mode"], trial=t) for t in (1, 2)]
        assert row["trials"] == 2 and [t["trial"] for t in row["per_trial"]] == [1, 2]
        assert row["rank1"] == pytest.approx(np.mean([d["rank1"] for d in direct]))
        assert row["mAP_std"] == pytest.approx(np.std([d["mAP"] for d in direct], ddof=1))
    trial2 = load_features(tmp_path / "f2.npz")
    assert trial2.query_paths.tolist() == [r.relpath for r in RegDBDataset(root, 2).test_thermal()]


def test_seed_folders_are_reported_as_mean_and_std(regdb, tmp_path):
    root, base = regdb
    out = tmp_path / "r.json"
    result = invoke("--dataset", "regdb", "--data-root", root, "--model", base / "runs", "--normalize",
                    "--save-features", str(tmp_path / "s{seed}.npz"), "--output", out, "-q")
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())
    per_seed = [evaluate_regdb(load_features(tmp_path / f"s{k}.npz"), "i2v", normalize=True) for k in (1, 2)]
    assert row["repeats"] == 2 and row["normalize"] is True
    assert row["rank1"] == pytest.approx(np.mean([r["rank1"] for r in per_seed]))
    assert row["rank1_std"] == pytest.approx(np.std([r["rank1"] for r in per_seed], ddof=1))
    assert "2 seeds" in result.output


@pytest.mark.parametrize("args,message", [
    (["--dataset", "regdb", "--features", "x.npz", "--trial", "all"], "{trial}"),
    (["--dataset", "sysu", "--features", "x.npz", "--no-normalize"], "RegDB only"),
    (["--dataset", "sysu", "--features", "x.npz", "--model", "m"], "exactly one"),
    (["--dataset", "sysu", "--features", "x.npz", "--sampling", "seed", "--shots", "10"], "single-shot"),
    (["--dataset", "regdb", "--features", "x.npz", "--trial", "11"], "--trial"),
    (["--dataset", "regdb", "--features", "missing.npz"], "does not exist"),
])
def test_option_errors_exit_2_with_one_line(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.large
def test_keras_run_folders_per_seed(sysu, tmp_path):
    """A real (tiny, random) MPANet run folder per seed, through load_model and model.embed."""
    from tests.export.test_savedmodel import write_tiny_run

    root, _, _ = sysu
    for seed in (1, 2):
        write_tiny_run(tmp_path / "runs" / f"seed-{seed}", seed)
    out = tmp_path / "r.json"
    result = invoke("--dataset", "sysu", "--data-root", root, "--model", tmp_path / "runs", "--trials", 2,
                    "--save-features", str(tmp_path / "s{seed}.npz"), "--output", out, "-q")
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())
    per_seed = [evaluate_sysu(load_features(tmp_path / f"s{k}.npz"), perm=str(root), trials=2) for k in (1, 2)]
    assert row["repeats"] == 2
    assert row["mAP"] == pytest.approx(np.mean([r["mAP"] for r in per_seed]))
    assert load_features(tmp_path / "s1.npz").query_features.shape[1] == 14336
