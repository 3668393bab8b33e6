"""Shared fixtures of the visualisation tests: one tiny model saved as a run folder, small synthetic trees.

Everything is built once per session: the model is a full MPANet at 64x32 input (4x2 pattern
maps) with random weights and 4 classes, which is all the pictures need.
"""

from __future__ import annotations

import json

import pytest

IMAGE_SIZE = (64, 32)


@pytest.fixture(scope="session")
def tiny_config():
    from mpanet_tf.config import MPANetConfig

    config = MPANetConfig()
    config.model.image_height, config.model.image_width = IMAGE_SIZE
    config.model.backbone_weights = "none"
    return config


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    from mpanet_tf.model import build_model

    return build_model(tiny_config, num_classes=4)


@pytest.fixture(scope="session")
def tiny_run(tiny_model, tiny_config, tmp_path_factory):
    """A run folder: config.json, run.json, model.keras (no history.json)."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    (run / "config.json").write_text(tiny_config.to_json(), encoding="utf-8")
    (run / "run.json").write_text(json.dumps({"num_classes": 4}), encoding="utf-8")
    tiny_model.save(run / "model.keras")
    return run


@pytest.fixture(scope="session")
def sysu_tree(tmp_path_factory):
    from mpanet_tf.data.synthetic import generate_sysu

    return generate_sysu(tmp_path_factory.mktemp("sysu"), ids=10, images_per_camera=2, seed=3, size=IMAGE_SIZE)


@pytest.fixture(scope="session")
def regdb_tree(tmp_path_factory):
    from mpanet_tf.data.synthetic import generate_regdb

    return generate_regdb(tmp_path_factory.mktemp("regdb"), ids=6, images_per_modality=3, seed=3, size=IMAGE_SIZE)
