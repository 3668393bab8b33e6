"""Property tests over random layouts: counts equal the files written; damage raises only DatasetError."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import numpy as np
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpanet_tf.data.regdb import RegDBDataset
from mpanet_tf.data.sysu import SYSUDataset
from mpanet_tf.errors import DatasetError
from tests.data.test_records_sysu import write_sysu_tree
from tests.data.test_regdb import image_names, write_regdb_tree

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPLIT_FILES = ("train_id.txt", "val_id.txt", "test_id.txt")


@st.composite
def sysu_layouts(draw):
    """(cells {(cam, pid): n}, splits {file: [ids]}, empty identity folders, junk files?)."""
    ids = draw(st.lists(st.integers(1, 60), min_size=1, max_size=6, unique=True))
    files = [SPLIT_FILES[0]] + draw(st.lists(st.sampled_from(SPLIT_FILES), min_size=len(ids) - 1,
                                             max_size=len(ids) - 1))
    splits = {name: [pid for pid, f in zip(ids, files) if f == name] for name in SPLIT_FILES}
    cells, empty = {}, []
    for pid in ids:
        counts = draw(st.lists(st.integers(0, 3), min_size=6, max_size=6))
        if not any(counts):
            counts[draw(st.integers(0, 5))] = draw(st.integers(1, 3))
        for cam, count in enumerate(counts, start=1):
            if count:
                cells[(cam, pid)] = count
            elif draw(st.booleans()):
                empty.append((cam, pid))
    return cells, splits, empty, draw(st.booleans())


@SETTINGS
@given(sysu_layouts())
def test_sysu_counts_equal_files_written(layout):
    cells, splits, empty, junk = layout
    with tempfile.TemporaryDirectory() as tmp:
        data = SYSUDataset(write_sysu_tree(pathlib.Path(tmp) / "s", cells, splits, empty, junk))
        train = splits["train_id.txt"] + splits["val_id.txt"]
        test = splits["test_id.txt"]

        def count(ids, cams):
            return sum(n for (cam, pid), n in cells.items() if pid in ids and cam in cams)

        assert data.counts() == {
            "train_ids": len(train), "train_visible": count(train, {1, 2, 4, 5}),
            "train_infrared": count(train, {3, 6}), "test_ids": len(test), "query": count(test, {3, 6}),
            "gallery_all": count(test, {1, 2, 4, 5}), "gallery_indoor": count(test, {1, 2}),
            "has_rand_perm": False}
        records = data.train_records()
        assert len(records) == count(train, set(range(1, 7)))
        assert all(r.label == train.index(r.person_id) for r in records)
        assert len(data.query_records()) + len(data.gallery_records()) == count(test, set(range(1, 7)))


@st.composite
def regdb_layouts(draw):
    """(images {pid: (n_vis, n_th)}, trial, (train ids, test ids))."""
    ids = draw(st.lists(st.integers(1, 500), min_size=2, max_size=6, unique=True))
    images = {pid: (draw(st.integers(1, 3)), draw(st.integers(1, 3))) for pid in ids}
    cut = draw(st.integers(1, len(ids) - 1))
    return images, draw(st.integers(1, 10)), (ids[:cut], ids[cut:])


@SETTINGS
@given(regdb_layouts())
def test_regdb_counts_equal_files_written(layout):
    images, trial, (train, test) = layout
    with tempfile.TemporaryDirectory() as tmp:
        data = RegDBDataset(write_regdb_tree(pathlib.Path(tmp) / "r", images, {trial: (train, test)}), trial)
        assert data.counts() == {
            "trial": trial, "train_ids": len(train), "test_ids": len(test),
            "train_visible": sum(images[p][0] for p in train), "train_thermal": sum(images[p][1] for p in train),
            "test_visible": sum(images[p][0] for p in test), "test_thermal": sum(images[p][1] for p in test)}
        assert [r.label for r in data.train_records()] == [
            sorted(train).index(p) for column in (0, 1) for p in train for _ in range(images[p][column])]


# ------------------------------------------------------------------------- damage
def _cells(n):
    cells = np.empty((n, 1), dtype=object)
    for i in range(n):
        cells[i, 0] = np.zeros((0, 0))
    return cells


MALFORMED_MATS = [
    {"rand_perm_cam": np.zeros((6, 1))},
    {"rand_perm_cam": _cells(5)},
    {"other": np.ones(3)},
]


def _odd_cell_mat(value):
    outer = np.empty((6, 1), dtype=object)
    for cam in range(6):
        inner = np.empty((2, 1), dtype=object)
        inner[0, 0], inner[1, 0] = np.zeros((0, 0)), value
        outer[cam, 0] = inner
    return {"rand_perm_cam": outer}


MALFORMED_MATS += [_odd_cell_mat(v) for v in ("text", np.ones((10, 2, 2)), np.full((10, 2), np.nan),
                                               np.full((10, 2), 1.5), np.ones((10, 2)))]

SYSU_DAMAGE = st.one_of(
    st.tuples(st.just("split_bytes"), st.sampled_from(SPLIT_FILES), st.binary(max_size=40)),
    st.tuples(st.just("split_text"), st.sampled_from(SPLIT_FILES), st.text(max_size=30)),
    st.tuples(st.just("remove_camera"), st.integers(1, 6), st.none()),
    st.tuples(st.just("camera_is_file"), st.integers(1, 6), st.none()),
    st.tuples(st.just("identity_is_file"), st.integers(1, 6), st.none()),
    st.tuples(st.just("remove_split"), st.sampled_from(SPLIT_FILES), st.none()),
    st.tuples(st.just("split_is_folder"), st.sampled_from(SPLIT_FILES), st.none()),
    st.tuples(st.just("mat_bytes"), st.none(), st.binary(min_size=0, max_size=300)),
    st.tuples(st.just("mat_structure"), st.integers(0, len(MALFORMED_MATS) - 1), st.none()),
)


def damage_sysu(root: pathlib.Path, damage, cells) -> None:
    kind, where, payload = damage
    exp = root / "exp"
    if kind == "split_bytes":
        (exp / where).write_bytes(payload)
    elif kind == "split_text":
        (exp / where).write_text(payload, encoding="utf-8", errors="surrogatepass")
    elif kind == "remove_camera":
        shutil.rmtree(root / f"cam{where}")
    elif kind == "camera_is_file":
        shutil.rmtree(root / f"cam{where}")
        (root / f"cam{where}").write_text("x")
    elif kind == "identity_is_file":
        for cam, pid in cells:
            if cam == where:
                shutil.rmtree(root / f"cam{cam}" / f"{pid:04d}")
                (root / f"cam{cam}" / f"{pid:04d}").write_text("x")
    elif kind == "remove_split":
        (exp / where).unlink()
    elif kind == "split_is_folder":
        (exp / where).unlink()
        (exp / where).mkdir()
    elif kind == "mat_bytes":
        (exp / "rand_perm_cam.mat").write_bytes(payload)
    elif kind == "mat_structure":
        scipy.io.savemat(exp / "rand_perm_cam.mat", MALFORMED_MATS[where])


@SETTINGS
@given(sysu_layouts(), SYSU_DAMAGE)
def test_damaged_sysu_raises_only_dataset_error(layout, damage):
    cells, splits, empty, junk = layout
    with tempfile.TemporaryDirectory() as tmp:
        root = write_sysu_tree(pathlib.Path(tmp) / "s", cells, splits, empty, junk)
        damage_sysu(root, damage, cells)
        try:
            data = SYSUDataset(root)
            data.counts()
            data.all_records()
            if data.has_rand_perm:
                data.load_rand_perm()
        except DatasetError as error:
            assert "\n" not in str(error)


REGDB_DAMAGE = st.one_of(
    st.tuples(st.just("append_text"), st.text(max_size=40)),
    st.tuples(st.just("replace_bytes"), st.binary(max_size=60)),
    st.tuples(st.just("remove_image"), st.integers(0, 100)),
    st.tuples(st.just("remove_idx"), st.none()),
    st.tuples(st.just("trial"), st.integers(-3, 14)),
)


@SETTINGS
@given(regdb_layouts(), REGDB_DAMAGE, st.sampled_from(["train_visible", "train_thermal", "test_visible",
                                                       "test_thermal"]))
def test_damaged_regdb_raises_only_dataset_error(layout, damage, list_name):
    images, trial, split = layout
    kind, payload = damage
    with tempfile.TemporaryDirectory() as tmp:
        root = write_regdb_tree(pathlib.Path(tmp) / "r", images, {trial: split})
        target = root / "idx" / f"{list_name}_{trial}.txt"
        if kind == "append_text":
            target.write_text(target.read_text() + payload, encoding="utf-8", errors="surrogatepass")
        elif kind == "replace_bytes":
            target.write_bytes(payload)
        elif kind == "remove_image":
            files = [root / p for pid in images for p in image_names(pid, images[pid][0], "v")]
            files[payload % len(files)].unlink()
        elif kind == "remove_idx":
            shutil.rmtree(root / "idx")
        try:
            data = RegDBDataset(root, trial=payload if kind == "trial" else trial)
            data.counts()
            data.all_records()
        except DatasetError as error:
            assert "\n" not in str(error)
