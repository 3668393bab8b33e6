"""Synthetic generator: determinism, readable layouts, .mat round trip, modality properties."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pytest
from PIL import Image

from mpanet_tf.data.registry import load_dataset
from mpanet_tf.data.sysu import load_rand_perm_cam
from mpanet_tf.data.synthetic import generate_regdb, generate_sysu
from mpanet_tf.data.synthetic_draw import Pose, random_look, render_person
from mpanet_tf.errors import ConfigError

SYSU_ARGS = {"ids": 8, "images_per_camera": 2, "size": (64, 32)}
REGDB_ARGS = {"ids": 6, "images_per_modality": 3, "size": (64, 32)}


def tree_bytes(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


@pytest.fixture(scope="module")
def sysu(tmp_path_factory):
    return generate_sysu(tmp_path_factory.mktemp("synth") / "SYSU-MM01", seed=3, **SYSU_ARGS)


@pytest.fixture(scope="module")
def regdb(tmp_path_factory):
    return generate_regdb(tmp_path_factory.mktemp("synth") / "RegDB", seed=3, **REGDB_ARGS)


def test_same_seed_same_bytes_other_seed_differs(tmp_path, sysu, regdb):
    first = tree_bytes(sysu)
    assert tree_bytes(generate_sysu(tmp_path / "a", seed=3, **SYSU_ARGS)) == first
    assert tree_bytes(generate_regdb(tmp_path / "r", seed=3, **REGDB_ARGS)) == tree_bytes(regdb)
    other = tree_bytes(generate_sysu(tmp_path / "b", seed=4, **SYSU_ARGS))
    same_names = set(other) & set(first)
    assert same_names
    assert sum(other[n] != first[n] for n in same_names) > len(same_names) // 2


def test_sysu_tree_is_readable_and_counts_match_the_files(sysu):
    data = load_dataset("sysu", sysu)
    files = [p.relative_to(sysu).as_posix() for p in sysu.glob("cam*/*/*.jpg")]
    cam_of = {f: int(f[3]) for f in files}
    pid_of = {f: int(f.split("/")[1]) for f in files}
    train, test = set(data.train_ids), set(data.test_ids)
    assert train | test == set(range(1, 9)) and not train & test
    assert len(data.test_ids) == round(0.3 * 8)
    counts = data.counts()
    assert counts["train_visible"] == sum(1 for f in files if pid_of[f] in train and cam_of[f] not in (3, 6))
    assert counts["query"] == sum(1 for f in files if pid_of[f] in test and cam_of[f] in (3, 6))
    assert counts["gallery_indoor"] == sum(1 for f in files if pid_of[f] in test and cam_of[f] in (1, 2))
    assert counts["has_rand_perm"]
    assert len(data.all_records()) == len(files)


def test_sysu_has_empty_cells_but_every_id_has_both_modalities(sysu):
    cells = {(c, p): len(list((sysu / f"cam{c}" / f"{p:04d}").glob("*.jpg"))) for c in range(1, 7) for p in range(1, 9)}
    assert set(cells.values()) == {0, 2}
    assert any(cells[(c, 2)] == 0 for c in range(1, 7))      # id 2 is always absent from one camera
    for pid in range(1, 9):
        assert any(cells[(c, pid)] for c in (3, 6))
        assert any(cells[(c, pid)] for c in (1, 2))


def test_rand_perm_mat_covers_every_nonempty_cell(sysu):
    perms = load_rand_perm_cam(sysu / "exp" / "rand_perm_cam.mat")
    cells = {(int(p.parent.parent.name[3]), int(p.parent.name)) for p in sysu.glob("cam*/*/*.jpg")}
    assert set(perms) == cells
    for (cam, pid), perm in perms.items():
        n = len(list((sysu / f"cam{cam}" / f"{pid:04d}").glob("*.jpg")))
        assert perm.shape == (10, n)
        for row in perm:
            assert sorted(row) == list(range(1, n + 1))


def test_regdb_tree_every_trial_a_half_split(regdb):
    splits = set()
    for trial in range(1, 11):
        data = load_dataset("regdb", regdb, trial=trial)
        assert data.counts() == {"trial": trial, "train_ids": 3, "train_visible": 9, "train_thermal": 9,
                                 "test_ids": 3, "test_visible": 9, "test_thermal": 9}
        assert set(data.train_ids) | set(data.test_ids) == set(range(1, 7))
        splits.add(tuple(data.train_ids))
    assert len(splits) > 1
    assert all("_t_" in p.name for p in regdb.glob("Thermal/*/*.bmp"))
    assert all("_v_" in p.name for p in regdb.glob("Visible/*/*.bmp"))


def test_infrared_images_are_grey_visible_are_coloured(sysu, regdb):
    infrared = list(sysu.glob("cam3/*/*.jpg")) + list(sysu.glob("cam6/*/*.jpg")) + list(regdb.glob("Thermal/*/*.bmp"))
    visible = list(sysu.glob("cam[1245]/*/*.jpg")) + list(regdb.glob("Visible/*/*.bmp"))
    for path in infrared:
        image = pixels(path)
        assert image.shape == (64, 32, 3)
        assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    spread = [np.abs(pixels(p) - pixels(p).mean(-1, keepdims=True)).mean() for p in visible]
    assert min(spread) > 3.0


def _leave_one_out_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    distances = ((features[:, None] - features[None]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    return float((labels[distances.argmin(1)] == labels).mean())


def test_identities_are_distinguishable_within_each_modality(regdb):
    for folder, chance_factor in (("Visible", 4.0), ("Thermal", 2.0)):
        paths = sorted(regdb.glob(f"{folder}/*/*.bmp"))
        labels = np.array([int(p.parent.name) for p in paths])
        features = np.stack([pixels(p)[16:56, 8:24].reshape(-1) for p in paths]).astype(float)
        assert _leave_one_out_accuracy(features, labels) >= chance_factor / 6


def test_infrared_follows_materials_not_colours():
    look = random_look(np.random.default_rng(0))
    pose = Pose(dx=0.0, dy=0.01, scale=1.0, stride=0.03, swing=0.1, mirror=False, brightness=1.0)

    def render(person, camera):
        return render_person(person, pose, camera, (64, 32), np.random.default_rng(7)).astype(int)

    recoloured = dataclasses.replace(look, top=(255, 0, 0), trousers=(0, 0, 255), bag_colour=(0, 255, 0))
    assert np.array_equal(render(look, 3), render(recoloured, 3))
    assert np.abs(render(look, 1) - render(recoloured, 1)).max() > 50
    warmer = dataclasses.replace(look, materials=tuple(m + 40 for m in look.materials))
    assert np.abs(render(look, 3) - render(warmer, 3)).mean() > 5
    sleeves = dataclasses.replace(look, long_sleeves=not look.long_sleeves)
    assert np.abs(render(look, 3) - render(sleeves, 3)).max() > 50


def test_refuses_existing_layout_unless_overwrite(tmp_path):
    root = generate_regdb(tmp_path / "r", ids=2, images_per_modality=1, size=(32, 16))
    (root / "Visible" / "stale.txt").write_text("old")
    (root / "README").write_text("user file")
    with pytest.raises(ConfigError, match="--force"):
        generate_regdb(root, ids=2, images_per_modality=1, size=(32, 16))
    generate_regdb(root, ids=2, images_per_modality=1, size=(32, 16), overwrite=True)
    assert not (root / "Visible" / "stale.txt").exists()
    assert (root / "README").read_text() == "user file"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"ids": 2}, "at least 3 ids"), ({"images_per_camera": 0}, ">= 1"), ({"size": (16, 16)}, "32x16")])
def test_invalid_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        generate_sysu(tmp_path / "s", **kwargs)
