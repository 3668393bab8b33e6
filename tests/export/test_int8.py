"""int8 export (ONNX Runtime QDQ, per-channel weights): layout, quantised graph, parity with the
float model on real (synthetic-drawn) images by cosine, and loading everywhere a model is
accepted (load_embedder, search, eval --model); option errors are one line, exit 2.

One tiny model (64x32) is exported once per module through the CLI, calibrated on a drawn SYSU
tree, with ``--min-cosine 0`` (every block quantised, the agreement only measured); the guard
itself (``--min-cosine`` above what the whole quantisation reaches) is exported once more.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from tests.export.test_savedmodel import TINY_SIZE, artifact_embeddings, write_tiny_run


def calibrate_bn_neck(model, paths):
    """Set the BN neck's moving statistics to the pre-neck features' mean and variance on ``paths``,
    as training leaves them. A random network's raw features share one dominant direction (every
    pair of images has cosine ~0.99), which would hide any quantisation error; the neck of a
    trained model removes it, and so does this."""
    from mpanet_tf.data.images import load_image

    features = np.asarray(model.forward(np.stack([load_image(p, model.image_size) for p in paths]))["features"],
                          np.float64)
    model.bn_neck.moving_mean.assign(features.mean(axis=0).astype("float32"))
    model.bn_neck.moving_variance.assign(features.var(axis=0).astype("float32"))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from mpanet_tf.data.synthetic import generate_sysu
    from mpanet_tf.model import load_model
    from mpanet_tf.data.image_files import find_images

    root = tmp_path_factory.mktemp("int8")
    run, model = write_tiny_run(root / "run", seed=11)
    tree = generate_sysu(root / "SYSU-MM01", ids=6, images_per_camera=2, size=TINY_SIZE)
    calibrate_bn_neck(model, find_images(tree))
    model.save(run / "model.keras")
    output = root / "saved_models" / "tiny"
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--format", "onnx", "--quantize", "int8",
                                      "--calibration", str(tree), "--calibration-images", "24",
                                      "--min-cosine", "0", "--output", str(output)])
    assert result.exit_code == 0, result.output
    return {"root": root, "run": run, "tree": tree, "output": output, "model": load_model(run),
            "int8": output / "int8" / "1" / "model.onnx", "onnx": output / "onnx" / "1" / "model.onnx",
            "images": find_images(tree), "printed": result.output}


def test_layout_export_info_and_quantised_graph(quantized):
    import onnx

    assert quantized["printed"].splitlines() == [f"onnx: {quantized['onnx']}", f"int8: {quantized['int8']}"]
    info = json.loads((quantized["int8"].parent / "mpanet_export.json").read_text())
    assert info["format"] == "int8" and (info["image_height"], info["image_width"]) == TINY_SIZE
    assert info["quantization"]["calibration_images"] == 24
    assert info["quantization"]["holdout_images"] == len(quantized["images"]) - 24
    assert info["quantization"]["float32_blocks"] == [] and info["quantization"]["min_cosine_met"]
    graph = onnx.load(str(quantized["int8"])).graph
    assert graph.input[0].name == "images" and graph.output[0].name == "embeddings"
    ops = [node.op_type for node in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    # the convolutions left in float32 are the ones whose input a float op also reads: PAM's mask
    # conv (its input F is pooled into the embedding), and MAM's first channel-attention conv
    # where the converter shares its pooled input with MAM's normalisation (the full-size graph)
    kept = info["quantization"]["float32_convolutions"]
    assert sum("pam" in name and "spatial_attention" in name for name in kept) == 1
    assert all("pam" in name or "channel_attention_0" in name for name in kept)
    convs = [node for node in graph.node if node.op_type == "Conv" and node.name not in kept]
    assert len(convs) + len(kept) == 58  # ResNet-50's 53, two per MAM, PAM's one
    # a rounded activation (a conv's input or output) is read by convolutions, residual additions
    # and activation functions only, never by a pooling, product or normalisation: PAM's pooling
    # once read the rounded final feature map, and the embedding's mean cosine to float32 was 0.69
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] not in initializers:
            got = {reader.op_type for reader in readers.get(node.output[0], [])}
            assert got <= {"Conv", "Add", "Relu", "Sigmoid"}, (node.name, got)
    # every quantised conv weight is an int8 tensor with one scale per output channel (per channel)
    weight_dequant = [producers[conv.input[1]] for conv in convs]
    assert all(node.op_type == "DequantizeLinear" for node in weight_dequant)
    for node in weight_dequant:
        weight, scale = initializers[node.input[0]], initializers[node.input[1]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == [weight.dims[0]]
    # smaller than the float file: int8 weights
    assert quantized["int8"].stat().st_size < 0.4 * quantized["onnx"].stat().st_size


def test_int8_embeddings_match_the_float_model_by_cosine(quantized):
    """Every int8 embedding is nearer (cosine) to its own image's float32 embedding than to any
    other image's, and the mean cosine is above 0.75. The issue's cosine >= 0.99 is a target for a
    trained model (benchmarks/int8_speed.py measures it): a random network barely separates images
    (inter-image cosine ~0 after the neck), so its int8 noise weighs more; this model measured a
    mean of 0.84, and 0.27 when PAM's pooling read the rounded feature map."""
    from mpanet_tf.data.images import load_image
    from mpanet_tf.runtimes.embedder import load_embedder

    model, paths = quantized["model"], quantized["images"]
    embedder = load_embedder(quantized["int8"])
    assert embedder.kind == "int8" and embedder.image_size == TINY_SIZE
    batch = np.stack([load_image(p, model.image_size) for p in paths])
    got = embedder(batch)
    expected = artifact_embeddings(model, paths)
    assert got.shape == expected.shape == (len(paths), 14336)
    unit_got = got / np.linalg.norm(got, axis=1, keepdims=True)
    unit_expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    similarity = unit_got @ unit_expected.T  # (N, N): int8 image i vs float image j
    same = np.diag(similarity).copy()
    assert same.min() > 0 and same.mean() > 0.75
    np.fill_diagonal(similarity, -np.inf)
    assert (same > similarity.max(axis=1)).all()


def test_int8_is_recognised_by_file_and_by_export_folder(quantized, tmp_path):
    from mpanet_tf.runtimes.embedder import load_embedder

    # the base folder prefers the float ONNX export beside it
    assert load_embedder(quantized["output"]).kind == "onnx"
    only = tmp_path / "only_int8"
    shutil.copytree(quantized["int8"].parent, only / "int8" / "3")
    embedder = load_embedder(only)
    assert embedder.kind == "int8" and embedder.source == only / "int8" / "3" / "model.onnx"


def test_search_and_eval_accept_the_int8_model(quantized, tmp_path):
    from mpanet_tf.data.images import load_image
    from mpanet_tf.data.sysu import SYSUDataset
    from mpanet_tf.runtimes.embedder import load_embedder
    from mpanet_tf.eval.features import load_features

    query = quantized["images"][5]
    result = CliRunner().invoke(cli, ["search", "--model", str(quantized["int8"]), "--query", str(query),
                                      "--gallery", str(quantized["tree"] / "cam1"), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][2] == str(query) and float(rows[0][1]) < 1e-3

    features = tmp_path / "f.npz"
    result = CliRunner().invoke(cli, ["eval", "--dataset", "sysu", "--data-root", str(quantized["tree"]),
                                      "--model", str(quantized["int8"]), "--save-features", str(features),
                                      "--trials", "1", "-q"])
    assert result.exit_code == 0, result.output
    records = SYSUDataset(quantized["tree"]).query_records()
    direct = load_embedder(quantized["int8"])(np.stack([load_image(r.path, TINY_SIZE) for r in records]))
    np.testing.assert_allclose(load_features(features).query_features, direct, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra, message", [
    ([], "--quantize int8 needs --calibration"),
    (["--calibration", "{missing}"], "calibration folder"),
    (["--calibration", "{tree}", "--min-cosine", "1.5"], "--min-cosine must be between 0 and 1"),
])
def test_quantize_option_errors_are_one_line(quantized, tmp_path, extra, message):
    extra = [arg.format(missing=tmp_path / "missing", tree=quantized["tree"]) for arg in extra]
    output = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--model", str(quantized["run"]), "--quantize", "int8",
                                      "--output", str(output), *extra])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and message in result.output
    assert not output.exists()


def test_calibration_without_quantize_is_refused(quantized, tmp_path):
    result = CliRunner().invoke(cli, ["export", "--model", str(quantized["run"]), "--calibration",
                                      str(quantized["tree"]), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: --calibration only applies with --quantize int8; add it or drop "
                                     "--calibration")


def held_out_cosines(quantized, int8_path, info) -> np.ndarray:
    """The cosine of each held-out image's int8 embedding to its float32 one, measured here
    independently of the export: both ONNX files loaded as ``search`` loads them."""
    from mpanet_tf.data.images import load_image
    from mpanet_tf.runtimes.embedder import load_embedder

    paths = [quantized["tree"] / p for p in info["holdout"]]
    batch = np.stack([load_image(p, TINY_SIZE) for p in paths]).astype(np.float32)
    got = np.asarray(load_embedder(int8_path)(batch), np.float64)
    expected = np.asarray(load_embedder(quantized["onnx"])(batch), np.float64)
    return np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)


def test_the_reported_agreement_is_measured_on_images_not_calibrated_on(quantized):
    info = json.loads((quantized["int8"].parent / "mpanet_export.json").read_text())["quantization"]
    holdout = [quantized["tree"] / p for p in info["holdout"]]
    assert len(holdout) == info["holdout_images"] == len(set(holdout)) and set(holdout) <= set(quantized["images"])
    # the calibration images are the first 24 of the same round-robin draw: none is held out
    from mpanet_tf.runtimes.quantized import split_calibration

    calibration, again = split_calibration(quantized["tree"], 24, None)
    assert again == holdout and not set(calibration) & set(holdout)
    # both modalities (cam3/cam6 infrared) in both sets
    assert {p.relative_to(quantized["tree"]).parts[0] for p in holdout} == {f"cam{c}" for c in range(1, 7)}
    cosines = held_out_cosines(quantized, quantized["int8"], info)
    assert info["mean_cosine"] == pytest.approx(cosines.mean(), abs=2e-6)
    assert info["worst_cosine"] == pytest.approx(cosines.min(), abs=2e-6)


def test_the_guard_keeps_the_costliest_blocks_float32_until_the_target(quantized, tmp_path):
    """A model whose whole quantisation falls short of the target: the export keeps blocks in
    float32 until the held-out mean cosine reaches it, reports the figure an independent run
    measures, and the kept blocks' convolutions really are float32 in the written graph."""
    import onnx

    from mpanet_tf.export import export_model
    from mpanet_tf.runtimes.int8_search import block_of

    whole = json.loads((quantized["int8"].parent / "mpanet_export.json").read_text())["quantization"]
    target = round(whole["mean_cosine"] + 0.4 * (1 - whole["mean_cosine"]), 4)
    written = export_model(quantized["model"], tmp_path / "guarded", formats=("int8",), calibration=quantized["tree"],
                           calibration_images=24, min_cosine=target)
    info = json.loads((written["int8"].parent / "mpanet_export.json").read_text())["quantization"]
    assert info["min_cosine"] == target and info["min_cosine_met"], info
    assert info["mean_cosine"] >= target > whole["mean_cosine"]
    costs = info["block_costs"]
    kept = info["float32_blocks"]
    assert kept and kept == sorted(costs, key=lambda b: -costs[b])[:len(kept)]  # costliest first
    cosines = held_out_cosines(quantized, written["int8"], info)
    assert info["mean_cosine"] == pytest.approx(cosines.mean(), abs=2e-6)

    graph = onnx.load(str(written["int8"])).graph
    producers = {out: node for node in graph.node for out in node.output}
    float_weight = {node.name: producers.get(node.input[1]) is None or producers[node.input[1]].op_type != "DequantizeLinear"
                    for node in graph.node if node.op_type == "Conv"}
    for name, is_float in float_weight.items():
        if block_of(name) in kept:
            assert is_float, name
    assert sum(not f for f in float_weight.values()) > 0  # the rest is still int8
