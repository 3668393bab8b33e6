"""Fixtures of the training tests: one small synthetic SYSU-MM01 tree per session."""

from __future__ import annotations

import pytest

from tests.training.support import IMAGE_SIZE


@pytest.fixture(scope="session")
def sysu_root(tmp_path_factory):
    """A synthetic SYSU-MM01 tree: 12 ids (about 7 train, 1 val, 4 test), 3 images per camera,
    64x32, with exp/rand_perm_cam.mat."""
    from mpanet_tf.data.synthetic import generate_sysu

    return generate_sysu(tmp_path_factory.mktemp("sysu") / "SYSU-MM01", ids=12, images_per_camera=3, seed=0,
                         size=IMAGE_SIZE)
