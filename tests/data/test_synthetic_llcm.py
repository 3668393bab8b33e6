"""Synthetic LLCM tree: the exact layout, determinism, night-like visible and grey infrared images."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from mpanet_tf.data.llcm import LLCMDataset
from mpanet_tf.data.synthetic_draw import random_look, random_pose, render_person
from mpanet_tf.data.synthetic_llcm import NIGHT_CAST, generate_llcm, night_visible
from mpanet_tf.errors import ConfigError

ARGS = {"ids": 9, "images_per_camera": 1, "size": (64, 32)}


def tree_bytes(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def llcm(tmp_path_factory):
    return generate_llcm(tmp_path_factory.mktemp("synth") / "LLCM", seed=2, **ARGS)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, llcm):
    again = generate_llcm(tmp_path / "again", seed=2, **ARGS)
    assert tree_bytes(again) == tree_bytes(llcm)
    other = generate_llcm(tmp_path / "other", seed=5, **ARGS)
    assert tree_bytes(other) != tree_bytes(llcm)


def test_layout_is_llcm_and_the_reader_counts_the_files(llcm):
    test_ids = [int(t) for t in (llcm / "idx" / "test_id.txt").read_text().strip().split(",")]
    assert len(test_ids) == 3 and (llcm / "idx" / "test_id.txt").read_text().count("\n") == 1
    assert not list(llcm.glob("test_nir/cam3/*"))
    for path in llcm.glob("test_*/cam*/*/*.jpg"):
        assert int(path.parent.name) in test_ids and len(path.parent.name) == 4
        assert path.name.startswith(f"{path.parent.name}_c{int(path.parent.parent.name[3:]):02d}_")
    train_lines = {tag: (llcm / "idx" / f"train_{tag}.txt").read_text().splitlines() for tag in ("vis", "nir")}
    for tag, lines in train_lines.items():
        for line in lines:
            relpath, label = line.rsplit(" ", 1)
            assert relpath.startswith(f"{tag}/") and relpath.endswith(f"_{tag}.jpg") and (llcm / relpath).is_file()
    data = LLCMDataset(llcm)
    counts = data.counts()
    assert counts == {
        "train_ids": 6, "train_visible": len(train_lines["vis"]), "train_infrared": len(train_lines["nir"]),
        "test_ids": 3, "test_visible": len(list(llcm.glob("test_vis/*/*/*.jpg"))),
        "test_infrared": len(list(llcm.glob("test_nir/*/*/*.jpg")))}
    train = data.train_records()
    assert sorted({r.label for r in train}) == list(range(6))
    assert all({r.infrared for r in train if r.label == label} == {False, True} for label in range(6))
    assert not {r.person_id for r in data.test_visible()} & {int(line.split("/")[1]) for line in train_lines["vis"]}
    cameras = {(r.person_id, r.camera) for r in data.test_visible()}
    assert len({pid for pid, _ in cameras}) == 3 and len(cameras) >= 6        # every id in >= 2 cameras
    assert len({cam for _, cam in cameras}) > 2


def test_visible_is_coloured_and_infrared_grey(llcm):
    for path in list(llcm.glob("test_nir/*/*/*.jpg"))[:4]:
        pixels = np.asarray(Image.open(path)).astype(int)
        assert np.abs(pixels[..., 0] - pixels[..., 1]).mean() < 2
    colour = [np.abs(np.diff(np.asarray(Image.open(p)).astype(int), axis=-1)).mean()
              for p in list(llcm.glob("test_vis/*/*/*.jpg"))[:4]]
    assert min(colour) > 3


def test_night_visible_is_dark_low_contrast_noisy_and_cast():
    rng = np.random.default_rng(0)
    look = random_look(np.random.default_rng(4))
    day = render_person(look, random_pose(rng), 2, (64, 32), rng)
    for camera in (1, 2):
        night = night_visible(day, camera, np.random.default_rng(7)).astype(np.float64)
        assert night.mean() < 0.6 * day.mean()                                  # dark
        assert night.std() < 0.7 * day.std()                                    # low contrast
        cast = np.asarray(NIGHT_CAST[camera])
        ratio = night[..., 0].mean() / night[..., 2].mean()
        day_ratio = day[..., 0].mean() / day[..., 2].mean()
        assert (ratio / day_ratio > 1.1) == (cast[0] / cast[2] > 1.1)           # the camera's cast
    # noise: neighbour differences of a flat grey patch
    flat = np.full((32, 32, 3), 128, np.uint8)
    noisy = night_visible(flat, 2, np.random.default_rng(1)).astype(np.float64)
    assert np.abs(np.diff(noisy, axis=1)).mean() > 4


def test_refuses_existing_layout_and_bad_arguments(tmp_path, llcm):
    with pytest.raises(ConfigError, match="already holds idx/"):
        generate_llcm(llcm, seed=2, **ARGS)
    with pytest.raises(ConfigError, match="at least 2 ids"):
        generate_llcm(tmp_path / "x", ids=1)
    with pytest.raises(ConfigError, match="images per camera"):
        generate_llcm(tmp_path / "x", images_per_camera=0)
