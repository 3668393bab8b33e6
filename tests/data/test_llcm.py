"""LLCM reader on hand-built trees: records, counts from the files on disk, one-line errors."""

from __future__ import annotations

import pathlib

import pytest

from mpanet_tf.data.llcm import LLCMDataset, training_camera
from mpanet_tf.errors import ConfigError, DatasetError
from tests.data.llcm_tree import TEST_CELLS, build_llcm_tree


def counts_from_disk(root: pathlib.Path) -> dict:
    ids = [int(t) for t in (root / "idx" / "test_id.txt").read_text().strip().split(",")]
    vis_lines = (root / "idx" / "train_vis.txt").read_text().split()
    nir_lines = (root / "idx" / "train_nir.txt").read_text().split()

    def test_files(folder):
        return sum(1 for p in root.glob(f"{folder}/cam*/*/*") if int(p.parent.name) in ids)

    return {"train_ids": len(set(vis_lines[1::2]) | set(nir_lines[1::2])),
            "train_visible": len(vis_lines) // 2, "train_infrared": len(nir_lines) // 2,
            "test_ids": len(ids), "test_visible": test_files("test_vis"), "test_infrared": test_files("test_nir")}


def test_counts_match_the_files(tmp_path):
    root = build_llcm_tree(tmp_path / "LLCM")
    (root / "test_vis" / "cam4" / "0099").mkdir(parents=True)      # an unlisted id is ignored
    (root / "test_vis" / "cam4" / "0099" / "x.jpg").write_bytes(b"img")
    data = LLCMDataset(root)
    assert data.counts() == counts_from_disk(root)
    assert data.counts()["test_ids"] == len(TEST_CELLS)


def test_records_have_explicit_modality_ids_and_cameras(tmp_path):
    root = build_llcm_tree(tmp_path / "LLCM")
    (root / "test_nir" / "cam4" / "0003" / "notes.txt").write_text("not an image")
    data = LLCMDataset(root)
    train = data.train_records()
    assert sorted({r.label for r in train}) == [0, 1, 2]
    assert [r.infrared for r in train] == sorted(r.infrared for r in train)           # visible list first
    for record in train:
        assert record.camera == int(record.relpath.split("_c")[1][:2])
        assert record.infrared == record.relpath.startswith("nir/")
        assert record.person_id == record.label            # the released lists use labels 0..N-1
    nir = data.test_infrared()
    vis = data.test_visible()
    assert all(r.infrared for r in nir) and not any(r.infrared for r in vis)
    for record in nir + vis:
        folder, cam, pid, _ = record.relpath.split("/")
        assert (record.camera, record.person_id, record.label) == (int(cam[3:]), int(pid), -1)
        assert pathlib.Path(record.path).is_file()
    assert not any(r.relpath.endswith(".txt") for r in nir)
    # camera 2 in both modalities, camera 3 visible only, cam2 infrared counted as infrared
    assert {r.camera for r in nir} == {c for cells in TEST_CELLS.values() for c in cells["test_nir"]}
    assert 3 in {r.camera for r in vis}
    keys = [(f"{r.person_id:04d}", r.camera, r.relpath) for r in vis]
    assert keys == sorted(keys)                            # ids sorted, cameras in order, files sorted
    assert data.query_records("i2v") == nir and data.gallery_records("i2v") == vis
    assert data.query_records("v2i") == vis and data.gallery_records("v2i") == nir
    assert len(data.all_records()) == len(train) + len(vis) + len(nir)
    with pytest.raises(ConfigError, match="'i2v'"):
        data.query_records("all")


def test_training_camera_rules():
    assert training_camera("nir/0001/0001_c06_s200656_f5710_nir.jpg") == 6
    assert training_camera("train/cam4/0001/a.jpg") == 4
    assert training_camera("vis/0001/a.jpg") == 0


def test_labels_are_ranks_of_the_label_column(tmp_path):
    root = build_llcm_tree(tmp_path / "LLCM")
    for name in ("train_vis.txt", "train_nir.txt"):
        path = root / "idx" / name
        lines = [line.rsplit(" ", 1) for line in path.read_text().splitlines()]
        path.write_text("\n".join(f"{p} {10 * int(label) + 5}" for p, label in lines) + "\n")
    records = LLCMDataset(root).train_records()
    assert {(r.person_id, r.label) for r in records} == {(5, 0), (15, 1), (25, 2)}


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "idx" / "train_nir.txt").unlink(), r"train_nir\.txt does not exist"),
    (lambda r: (r / "idx" / "train_vis.txt").write_text("vis/0001/a.jpg zero\n"), r"malformed line 1 of .*train_vis\.txt"),
    (lambda r: (r / "idx" / "train_vis.txt").write_text("vis/0001/missing.jpg 0\n"), r"missing\.jpg listed on line 1"),
    (lambda r: (r / "idx" / "train_vis.txt").write_text("\n"), r"train_vis\.txt lists no images"),
    (lambda r: (r / "idx" / "test_id.txt").write_text("3,x\n"), r"test_id\.txt: 'x' is not an integer"),
    (lambda r: (r / "idx" / "test_id.txt").write_text("3,3\n"), r"lists id 3 twice"),
    (lambda r: (r / "idx" / "test_id.txt").write_bytes(b"\xff\xfe3"), r"test_id\.txt is not UTF-8"),
    (lambda r: (r / "idx" / "test_id.txt").write_text("500\n"), r"no visible test image"),
])
def test_malformed_inputs_raise_one_line_naming_the_file(tmp_path, damage, message):
    root = build_llcm_tree(tmp_path / "LLCM")
    damage(root)
    with pytest.raises(DatasetError, match=message) as error:
        LLCMDataset(root)
    assert "\n" not in str(error.value)


def test_missing_root_and_test_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; request LLCM"):
        LLCMDataset(tmp_path / "nowhere")
    root = build_llcm_tree(tmp_path / "LLCM")
    import shutil

    shutil.rmtree(root / "test_nir")
    with pytest.raises(DatasetError, match=r"test folder .*test_nir is missing"):
        LLCMDataset(root)
