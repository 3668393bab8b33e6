"""SYSU-MM01 reader on hand-built trees: counts, records, labels, skips, rand_perm_cam.mat."""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np
import pytest
import scipy.io

from mpanet_tf.data.records import ImageRecord, is_infrared_camera
from mpanet_tf.data.registry import load_dataset
from mpanet_tf.data.sysu import SYSUDataset, load_rand_perm_cam, write_rand_perm_cam
from mpanet_tf.errors import ConfigError, DatasetError

# The test's own camera sets (design.md §4.1), independent of the module's constants.
VISIBLE = {1, 2, 4, 5}
INFRARED = {3, 6}
INDOOR = {1, 2}


def write_sysu_tree(root, cells: dict, splits: dict, empty_folders=(), junk=True) -> pathlib.Path:
    """Write a SYSU-MM01 tree: ``cells[(cam, pid)] = n`` images 0001.jpg..; ``splits[file] = ids``.

    Images are a few placeholder bytes (the readers never decode). ``empty_folders`` lists
    (cam, pid) identity folders created empty. ``junk`` adds files that are not images.
    """
    root = pathlib.Path(root)
    for cam in range(1, 7):
        (root / f"cam{cam}").mkdir(parents=True, exist_ok=True)
    for (cam, pid), count in cells.items():
        folder = root / f"cam{cam}" / f"{pid:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(1, count + 1):
            (folder / f"{number:04d}.jpg").write_bytes(b"jpeg placeholder")
    for cam, pid in empty_folders:
        (root / f"cam{cam}" / f"{pid:04d}").mkdir(parents=True, exist_ok=True)
    if junk:
        for (cam, pid) in list(cells)[:2]:
            folder = root / f"cam{cam}" / f"{pid:04d}"
            (folder / "Thumbs.db").write_bytes(b"\x00\x01")
            (folder / "notes.txt").write_text("not an image")
            (folder / ".0009.jpg").write_bytes(b"hidden resource fork")
            (folder / "subdir.jpg").mkdir()
    (root / "exp").mkdir(exist_ok=True)
    for name, ids in splits.items():
        (root / "exp" / name).write_text(",".join(str(i) for i in ids) + "\n")
    return root


# ids in the split files are deliberately not sorted, so label order = file order is visible.
CELLS = {
    (1, 5): 3, (3, 5): 2, (4, 5): 1,            # id 5: no cams 2, 5, 6
    (2, 2): 2, (6, 2): 1,                       # id 2: cam5 folder exists but is empty
    (1, 9): 1,                                  # id 9 (val): no infrared image at all
    (1, 3): 2, (2, 3): 1, (3, 3): 3, (6, 3): 1, (4, 3): 2,
    (5, 7): 2, (6, 7): 2, (2, 7): 1,
    (1, 11): 4,                                 # id 11 is in no split: ignored
}
SPLITS = {"train_id.txt": [5, 2], "val_id.txt": [9], "test_id.txt": [7, 3]}


def expected(ids, cams):
    return sum(n for (cam, pid), n in CELLS.items() if pid in ids and cam in cams)


def relpaths(ids, cams):
    return sorted(f"cam{c}/{p:04d}/{k:04d}.jpg" for (c, p), n in CELLS.items()
                  if p in ids and c in cams for k in range(1, n + 1))


@pytest.fixture()
def sysu(tmp_path):
    return write_sysu_tree(tmp_path / "SYSU-MM01", CELLS, SPLITS, empty_folders=[(5, 2)])


def test_counts_match_the_written_tree(sysu):
    data = SYSUDataset(sysu)
    train, test = {5, 2, 9}, {7, 3}
    assert data.counts() == {
        "train_ids": 3,
        "train_visible": expected(train, VISIBLE),
        "train_infrared": expected(train, INFRARED),
        "test_ids": 2,
        "query": expected(test, INFRARED),
        "gallery_all": expected(test, VISIBLE),
        "gallery_indoor": expected(test, INDOOR),
        "has_rand_perm": False,
    }
    assert (data.counts()["train_visible"], data.counts()["query"]) == (3 + 1 + 2 + 1, 3 + 1 + 2)


def test_train_records_labels_follow_train_then_val_order(sysu):
    data = SYSUDataset(sysu)
    assert data.train_ids == [5, 2, 9]
    assert data.test_ids == [7, 3]
    records = data.train_records()
    assert [r.relpath for r in records] == relpaths({5, 2, 9}, VISIBLE | INFRARED)
    label_of = {5: 0, 2: 1, 9: 2}
    for record in records:
        assert isinstance(record, ImageRecord)
        assert record.label == label_of[record.person_id]
        assert record.camera == int(record.relpath[3])
        assert record.person_id == int(record.relpath.split("/")[1])
        assert record.infrared == (record.camera in INFRARED)
        assert os.path.isabs(record.path) and os.path.isfile(record.path)
        assert pathlib.Path(record.path) == sysu.absolute() / record.relpath


def test_query_and_gallery_records(sysu):
    data = SYSUDataset(sysu)
    query = data.query_records()
    assert [r.relpath for r in query] == relpaths({7, 3}, INFRARED)
    assert all(r.infrared and r.label == -1 for r in query)
    assert [r.relpath for r in data.gallery_records()] == relpaths({7, 3}, VISIBLE)
    assert [r.relpath for r in data.gallery_records("indoor")] == relpaths({7, 3}, INDOOR)
    assert not any(r.infrared for r in data.gallery_records())
    with pytest.raises(ConfigError, match="outdoor"):
        data.gallery_records("outdoor")


def test_all_records_cover_every_listed_image(sysu):
    data = SYSUDataset(sysu)
    assert [r.relpath for r in data.all_records()] == relpaths({5, 2, 9, 7, 3}, VISIBLE | INFRARED)


def test_image_path_and_names(sysu):
    data = SYSUDataset(sysu)
    assert data.image_path(3, 5, 2) == sysu.absolute() / "cam3" / "0005" / "0002.jpg"
    assert data.image_path(3, 5, 2).is_file()
    assert data.image_names(1, 5) == ("0001.jpg", "0002.jpg", "0003.jpg")
    assert data.image_names(5, 2) == ()       # empty identity folder = absent from the camera


def test_other_image_suffixes_count_case_insensitively(sysu):
    (sysu / "cam4" / "0003" / "0003.PNG").write_bytes(b"png")
    (sysu / "cam4" / "0003" / "0004.bmp").write_bytes(b"bmp")
    assert SYSUDataset(sysu).counts()["gallery_all"] == expected({7, 3}, VISIBLE) + 2


def test_split_files_tolerate_spaces_newlines_and_trailing_comma(tmp_path):
    root = write_sysu_tree(tmp_path / "s", CELLS, SPLITS)
    (root / "exp" / "train_id.txt").write_text(" 5 , 2,\r\n")
    (root / "exp" / "val_id.txt").write_text("")
    data = SYSUDataset(root)
    assert data.train_ids == [5, 2]


@pytest.mark.parametrize("content, fragment", [
    ("5,2,x7", "'x7'"), ("5;2", "'5;2'"), ("5,-2", "'-2'"), ("5,0", "'0'"), ("5,2.0", "'2.0'")])
def test_malformed_split_line(tmp_path, content, fragment):
    root = write_sysu_tree(tmp_path / "s", CELLS, SPLITS)
    (root / "exp" / "train_id.txt").write_text(content)
    with pytest.raises(DatasetError, match="train_id.txt") as info:
        SYSUDataset(root)
    assert fragment in str(info.value)


def test_duplicate_and_overlapping_ids_are_refused(tmp_path):
    root = write_sysu_tree(tmp_path / "s", CELLS, {**SPLITS, "train_id.txt": [5, 2, 5]})
    with pytest.raises(DatasetError, match="twice"):
        SYSUDataset(root)
    (root / "exp" / "train_id.txt").write_text("5,2,3")
    with pytest.raises(DatasetError, match="both"):
        SYSUDataset(root)


def test_listed_id_without_images(tmp_path):
    root = write_sysu_tree(tmp_path / "s", CELLS, {**SPLITS, "test_id.txt": [7, 3, 42]},
                           empty_folders=[(1, 42)])
    with pytest.raises(DatasetError, match=r"42 .*test_id\.txt"):
        SYSUDataset(root)
    data = SYSUDataset(root, skip_empty=True)
    assert data.empty_ids == [42]
    assert data.test_ids == [7, 3]


def test_missing_pieces(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        SYSUDataset(tmp_path / "absent")
    root = write_sysu_tree(tmp_path / "s", CELLS, SPLITS)
    (root / "exp" / "val_id.txt").unlink()
    with pytest.raises(DatasetError, match="val_id.txt"):
        SYSUDataset(root)
    shutil.rmtree(root / "cam6")
    with pytest.raises(DatasetError, match=r"cam6"):
        SYSUDataset(root)


def test_load_dataset_dispatch(sysu):
    assert isinstance(load_dataset("SYSU", sysu), SYSUDataset)
    with pytest.raises(DatasetError, match="market"):
        load_dataset("market", sysu)


def test_is_infrared_camera():
    assert [c for c in range(1, 7) if is_infrared_camera(c)] == [3, 6]


# ----------------------------------------------------------------- rand_perm_cam.mat
def official_mat(path, cells: dict, num_ids: int):
    """Write the official nesting with scipy directly: 6x1 cell of (num_ids x 1) cells of doubles."""
    outer = np.empty((6, 1), dtype=object)
    for cam in range(6):
        inner = np.empty((num_ids, 1), dtype=object)
        for i in range(num_ids):
            inner[i, 0] = np.zeros((0, 0))
        outer[cam, 0] = inner
    for (cam, pid), array in cells.items():
        outer[cam - 1, 0][pid - 1, 0] = np.asarray(array, dtype=float)
    scipy.io.savemat(path, {"rand_perm_cam": outer})


def test_load_rand_perm_cam_reads_the_official_structure(tmp_path):
    rows = np.array([[2, 1, 3], [3, 2, 1]] * 5)          # 10 trials x 3 images
    official_mat(tmp_path / "p.mat", {(1, 3): rows, (6, 2): np.arange(1, 11)[:, None]}, num_ids=4)
    perms = load_rand_perm_cam(tmp_path / "p.mat")
    assert set(perms) == {(1, 3), (6, 2)}
    assert perms[(1, 3)].dtype == np.int64
    np.testing.assert_array_equal(perms[(1, 3)], rows)
    np.testing.assert_array_equal(perms[(6, 2)], np.arange(1, 11)[:, None])


def test_write_rand_perm_cam_round_trip_and_authors_indexing(tmp_path):
    rng = np.random.default_rng(0)
    perms = {(cam, pid): np.stack([rng.permutation(n) + 1 for _ in range(10)])
             for cam, pid, n in [(1, 1, 4), (2, 5, 2), (6, 3, 1)]}
    path = tmp_path / "rand_perm_cam.mat"
    write_rand_perm_cam(path, perms, num_ids=6)
    loaded = load_rand_perm_cam(path)
    assert set(loaded) == set(perms)
    for key, value in perms.items():
        np.testing.assert_array_equal(loaded[key], value)
    # MPANet utils/eval_sysu.py: perm[cam - 1][0].squeeze()[id - 1][trial][:shots]
    raw = scipy.io.loadmat(path)["rand_perm_cam"]
    cam_perm = raw[2 - 1][0].squeeze()
    np.testing.assert_array_equal(cam_perm[5 - 1][7][:1], perms[(2, 5)][7][:1])
    assert cam_perm[1 - 1].size == 0
    write_rand_perm_cam(tmp_path / "again.mat", perms, num_ids=6)
    assert (tmp_path / "again.mat").read_bytes() == path.read_bytes()


def test_rand_perm_missing_or_malformed(tmp_path, sysu):
    data = SYSUDataset(sysu)
    assert data.rand_perm_path == sysu.absolute() / "exp" / "rand_perm_cam.mat"
    with pytest.raises(DatasetError, match=r"rand_perm_cam\.mat.*evaluation/data_split"):
        data.load_rand_perm()
    data.rand_perm_path.write_text("not a mat file")
    assert data.has_rand_perm
    with pytest.raises(DatasetError, match="rand_perm_cam.mat"):
        data.load_rand_perm()
    scipy.io.savemat(tmp_path / "a.mat", {"something_else": np.eye(2)})
    with pytest.raises(DatasetError, match="no variable"):
        load_rand_perm_cam(tmp_path / "a.mat")
    official_mat(tmp_path / "b.mat", {(1, 1): np.ones((5, 3))}, num_ids=1)
    with pytest.raises(DatasetError, match="5 rows"):
        load_rand_perm_cam(tmp_path / "b.mat")
    official_mat(tmp_path / "c.mat", {(1, 1): np.zeros((10, 3))}, num_ids=1)
    with pytest.raises(DatasetError, match="1-based"):
        load_rand_perm_cam(tmp_path / "c.mat")
