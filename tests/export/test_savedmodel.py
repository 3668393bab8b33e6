"""SavedModel export: TF Serving layout, signature names, serve-time independence from mpanet_tf,
parity with the evaluation path, refusal of existing targets, no partial folder after a failure.

One tiny model (64x32 input, 4 classes) is exported once per module through the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import MPANetConfig
from mpanet_tf.errors import ExportError

TINY_SIZE = (64, 32)


# ------------------------------------------------------------------ helpers (shared by tests/export)
def tiny_config() -> MPANetConfig:
    config = MPANetConfig()
    config.model.image_height, config.model.image_width = TINY_SIZE
    config.model.backbone_weights = "none"
    return config


def write_tiny_run(folder: Path, seed: int = 0):
    """A run folder (config.json, run.json {"num_classes": 4}, model.keras) holding a tiny random
    MPANet (64x32 input). Returns (folder, model)."""
    import keras

    from mpanet_tf.model import build_model

    keras.utils.set_random_seed(seed)
    config = tiny_config()
    model = build_model(config, num_classes=4)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config.to_json())
    (folder / "run.json").write_text(json.dumps({"num_classes": 4}))
    model.save(folder / "model.keras")
    return folder, model


def write_images(folder: Path, sizes=((90, 40), (50, 30), (64, 32), (120, 60), (64, 32)), seed: int = 1,
                 suffixes=(".png",)) -> list[Path]:
    """Distinct generated pictures (random blocks of colour on a random background) of the given
    (height, width) sizes; the second one is greyscale (a 1-channel file)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (height, width) in enumerate(sizes):
        blocks = rng.integers(0, 256, (4, 2, 3), dtype=np.uint8)
        image = np.kron(blocks, np.ones((height // 4 + 1, width // 2 + 1, 1), np.uint8))[:height, :width]
        image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
        picture = Image.fromarray(image)
        if index == 1:
            picture = picture.convert("L")
        path = folder / f"img_{index:02d}{suffixes[index % len(suffixes)]}"
        picture.save(path)
        paths.append(path)
    return paths


def eval_path_embeddings(model, paths) -> np.ndarray:
    """What evaluation computes: model.embed(stack(load_image(path, model.image_size))).

    Compare exports with it at the same batch composition: TF's CPU kernels round differently for
    different batch sizes (~5e-5 on this random network), which is no export discrepancy.
    """
    from mpanet_tf.data.images import load_image

    return model.embed(np.stack([load_image(p, model.image_size) for p in paths]))


def artifact_embeddings(model, paths) -> np.ndarray:
    """What evaluating the exported run folder computes (``load_embedder(run)``: the BN-folded
    graph of :mod:`mpanet_tf.inference`, the graph the exports hold too), at the same batch
    composition. It equals :func:`eval_path_embeddings` up to float rounding
    (tests/test_inference.py)."""
    from mpanet_tf.data.images import load_image
    from mpanet_tf.inference import embedding_function

    return embedding_function(model)(np.stack([load_image(p, model.image_size) for p in paths]))


# ------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mpanet_tf.model import load_model

    root = tmp_path_factory.mktemp("savedmodel")
    run, _ = write_tiny_run(root / "run")
    images = write_images(root / "images")
    output = root / "saved_models" / "tiny"
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--format", "savedmodel",
                                      "--output", str(output)])
    assert result.exit_code == 0, result.output
    return {"root": root, "run": run, "images": images, "output": output, "model": load_model(run)}


SERVE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    folder, arrays, files, out = sys.argv[1:5]
    loaded = tf.saved_model.load(folder)
    report = {"signatures": {}}
    for name, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        report["signatures"][name] = {
            "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in kwargs.items()},
            "outputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in fn.structured_outputs.items()},
        }
    decoded = np.load(arrays)
    names = sorted(decoded.files)
    single = [loaded.signatures["serving_default"](images=tf.constant(decoded[n][None]))["embeddings"].numpy()[0]
              for n in names]
    same_size = np.stack([decoded[n] for n in names if decoded[n].shape == decoded[names[-1]].shape])
    batched = loaded.signatures["serving_default"](images=tf.constant(same_size))["embeddings"].numpy()
    data = [open(p, "rb").read() for p in files.split(",")]
    encoded = loaded.signatures["serve_encoded"](image_bytes=tf.constant(data))["embeddings"].numpy()
    np.savez(out, single=np.stack(single), batched=batched, encoded=encoded)
    report["mpanet_tf_imported"] = any(m == "mpanet_tf" or m.startswith("mpanet_tf.") for m in sys.modules)
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def served(exported):
    """Run the SavedModel in a fresh interpreter that never imports mpanet_tf."""
    from PIL import Image

    root = exported["root"]
    arrays = root / "decoded.npz"
    np.savez(arrays, **{f"img{i:02d}": np.asarray(Image.open(p).convert("RGB"))
                        for i, p in enumerate(exported["images"])})
    script = root / "serve.py"
    script.write_text(SERVE_SCRIPT)
    out = root / "served.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    completed = subprocess.run(
        [sys.executable, str(script), str(exported["output"] / "1"), str(arrays),
         ",".join(str(p) for p in exported["images"]), str(out)],
        capture_output=True, text=True, cwd=root, env=env, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    with np.load(out) as data:
        report["arrays"] = {key: data[key] for key in data.files}
    return report


# ---------------------------------------------------------------------------------------- tests
def test_export_writes_tf_serving_layout(exported):
    version = exported["output"] / "1"
    assert (version / "saved_model.pb").is_file()
    assert (version / "variables").is_dir()
    info = json.loads((version / "mpanet_export.json").read_text())
    assert (info["image_height"], info["image_width"]) == TINY_SIZE
    assert info["embedding_dim"] == 7 * 2048
    # only the version folder (no staging leftovers next to it)
    assert [p.name for p in exported["output"].iterdir()] == ["1"]


def test_savedmodel_stores_each_embedding_weight_once(exported):
    import tensorflow as tf

    model = exported["model"]
    reader = tf.train.load_checkpoint(str(exported["output"] / "1" / "variables" / "variables"))
    stored = [shape for key, shape in reader.get_variable_to_shape_map().items() if key.endswith("VARIABLE_VALUE")]
    # the classifiers are not needed to serve; the backbone's BNs are folded into its convs (one
    # kernel and one bias per conv), MAMs, PAM and the BN neck are stored as they are
    import keras

    convs = [layer for layer in model.backbone.layers if isinstance(layer, keras.layers.Conv2D)]
    mams = [layer for layer in model.backbone.layers if layer.name.startswith("MAM")]
    expected = [tuple(conv.kernel.shape) for conv in convs] + [(conv.filters,) for conv in convs]
    expected = sorted(expected + [tuple(v.shape) for layer in [*mams, model.pam, model.bn_neck]
                                  for v in layer.weights])
    assert sorted(tuple(shape) for shape in stored) == expected


def test_signatures_have_the_documented_names_and_dtypes(served):
    signatures = served["signatures"]
    assert set(signatures) == {"serving_default", "serve_encoded"}
    assert signatures["serving_default"]["inputs"] == {"images": ["uint8", [None, None, None, 3]]}
    assert signatures["serve_encoded"]["inputs"] == {"image_bytes": ["string", [None]]}
    for signature in signatures.values():
        assert signature["outputs"] == {"embeddings": ["float32", [None, 14336]]}


def test_savedmodel_loads_without_mpanet_tf(served):
    assert served["mpanet_tf_imported"] is False


def test_serve_encoded_matches_the_evaluation_path(exported, served):
    expected = artifact_embeddings(exported["model"], exported["images"])
    assert expected.shape == (len(exported["images"]), 14336)
    np.testing.assert_allclose(served["arrays"]["encoded"], expected, rtol=1e-5, atol=1e-5)  # float32 rounding of ~7-magnitude features (graph vs eager: 6e-6 relative)


def test_serving_default_matches_the_evaluation_path(exported, served):
    model, images = exported["model"], exported["images"]
    # one picture per call, each of its own size
    expected = np.concatenate([artifact_embeddings(model, [path]) for path in images])
    np.testing.assert_allclose(served["arrays"]["single"], expected, rtol=1e-5, atol=1e-5)
    # one batch of the two 64x32 pictures (indices 2 and 4)
    expected = artifact_embeddings(model, [images[2], images[4]])
    np.testing.assert_allclose(served["arrays"]["batched"], expected, rtol=1e-5, atol=1e-5)


def test_existing_target_is_refused_without_force(exported):
    pb = exported["output"] / "1" / "saved_model.pb"
    before = pb.stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["export", "--model", str(exported["run"]), "--output",
                                      str(exported["output"])])
    assert result.exit_code == 2
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert str(exported["output"] / "1") in message and "--force" in message
    assert pb.stat().st_mtime_ns == before


def test_failed_export_leaves_no_folder(exported, tmp_path, monkeypatch):
    from mpanet_tf import export
    from mpanet_tf.runtimes import savedmodel

    def broken_writer(model, folder):
        (Path(folder) / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(savedmodel, "write_savedmodel", broken_writer)
    output = tmp_path / "new" / "models" / "tiny"
    with pytest.raises(ExportError, match="disk full"):
        export.export_model(exported["model"], output)
    assert list(tmp_path.iterdir()) == []


def test_failed_forced_export_keeps_the_old_version(exported, tmp_path, monkeypatch):
    from mpanet_tf import export
    from mpanet_tf.runtimes import savedmodel

    old = tmp_path / "tiny" / "1"
    old.mkdir(parents=True)
    (old / "marker").write_text("old export")
    monkeypatch.setattr(savedmodel, "write_savedmodel", lambda model, folder: (Path(folder) / "x").write_text("ok"))

    def broken_onnx(model, path, opset):
        raise ValueError("unsupported op")

    from mpanet_tf.runtimes import onnx as onnx_runtime

    monkeypatch.setattr(onnx_runtime, "write_onnx", broken_onnx)
    with pytest.raises(ExportError, match="ONNX export failed"):
        export.export_model(exported["model"], tmp_path / "tiny", formats="all", force=True)
    # the SavedModel half was not committed either, and nothing else was left behind
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1"]
    assert [p.name for p in old.iterdir()] == ["marker"]


def test_forced_export_replaces_the_old_version(exported, tmp_path, monkeypatch):
    from mpanet_tf import export
    from mpanet_tf.runtimes import savedmodel

    old = tmp_path / "tiny" / "3"
    old.mkdir(parents=True)
    (old / "marker").write_text("old export")
    monkeypatch.setattr(savedmodel, "write_savedmodel", lambda model, folder: (Path(folder) / "new").write_text("ok"))
    written = export.export_model(exported["model"], tmp_path / "tiny", version=3, force=True)
    assert written == {"savedmodel": old}
    assert sorted(p.name for p in old.iterdir()) == ["mpanet_export.json", "new"]
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["3"]


def test_search_with_the_savedmodel_ranks_the_query_first(exported):
    gallery = exported["root"] / "images"
    query = exported["images"][3]
    result = CliRunner().invoke(cli, ["search", "--model", str(exported["output"]), "--query", str(query),
                                      "--gallery", str(gallery), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 3
    assert rows[0][0] == "1" and Path(rows[0][2]) == query and float(rows[0][1]) < 1e-3
    # the printed distances are the Euclidean distances of L2-normalised eval-path embeddings
    features = eval_path_embeddings(exported["model"], exported["images"])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = np.sort(np.linalg.norm(unit - unit[3], axis=1))[:3]
    np.testing.assert_allclose([float(r[1]) for r in rows], expected, atol=2e-4)
