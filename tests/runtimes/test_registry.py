"""The runtime registry: recognition order of artifact paths, export format and option resolution,
third-party runtimes (entry points, ``MPANET_TF_RUNTIMES``), and a toy runtime defined only in the
tests (tests/runtimes/toy_runtime.py) with its own export option and a sidecar file, which
``export``, ``load_embedder``, ``search``, ``eval --model`` and ``index build`` accept without any
other change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--format", "toy", "--output", str(output),
                                      "--toy-note", "hello"])
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
    assert info["toy_note"] == "hello" and json.loads((written.parent / "toy.json").read_text()) == {"note": "hello"}
    assert sorted(p.name for p in toy["output"].iterdir()) == ["toy"]


def test_toy_option_is_in_export_help_and_refused_without_the_toy(toy, tmp_path):
    help_text = CliRunner().invoke(cli, ["export", "--help"]).output
    assert "--toy-note" in help_text and "--opset" in help_text and "--calibration-images" in help_text
    output = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--model", str(toy["run"]), "--format", "onnx", "--output",
                                      str(output), "--toy-note", "hello"])
    assert result.exit_code == 2 and not output.exists()
    assert result.output.strip() == "Error: --toy-note only applies with --format toy; add it or drop --toy-note"
    result = CliRunner().invoke(cli, ["export", "--model", str(toy["run"]), "--format", "toy", "--output",
                                      str(output), "--toy-note", " "])
    assert result.exit_code == 2 and "--toy-note is empty" in result.output and not output.exists()


def test_toy_artifact_files_are_fingerprinted(toy, tmp_path):
    """The index built with the toy model refuses it once its sidecar changes: the fingerprint
    covers the files the runtime lists, not only the one ``find`` returns."""
    from mpanet_tf.index.fingerprint import artifact_files

    written = toy["output"] / "toy" / "1"
    assert artifact_files(toy["output"]) == [("", written / "toy.keras"), ("toy.json", written / "toy.json")]
    index = tmp_path / "gallery.mpidx"
    result = CliRunner().invoke(cli, ["index", "build", "--model", str(toy["output"]), "--images",
                                      str(toy["root"] / "gallery"), "--output", str(index), "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    query = toy["images"][1]
    search = ["search", "--model", str(toy["output"]), "--query", str(query), "--index", str(index), "--top-k", "1"]
    result = CliRunner().invoke(cli, search)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][2] == str(query) and float(rows[0][1]) < 1e-3
    note = written / "toy.json"
    original = note.read_text()
    try:
        note.write_text(json.dumps({"note": "changed"}))
        result = CliRunner().invoke(cli, search)
    finally:
        note.write_text(original)
    assert result.exit_code == 2 and "was built by another model" in result.output


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


# ------------------------------------------------------------------ export options
def test_declared_options_resolve_per_runtime():
    from mpanet_tf.runtimes.registry import resolve_options

    onnx, int8 = resolve_formats(("onnx", "int8"))
    options = resolve_options([onnx, int8], 3, {"opset": 15, "calibration": "images", "calibration_images": None})
    assert options.version == 3 and options["opset"] == 15 and options["calibration"] == "images"
    assert options["calibration_images"] is None and options["no_such_option"] is None
    assert resolve_options([onnx], 1, {"opset": None, "calibration": None})["calibration"] is None
    with pytest.raises(ExportError, match=r"^--calibration only applies with --quantize int8; add it or drop"):
        resolve_options([onnx], 1, {"calibration": "images"})
    with pytest.raises(ExportError, match=r"^--opset only applies with --format onnx or --quantize int8;"):
        resolve_options(resolve_formats("savedmodel"), 1, {"opset": 13})
    with pytest.raises(ExportError, match="unknown export option 'opsett'"):
        resolve_options([onnx], 1, {"opsett": 13})


def test_onnx_artifact_files_include_external_data(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mpanet_tf.index.fingerprint import artifact_files

    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [weight])
    path = tmp_path / "export" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(helper.make_model(graph), str(path), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    assert artifact_files(path) == [("", path), ("weights.bin", path.parent / "weights.bin")]


# ------------------------------------------------------------------ third-party runtimes
REPO = Path(__file__).resolve().parents[2]
LIST_RUNTIMES = "from mpanet_tf.runtimes import format_names; print(format_names())"


def python(code: str, pythonpath=(), **env) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "MPANET_TF_RUNTIMES"}
    environment.update(PYTHONPATH=os.pathsep.join([*map(str, pythonpath), str(REPO)]), **env)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True)


def test_an_entry_point_registers_a_third_party_runtime(tmp_path):
    """An installed package declaring ``[project.entry-points."mpanet_tf.runtimes"]`` (here a bare
    ``.dist-info`` on the path) brings its runtime, its ``--format`` name and its export option."""
    assert "toy" not in python(LIST_RUNTIMES).stdout
    dist = tmp_path / "toy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mpanet_tf.runtimes]\ntoy = tests.runtimes.toy_runtime\n")
    result = python(LIST_RUNTIMES + "\nfrom mpanet_tf.runtimes import export_options\n"
                    "print([o.dest for o in export_options()])", pythonpath=[tmp_path])
    assert result.returncode == 0, result.stderr
    names, dests = result.stdout.splitlines()
    assert "'toy'" in names and "'toy_note'" in dests


def test_the_environment_variable_registers_a_runtime():
    result = python(LIST_RUNTIMES, MPANET_TF_RUNTIMES="tests.runtimes.toy_runtime")
    assert result.returncode == 0 and "'toy'" in result.stdout, result.stderr
    result = python(LIST_RUNTIMES, MPANET_TF_RUNTIMES="tests.runtimes.no_such_module")
    assert result.returncode != 0
    assert "MPANET_TF_RUNTIMES names module 'tests.runtimes.no_such_module'" in result.stderr.splitlines()[-1]
