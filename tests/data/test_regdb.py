"""RegDB reader on hand-built trees: per-trial lists, ids from folders, labels, validation."""

from __future__ import annotations

import pathlib

import pytest

from mpanet_tf.data.registry import load_dataset
from mpanet_tf.data.regdb import RegDBDataset
from mpanet_tf.errors import DatasetError


def image_names(pid: int, count: int, tag: str) -> list[str]:
    return [f"{'Visible' if tag == 'v' else 'Thermal'}/{pid}/female_front_{tag}_{pid:05d}_{k}.bmp"
            for k in range(1, count + 1)]


def write_regdb_tree(root, images: dict, trials: dict) -> pathlib.Path:
    """Write a RegDB tree: ``images[pid] = (n_visible, n_thermal)``; ``trials[t] = (train_ids, test_ids)``.

    The label column written is deliberately *not* a 0..N-1 relabelling (it is 1000 + pid), since
    the reader must ignore it (design.md §4.2).
    """
    root = pathlib.Path(root)
    for pid, (n_vis, n_th) in images.items():
        for relpath in image_names(pid, n_vis, "v") + image_names(pid, n_th, "t"):
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_bytes(b"bmp placeholder")
    (root / "idx").mkdir(parents=True, exist_ok=True)
    for trial, (train, test) in trials.items():
        for split, ids in (("train", train), ("test", test)):
            for modality, tag, column in (("visible", "v", 0), ("thermal", "t", 1)):
                lines = [f"{p} {1000 + pid}" for pid in ids for p in image_names(pid, images[pid][column], tag)]
                (root / "idx" / f"{split}_{modality}_{trial}.txt").write_text("\n".join(lines) + "\n\n")
    return root


IMAGES = {1: (2, 3), 2: (1, 1), 5: (3, 2), 7: (2, 2), 12: (1, 4), 30: (2, 1)}
TRIALS = {1: ([12, 2, 30], [1, 5, 7]), 2: ([1, 5, 7], [2, 12, 30])}


@pytest.fixture()
def regdb(tmp_path):
    return write_regdb_tree(tmp_path / "RegDB", IMAGES, TRIALS)


@pytest.mark.parametrize("trial", [1, 2])
def test_counts_match_the_written_lists(regdb, trial):
    train, test = TRIALS[trial]
    assert RegDBDataset(regdb, trial=trial).counts() == {
        "trial": trial,
        "train_ids": 3,
        "train_visible": sum(IMAGES[p][0] for p in train),
        "train_thermal": sum(IMAGES[p][1] for p in train),
        "test_ids": 3,
        "test_visible": sum(IMAGES[p][0] for p in test),
        "test_thermal": sum(IMAGES[p][1] for p in test),
    }


def test_train_records_ids_from_folders_and_sorted_labels(regdb):
    data = RegDBDataset(regdb, trial=1)
    assert data.train_ids == [2, 12, 30]
    records = data.train_records()
    expected = ([p for pid in (12, 2, 30) for p in image_names(pid, IMAGES[pid][0], "v")]
                + [p for pid in (12, 2, 30) for p in image_names(pid, IMAGES[pid][1], "t")])
    assert [r.relpath for r in records] == expected
    label_of = {2: 0, 12: 1, 30: 2}
    for record in records:
        assert record.person_id == int(record.relpath.split("/")[1])
        assert record.label == label_of[record.person_id]
        thermal = record.relpath.startswith("Thermal/")
        assert (record.camera, record.infrared) == ((3, True) if thermal else (2, False))
        assert pathlib.Path(record.path) == regdb.absolute() / record.relpath


def test_test_records(regdb):
    data = RegDBDataset(regdb, trial=2)
    visible, thermal = data.test_visible(), data.test_thermal()
    assert [r.relpath for r in visible] == [p for pid in (2, 12, 30) for p in image_names(pid, IMAGES[pid][0], "v")]
    assert [r.relpath for r in thermal] == [p for pid in (2, 12, 30) for p in image_names(pid, IMAGES[pid][1], "t")]
    assert {r.camera for r in visible} == {2} and {r.camera for r in thermal} == {3}
    assert all(r.label == -1 for r in visible + thermal)
    assert len(data.all_records()) == sum(map(sum, IMAGES.values()))


def test_backslash_paths_are_accepted(regdb):
    path = regdb / "idx" / "test_thermal_1.txt"
    path.write_text(path.read_text().replace("/", "\\"))
    thermal = RegDBDataset(regdb, trial=1).test_thermal()
    assert thermal[0].relpath == "Thermal/1/female_front_t_00001_1.bmp"


@pytest.mark.parametrize("trial", [0, 11, -1, True, "1", 1.0])
def test_trial_outside_range(regdb, trial):
    with pytest.raises(DatasetError, match=f"got {trial!r}"):
        RegDBDataset(regdb, trial=trial)


def test_load_dataset_passes_the_trial(regdb):
    data = load_dataset("regdb", regdb, trial=2)
    assert isinstance(data, RegDBDataset) and data.trial == 2


@pytest.mark.parametrize("line", ["Visible/1/a.bmp", "Visible/1/a.bmp 3 4", "Visible/1/a.bmp x",
                                  "a.bmp 3", "Visible/one/a.bmp 3"])
def test_malformed_list_line(regdb, line):
    path = regdb / "idx" / "train_visible_1.txt"
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DatasetError, match=r"malformed line \d+ of .*train_visible_1\.txt"):
        RegDBDataset(regdb)


def test_listed_file_missing(regdb):
    missing = regdb / image_names(12, 1, "t")[0]
    missing.unlink()
    with pytest.raises(DatasetError, match=rf"{missing}.*line 1 of .*train_thermal_1\.txt"):
        RegDBDataset(regdb)


def test_missing_root_list_or_empty_list(regdb, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        RegDBDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="train_visible_3.txt"):
        RegDBDataset(regdb, trial=3)
    (regdb / "idx" / "test_visible_1.txt").write_text("\n")
    with pytest.raises(DatasetError, match="lists no images"):
        RegDBDataset(regdb)
