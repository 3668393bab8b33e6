"""``mpanet-tf manifest --from-folders`` through CliRunner, and the library writer it calls."""

from __future__ import annotations

import csv
import pathlib

from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.data.manifest import ManifestDataset
from mpanet_tf.data.manifest_folders import split_persons, write_manifest_from_folders
from mpanet_tf.data.synthetic_folders import generate_camera_folders


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def hand_tree(root: pathlib.Path) -> pathlib.Path:
    files = {
        "visible": {"ann": ["gate_1.jpg", "lobby_x.png"], "bob": ["gate_a.jpg"], "cy": ["yard_1.jpg"],
                    "dan": ["gate_1.jpg", "yard_night_2.jpg"], "eve": ["lobby_1.jpg"], "vis_only": ["gate_1.jpg"]},
        "infrared": {"ann": ["gate_2.jpg"], "bob": ["yard_1.bmp"], "cy": ["gate_1.jpg", "gate_2.jpg"],
                     "dan": ["yard_1.jpg"], "eve": ["gate_1.jpg"], "ir_only": ["gate_1.jpg"]},
    }
    for modality, persons in files.items():
        for person, names in persons.items():
            (root / modality / person).mkdir(parents=True, exist_ok=True)
            for name in names:
                (root / modality / person / name).write_bytes(b"img")
    (root / "visible" / "ann" / "notes.txt").write_text("ignored")
    return root


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_cli_writes_a_readable_identity_disjoint_manifest(tmp_path):
    tree = hand_tree(tmp_path / "cams")
    out = tmp_path / "data.csv"  # a folder above the tree: its rows' paths stay inside (issue 26)
    result = run("manifest", "--from-folders", tree, "--output", out, "--test-fraction", 0.4, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "person", "camera", "modality", "split"]
    on_disk = {p.relative_to(tree).as_posix() for p in tree.rglob("*.*") if p.suffix != ".txt"}
    assert {(tmp_path / r["path"]).resolve().relative_to(tree.resolve()).as_posix() for r in rows} \
        == on_disk - {"infrared/ir_only/gate_1.jpg"}
    train = {r["person"] for r in rows if r["split"] == "train"}
    test = {r["person"] for r in rows if r["split"] != "train"}
    assert not train & test and train | test == {"ann", "bob", "cy", "dan", "eve", "vis_only"}
    assert len(test - {"vis_only"}) == 2                                     # round(0.4 * 5)
    for row in rows:
        assert row["camera"] == pathlib.Path(row["path"]).name.split("_")[0]
        if row["split"] == "query":
            assert row["modality"] == "infrared"
        if row["person"] == "vis_only":
            assert row["split"] == "gallery"
    data = ManifestDataset(out)
    assert data.counts()["train_ids"] == 3
    assert "1 gallery distractors, 1 left out" in result.output
    again = tmp_path / "again.csv"
    assert run("manifest", "--from-folders", tree, "--output", again, "--test-fraction", 0.4, "--seed", 3).exit_code == 0
    assert [r["person"] + r["split"] for r in read_rows(again)] == [r["person"] + r["split"] for r in rows]


def test_visible_queries_and_the_split_rule(tmp_path):
    tree = hand_tree(tmp_path / "cams")
    summary = write_manifest_from_folders(tree, tmp_path / "v.csv", test_fraction=0.4, seed=3,
                                          query_modality="visible")
    rows = read_rows(tmp_path / "v.csv")
    assert {r["modality"] for r in rows if r["split"] == "query"} == {"visible"}
    assert {r["person"] for r in rows if r["split"] == "gallery" and r["modality"] == "infrared"} >= {"ir_only"}
    assert summary["left_out_persons"] == 1 and summary["distractor_persons"] == 1
    train, test = split_persons(["b", "a", "10", "2", "c"], 0.4, seed=7)
    assert sorted(train + test) == sorted(["b", "a", "10", "2", "c"]) and len(test) == 2
    assert split_persons(["c", "a", "b", "2", "10"], 0.4, seed=7) == (train, test)   # order of input irrelevant
    assert split_persons(["a", "b"], 0.0, 0) == (["a", "b"], [])
    assert split_persons(["a", "b"], 0.01, 0)[1] != []                       # at least one test person


def test_cli_errors_are_one_line_exit_2(tmp_path):
    tree = hand_tree(tmp_path / "cams")
    result = run("manifest", "--from-folders", tmp_path / "none", "--output", tmp_path / "x.csv")
    assert result.exit_code == 2 and "does not exist" in result.output
    (tree / "visible" / "ann" / "nocamera.jpg").write_bytes(b"img")
    result = run("manifest", "--from-folders", tree, "--output", tmp_path / "x.csv")
    assert result.exit_code == 2 and "nocamera.jpg is not named <camera>_<anything>" in result.output
    (tree / "visible" / "ann" / "nocamera.jpg").unlink()
    assert run("manifest", "--from-folders", tree, "--output", tmp_path / "x.csv").exit_code == 0
    result = run("manifest", "--from-folders", tree, "--output", tmp_path / "x.csv")
    assert result.exit_code == 2 and "already exists" in result.output
    assert run("manifest", "--from-folders", tree, "--output", tmp_path / "x.csv", "--force").exit_code == 0
    result = run("manifest", "--from-folders", tree, "--output", tmp_path / "y.csv", "--test-fraction", 1.5)
    assert result.exit_code == 2 and "--test-fraction must be between 0 and 1" in result.output
    assert not (tmp_path / "y.csv").exists()
    assert not list(tmp_path.glob(".tmp-*"))
    for line in (result.output.strip().splitlines()):
        assert line.startswith("Error:")


def test_synthetic_camera_folders_round_trip(tmp_path):
    tree = generate_camera_folders(tmp_path / "cams", ids=6, images_per_camera=1, size=(32, 16), seed=1)
    again = generate_camera_folders(tmp_path / "again", ids=6, images_per_camera=1, size=(32, 16), seed=1)
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.jpg")) == \
        sorted(p.relative_to(again).as_posix() for p in again.rglob("*.jpg"))
    assert all((tree / p.relative_to(again)).read_bytes() == p.read_bytes() for p in again.rglob("*.jpg"))
    summary = write_manifest_from_folders(tree, tree / "data.csv", test_fraction=0.5, seed=0)
    data = ManifestDataset(tree / "data.csv")
    assert summary["train_persons"] == 3 and summary["test_persons"] == 3
    assert set(data.cameras) <= {"gate", "lobby", "yard"}
    assert {r.infrared for r in data.query_records()} == {True}
    assert {r.infrared for r in data.gallery_records()} == {False}
