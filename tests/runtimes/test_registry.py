"""The runtime registry: recognition order of artifact paths, export format resolution, and a
toy runtime defined only in the tests (tests/runtimes/toy_runtime.py) that ``export``,
``load_embedder``, ``search`` and ``eval --model`` accept without any other change."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.errors import ExportError
from mpanet_tf.runtimes import find_runtime, format_names, resolve_formats


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_paths_are_recognised_in_order(tmp_path):
    base = tmp_path / "saved_models" / "m"
    touch(base / "onnx" / "1" / "model.onnx")
    touch(base / "onnx" / "3" / "model.onnx")
    runtime, found = find_runtime(base)
    assert runtime.name == "onnx" and found == base / "onnx" / "3" / "model.onnx"  # the highest version
    touch(base / "2" / "saved_model.pb")
    runtime, found = find_runtime(base)  # a SavedModel beside the ONNX files wins, as TF Serving's layout
    assert runtime.name == "savedmodel" and found == base / "2"
    loose = touch(tmp_path / "other.onnx")
    assert find_runtime(loose) == (find_runtime(loose)[0], loose) and find_runtime(loose)[0].name == "onnx"
    run = tmp_path / "run"
    touch(run / "config.json", b"{}")
    touch(run / "onnx" / "1" / "model.onnx")  # a run folder is never read as an export folder
    assert find_runtime(run)[0].name == "keras"
    assert find_runtime(touch(tmp_path / "m.keras"))[0].name == "keras"
    assert find_runtime(tmp_path / "missing")[0].name == "keras"  # the fallback names what is missing


def test_formats_resolve_from_the_registry():
    assert format_names()[:2] == ["savedmodel", "onnx"]
    assert [r.name for r in resolve_formats("all")] == format_names()
    assert [r.name for r in resolve_formats(("onnx", "onnx", "savedmodel"))] == ["onnx", "savedmodel"]
    with pytest.raises(ExportError, match="unknown export format 'tflite'"):
        resolve_formats("tflite")
    with pytest.raises(ExportError, match="cannot be exported"):
        resolve_formats("keras")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from mpanet_tf.data.synthetic import generate_sysu
    from tests.export.test_savedmodel import write_images, write_tiny_run
    from tests.runtimes import toy_runtime

    root = tmp_path_factory.mktemp("toy")
    run, model = write_tiny_run(root / "run", seed=8)
    output = root / "saved_models" / "tiny"
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--format", "toy", "--output", str(output)])
    images = write_images(root / "gallery", seed=9)
    sysu = generate_sysu(root / "SYSU-MM01", ids=6, images_per_camera=1, size=(32, 16))
    yield {"result": result, "run": run, "model": model, "output": output, "images": images, "root": root,
           "sysu": sysu}
    toy_runtime.remove()


def test_toy_runtime_is_exported(toy):
    assert toy["result"].exit_code == 0, toy["result"].output
    written = toy["output"] / "toy" / "1" / "toy.keras"
    assert toy["result"].output.strip() == f"toy: {written}"
    info = json.loads((written.parent / "mpanet_export.json").read_text())
    assert info["format"] == "toy" and info["toy_version"] == 1 and info["embedding_dim"] == 14336
    assert sorted(p.name for p in toy["output"].iterdir()) == ["toy"]


def test_toy_runtime_loads_through_load_embedder(toy):
    from mpanet_tf.data.images import load_image
    from mpanet_tf.runtimes.embedder import load_embedder

    embedder = load_embedder(toy["output"])
    assert embedder.kind == "toy" and embedder.source == toy["output"] / "toy" / "1" / "toy.keras"
    batch = np.stack([load_image(p, toy["model"].image_size) for p in toy["images"]])
    np.testing.assert_allclose(embedder(batch), toy["model"].embed(batch), rtol=1e-5, atol=1e-5)


def test_toy_runtime_is_searched(toy):
    query = toy["images"][2]
    result = CliRunner().invoke(cli, ["search", "--model", str(toy["output"]), "--query", str(query),
                                      "--gallery", str(toy["root"] / "gallery"), "--top-k", "2"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][2] == str(query) and float(rows[0][1]) < 1e-3


def test_toy_runtime_is_evaluated(toy, tmp_path):
    from mpanet_tf.data.images import load_image
    from mpanet_tf.data.sysu import SYSUDataset
    from mpanet_tf.eval.features import load_features

    features = tmp_path / "f.npz"
    result = CliRunner().invoke(cli, ["eval", "--dataset", "sysu", "--data-root", str(toy["sysu"]), "--model",
                                      str(toy["output"]), "--save-features", str(features), "--trials", "1", "-q"])
    assert result.exit_code == 0, result.output
    saved = load_features(features)
    records = SYSUDataset(toy["sysu"]).query_records()
    expected = toy["model"].embed(np.stack([load_image(r.path, toy["model"].image_size)
                                            for r in records]))
    np.testing.assert_allclose(saved.query_features, expected, rtol=1e-4, atol=1e-4)
