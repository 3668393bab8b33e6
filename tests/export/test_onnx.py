"""ONNX export: file layout, opset, input/output names and shapes, parity with the Keras model under
ONNX Runtime (max |difference| <= 1e-5 of the embedding scale on real image files), search through
the ONNX file.

One tiny model (64x32 input) is converted once per module through the CLI (the slow part).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from tests.export.test_savedmodel import TINY_SIZE, artifact_embeddings, write_images, write_tiny_run


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from mpanet_tf.model import load_model

    root = tmp_path_factory.mktemp("onnx")
    run, _ = write_tiny_run(root / "run", seed=3)
    images = write_images(root / "images", seed=4, suffixes=(".png", ".jpg", ".bmp"))
    output = root / "saved_models" / "tiny"
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--format", "onnx", "--output", str(output),
                                      "--version", "2"])
    assert result.exit_code == 0, result.output
    return {"root": root, "run": run, "images": images, "output": output, "model": load_model(run),
            "onnx": output / "onnx" / "2" / "model.onnx"}


def test_layout_and_export_info(converted):
    assert converted["onnx"].is_file()
    assert sorted(p.name for p in converted["output"].iterdir()) == ["onnx"]  # no SavedModel was asked for
    info = json.loads((converted["onnx"].parent / "mpanet_export.json").read_text())
    assert info["format"] == "onnx" and info["opset"] == 17 and info["version"] == 2
    assert (info["image_height"], info["image_width"]) == TINY_SIZE


def test_graph_names_shapes_and_opset(converted):
    import onnx

    model = onnx.load(str(converted["onnx"]))
    onnx.checker.check_model(model)
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == 17
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    assert graph_input.name == "images" and graph_output.name == "embeddings"
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_value or None for d in graph_input.type.tensor_type.shape.dim]
    assert dims == [None, *TINY_SIZE, 3]
    assert [d.dim_value or None for d in graph_output.type.tensor_type.shape.dim] == [None, 7 * 2048]


def test_onnx_runtime_matches_keras_on_image_files(converted):
    from mpanet_tf.data.images import load_image
    from mpanet_tf.runtimes.onnx import onnx_embedder, onnx_session

    model, images = converted["model"], converted["images"]
    batch = np.stack([load_image(p, model.image_size) for p in images])
    expected = artifact_embeddings(model, images)  # the folded graph the file was converted from
    got = onnx_embedder(onnx_session(converted["onnx"]))(batch)
    assert got.shape == expected.shape == (len(images), 14336)
    # float32 rounding of a 50-conv network, relative to the embedding scale (~30 here): TF and
    # ONNX Runtime differ by ~5e-6 of it (up to ~1.4e-4 absolute on random images), and TF differs
    # as much from itself across batch sizes or graph vs eager (tests/test_inference.py)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-5 * scale
    assert np.linalg.norm(got - expected) <= 1e-5 * np.linalg.norm(expected)
    # a single image too (dynamic batch axis)
    single = artifact_embeddings(model, images[:1])
    np.testing.assert_allclose(onnx_embedder(onnx_session(converted["onnx"]))(batch[:1]), single, rtol=0,
                               atol=1e-5 * np.abs(single).max())


def test_search_with_the_onnx_export(converted):
    from mpanet_tf.search import search

    query = converted["images"][1]
    for model_path in (converted["onnx"], converted["output"]):  # the file, or the base folder
        result = search(model_path, query, converted["root"] / "images")
        assert result.paths[0] == query and result.distances[0] < 1e-3
        assert sorted(result.paths) == sorted(converted["images"])
