"""Issue 13, done-when: a SavedModel client that decodes with PIL gets the evaluation's embedding.

Feeding ``serving_default`` the PIL-decoded pixels of a file (any size: the signature resizes in
the graph) gives the embedding ``mpanet-tf eval --save-features`` wrote for that file, to 1e-4
relative after L2 normalisation, for SYSU-layout JPEGs (colour and infrared) and RegDB-layout BMPs
(24-bit visible, 8-bit thermal), none of them at the model's 64x32. ``serve_encoded`` (decoding
in the graph) gives the same.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mpanet_tf.cli.main import cli
from tests.export.test_savedmodel import write_tiny_run


def normalised(features):
    features = np.asarray(features, np.float64)
    return features / np.linalg.norm(features, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import tensorflow as tf

    from mpanet_tf.export import export_model

    base = tmp_path_factory.mktemp("pixel_exact")
    run, _ = write_tiny_run(base / "run")
    folder = export_model(str(run), base / "saved")["savedmodel"]
    return base, run, tf.saved_model.load(str(folder))


def saved_features(run, dataset, root, out, *extra):
    from mpanet_tf.eval.features import load_features

    result = CliRunner().invoke(cli, ["eval", "--dataset", dataset, "--data-root", str(root), "--model", str(run),
                                      "--save-features", str(out), "-q", *extra])
    assert result.exit_code == 0, result.output
    features = load_features(out)
    paths = [*features.query_paths.tolist(), *features.gallery_paths.tolist()]
    return dict(zip(paths, np.concatenate([features.query_features, features.gallery_features])))


def check_files(loaded, root, by_path, relpaths):
    import tensorflow as tf

    for relpath in relpaths:
        path = root / relpath
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape[:2] != (64, 32)
        default = loaded.signatures["serving_default"](images=tf.constant(pixels[None]))["embeddings"].numpy()[0]
        encoded = loaded.signatures["serve_encoded"](
            image_bytes=tf.constant([path.read_bytes()]))["embeddings"].numpy()[0]
        expected = normalised(by_path[relpath])
        assert np.linalg.norm(normalised(default) - expected) <= 1e-4, relpath
        assert np.linalg.norm(normalised(encoded) - expected) <= 1e-4, relpath


def test_pil_pixels_through_serving_default_equal_eval_features_for_sysu_jpegs(served):
    from mpanet_tf.data.synthetic import generate_sysu

    base, run, loaded = served
    root = generate_sysu(base / "SYSU-MM01", ids=6, images_per_camera=1, size=(75, 29))
    by_path = saved_features(run, "sysu", root, base / "sysu.npz", "--trials", "1")
    infrared = [p for p in by_path if p.startswith(("cam3", "cam6"))][:2]
    visible = [p for p in by_path if not p.startswith(("cam3", "cam6"))][:2]
    assert infrared and visible and all(p.endswith(".jpg") for p in infrared + visible)
    check_files(loaded, root, by_path, infrared + visible)


def test_pil_pixels_through_serving_default_equal_eval_features_for_regdb_bmps(served):
    from mpanet_tf.data.synthetic import generate_regdb

    base, run, loaded = served
    root = generate_regdb(base / "RegDB", ids=4, images_per_modality=1, size=(50, 22))
    for path in sorted((root / "Thermal").rglob("*.bmp")):
        with Image.open(path) as image:
            grey = image.convert("L")
        grey.save(path)  # 8-bit palette BMP, as RegDB's thermal images are
    by_path = saved_features(run, "regdb", root, base / "regdb.npz", "--trial", "1")
    thermal = [p for p in by_path if p.startswith("Thermal")][:2]
    visible = [p for p in by_path if p.startswith("Visible")][:2]
    assert thermal and visible
    with Image.open(root / thermal[0]) as image:
        assert image.mode == "L" and image.format == "BMP"
    check_files(loaded, root, by_path, thermal + visible)
