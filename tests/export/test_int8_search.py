"""The int8 agreement guard's parts, without quantising: the calibration/held-out split over a
dataset tree, the block of each ONNX conv name, the cosine, and the search's choices against a
model whose per-block cost is known (each quantised block multiplies every image's cosine by a
known factor), so the expected choice is computed by hand.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from mpanet_tf.runtimes.int8_search import (
    MAX_FLOAT32_SHARE, AgreementProbe, block_of, conv_blocks, mean_cosine, search_float32_blocks,
)
from mpanet_tf.runtimes.quantized import split_calibration


def _tree(root: Path, cameras=6, ids=5, images=3) -> list[Path]:
    files = []
    for camera in range(1, cameras + 1):
        for identity in range(1, ids + 1):
            folder = root / f"cam{camera}" / f"{identity:04d}"
            folder.mkdir(parents=True)
            for image in range(1, images + 1):
                path = folder / f"{image:04d}.jpg"
                path.write_bytes(b"")
                files.append(path)
    return files


def test_calibration_and_holdout_are_disjoint_and_cover_every_camera(tmp_path):
    files = _tree(tmp_path)
    calibration, holdout = split_calibration(tmp_path, 12, 18)
    assert len(calibration) == 12 and len(holdout) == 18
    assert not set(calibration) & set(holdout) and set(calibration) | set(holdout) <= set(files)
    cameras = lambda paths: sorted({p.relative_to(tmp_path).parts[0] for p in paths})  # noqa: E731
    everything = [f"cam{c}" for c in range(1, 7)]
    # 12 calibration images: two per camera (cam1 and cam2 are visible, cam3 infrared, ...), each
    # of another identity; the held-out images three per camera
    assert cameras(calibration) == cameras(holdout) == everything
    per_camera = [sum(p.parts[-3] == c for p in calibration) for c in everything]
    assert per_camera == [2] * 6
    assert len({p.parent for p in calibration}) == 12


def test_a_small_folder_keeps_the_calibration_count_and_holds_out_the_rest(tmp_path):
    _tree(tmp_path, cameras=2, ids=2, images=2)  # 8 images
    calibration, holdout = split_calibration(tmp_path, 6, 64)
    assert (len(calibration), len(holdout)) == (6, 2)
    calibration, holdout = split_calibration(tmp_path, 64, 64)
    assert (len(calibration), len(holdout)) == (7, 1)


def test_blocks_are_read_from_the_keras_layer_names():
    assert block_of("mpanet/backbone_1/layer3_2_conv2_1/convolution") == "layer3_2"
    assert block_of("backbone/layer4_0_downsample_0_1/convolution") == "layer4_0"
    assert block_of("backbone/MAM4_1/channel_attention_2_1/convolution") == "MAM4"
    assert block_of("backbone/conv1_1/convolution") == "stem"

    class Node:
        def __init__(self, name, op_type="Conv"):
            self.name, self.op_type = name, op_type

    class Model:
        class graph:  # noqa: N801
            node = [Node("conv1/c"), Node("layer1_0_conv1/c"), Node("relu", "Relu"), Node("layer1_0_conv2/c"),
                    Node("MAM3/channel_attention_0/c"), Node("layer1_1_conv1/c")]

    assert conv_blocks(Model, ["MAM3/channel_attention_0/c"]) == {
        "stem": ["conv1/c"], "layer1_0": ["layer1_0_conv1/c", "layer1_0_conv2/c"], "layer1_1": ["layer1_1_conv1/c"]}


def test_mean_cosine_is_the_row_cosine():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    expected = [float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)) for x, y in zip(a, b)]
    np.testing.assert_allclose(mean_cosine(a, b), expected, rtol=1e-12)
    assert mean_cosine(np.zeros((1, 3)), np.ones((1, 3)))[0] == 0.0


class KnownCosts:
    """A model of known quantisation costs: quantising block ``b`` multiplies every held-out
    image's cosine by ``factors[b]``; ``quantize`` writes the quantised blocks as JSON and the
    probe reads them back, so the search sees only files, as it does with ONNX models."""

    def __init__(self, factors):
        self.factors = factors
        self.blocks = {name: [f"{name}/conv_a", f"{name}/conv_b"] for name in factors}
        self.images = np.zeros((4, 1, 1, 3), np.float32)
        self.trials = 0
        self.calls = []

    def quantize(self, target, nodes, exclude):
        self.calls.append((None if nodes is None else sorted(nodes), sorted(exclude)))
        chosen = [b for b, convs in self.blocks.items()
                  if (nodes is None or set(convs) <= set(nodes)) and not set(convs) & set(exclude)]
        Path(target).write_text(json.dumps(chosen))

    def __call__(self, path):
        self.trials += 1
        cosine = float(np.prod([self.factors[b] for b in json.loads(Path(path).read_text())]))
        return np.full(len(self.images), cosine)


FACTORS = {"stem": 0.999, "layer1_0": 0.998, "layer2_0": 0.97, "layer3_0": 0.99, "layer4_0": 0.95, "MAM4": 0.9995}


def test_a_model_that_meets_the_target_is_quantised_whole(tmp_path):
    model = KnownCosts(FACTORS)
    result = search_float32_blocks(model.quantize, model, model.blocks, 0.9, tmp_path / "out.onnx", tmp_path, False)
    expected = np.prod(list(FACTORS.values()))
    assert expected >= 0.9 and result.met and result.float32_blocks == [] and result.trials == 1
    assert result.mean_cosine == pytest.approx(expected)
    assert sorted(json.loads((tmp_path / "out.onnx").read_text())) == sorted(FACTORS)


def test_the_costliest_blocks_stay_float32_until_the_target_is_met(tmp_path):
    model = KnownCosts(FACTORS)
    result = search_float32_blocks(model.quantize, model, model.blocks, 0.99, tmp_path / "out.onnx", tmp_path, False)
    # by hand: all quantised 0.9091; costs 0.05 (layer4_0) > 0.03 (layer2_0) > 0.01 (layer3_0) > ...;
    # without layer4_0: 0.9569; without layer4_0 and layer2_0: 0.9865 < 0.99; without layer3_0 too: 0.9965
    assert result.float32_blocks == ["layer4_0", "layer2_0", "layer3_0"]
    assert result.met and result.mean_cosine == pytest.approx(0.999 * 0.998 * 0.9995)
    assert result.block_costs == {name: pytest.approx(1 - factor, abs=1e-6) for name, factor in
                                  sorted(FACTORS.items(), key=lambda kv: kv[1])}
    # one whole model, one per block alone, then three exclusions: every file measured once
    assert result.trials == 1 + len(FACTORS) + 3
    assert sorted(json.loads((tmp_path / "out.onnx").read_text())) == ["MAM4", "layer1_0", "stem"]
    assert model.calls[1] == (["stem/conv_a", "stem/conv_b"], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]  # the trial files are gone


def test_a_target_out_of_reach_writes_the_best_model_and_says_so(tmp_path):
    model = KnownCosts(FACTORS)
    limit = int(MAX_FLOAT32_SHARE * len(FACTORS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = search_float32_blocks(model.quantize, model, model.blocks, 0.9999, tmp_path / "out.onnx",
                                       tmp_path, False)
    assert not result.met and len(result.float32_blocks) == limit == 3
    assert result.mean_cosine == pytest.approx(0.999 * 0.998 * 0.9995)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "below --min-cosine 0.9999" in message and "up to 3 of 6 blocks" in message and "\n" not in message
    assert "written with 3 float32 blocks" in message


class WorseWithFloat32Blocks(KnownCosts):
    """Each block alone costs as in :class:`KnownCosts`, but every model with some blocks kept
    float32 measures 0.90, below the whole quantisation's 0.95: the cosine is not monotonic in
    the float32 blocks (measured on a random full-size model: 0.9975 whole, 0.9947 with 9 blocks
    float32)."""

    def __call__(self, path):
        quantised = json.loads(Path(path).read_text())
        if len(quantised) == 1:
            return super().__call__(path)
        self.trials += 1
        return np.full(len(self.images), 0.95 if len(quantised) == len(self.factors) else 0.90)


def test_the_best_model_measured_is_written_when_float32_blocks_make_it_worse(tmp_path):
    model = WorseWithFloat32Blocks(FACTORS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = search_float32_blocks(model.quantize, model, model.blocks, 0.9999, tmp_path / "out.onnx",
                                       tmp_path, False)
    assert result.float32_blocks == [] and not result.met and result.mean_cosine == pytest.approx(0.95)
    assert result.trials == 1 + len(FACTORS) + 3 and list(result.block_costs)[:2] == ["layer4_0", "layer2_0"]
    assert sorted(json.loads((tmp_path / "out.onnx").read_text())) == sorted(FACTORS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx"]
    assert "written with 0 float32 blocks" in str(caught[0].message)


def test_the_probe_compares_against_the_float_model(tmp_path, monkeypatch):
    import mpanet_tf.runtimes.int8_search as search

    outputs = {"float.onnx": np.array([[1.0, 0.0], [0.0, 2.0]]), "int8.onnx": np.array([[1.0, 1.0], [0.0, 3.0]])}
    monkeypatch.setattr(search, "embed_onnx", lambda path, images: outputs[Path(path).name])
    probe = AgreementProbe(tmp_path / "float.onnx", np.zeros((2, 1, 1, 3)))
    np.testing.assert_allclose(probe(tmp_path / "int8.onnx"), [np.sqrt(0.5), 1.0])
    assert probe.trials == 1
