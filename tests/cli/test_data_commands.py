"""``mpanet-tf synth`` and ``mpanet-tf dataset-info`` through click's CliRunner."""

from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def sysu_counts_from_disk(root: pathlib.Path) -> dict:
    """What dataset-info must report, computed from the files and split lists on disk."""
    def ids(name):
        return [int(t) for t in (root / "exp" / name).read_text().strip().split(",") if t]

    train, test = ids("train_id.txt") + ids("val_id.txt"), ids("test_id.txt")
    files = [(int(p.parent.parent.name[3]), int(p.parent.name)) for p in root.glob("cam*/*/*.jpg")]

    def count(pids, cams):
        return sum(1 for cam, pid in files if pid in pids and cam in cams)

    return {"dataset": "sysu", "root": str(root), "train_ids": len(train),
            "train_visible": count(train, (1, 2, 4, 5)), "train_infrared": count(train, (3, 6)),
            "test_ids": len(test), "query": count(test, (3, 6)), "gallery_all": count(test, (1, 2, 4, 5)),
            "gallery_indoor": count(test, (1, 2)), "has_rand_perm": (root / "exp" / "rand_perm_cam.mat").is_file()}


def test_synth_sysu_then_dataset_info_json(tmp_path):
    out = tmp_path / "SYSU-MM01"
    result = run("synth", "--out", out, "--ids", 5, "--images-per-camera", 1, "--size", "64x32", "--seed", 1)
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    info = run("dataset-info", "--data-root", out, "--json")
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout) == sysu_counts_from_disk(out)
    assert sysu_counts_from_disk(out)["train_ids"] + sysu_counts_from_disk(out)["test_ids"] == 5


def test_synth_regdb_then_dataset_info_table(tmp_path):
    out = tmp_path / "RegDB"
    assert run("synth", "--layout", "regdb", "--out", out, "--ids", 4, "--images-per-camera", 2,
               "--size", "32x32").exit_code == 0
    result = run("dataset-info", "--dataset", "regdb", "--data-root", out, "--trial", 4)
    assert result.exit_code == 0, result.output
    table = dict(line.split(None, 1) for line in result.stdout.splitlines())
    lines = {name: len((out / "idx" / f"{name}_4.txt").read_text().split("\n")) - 1
             for name in ("train_visible", "train_thermal", "test_visible", "test_thermal")}
    assert table["trial"] == "4"
    assert {name: int(table[name]) for name in lines} == lines == {name: 4 for name in lines}
    assert table["train_ids"] == "2" and table["test_ids"] == "2"


def test_synth_refuses_a_non_empty_folder_unless_forced(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    result = run("synth", "--layout", "regdb", "--out", tmp_path, "--ids", 2, "--images-per-camera", 1)
    assert result.exit_code == 2
    assert str(tmp_path) in result.stderr and "--force" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    forced = run("synth", "--layout", "regdb", "--out", tmp_path, "--ids", 2, "--images-per-camera", 1, "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "keep.txt").read_text() == "x"
    assert len(list(tmp_path.glob("Visible/*/*.bmp"))) == 2


@pytest.mark.parametrize("size", ["64", "8x8", "axb"])
def test_synth_bad_size(tmp_path, size):
    result = run("synth", "--out", tmp_path / "s", "--size", size)
    assert result.exit_code == 2
    assert repr(size) in result.stderr


def test_dataset_info_default_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("synth", "--layout", "regdb", "--out", "datasets/RegDB", "--ids", 2,
               "--images-per-camera", 1).exit_code == 0
    result = run("dataset-info", "--dataset", "regdb", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["root"] == str(tmp_path / "datasets" / "RegDB")
    missing = run("dataset-info")
    assert missing.exit_code == 2 and str(tmp_path / "datasets" / "SYSU-MM01") in missing.stderr


def test_dataset_info_verify(tmp_path):
    out = tmp_path / "RegDB"
    assert run("synth", "--layout", "regdb", "--out", out, "--ids", 2, "--images-per-camera", 2).exit_code == 0
    clean = run("dataset-info", "--dataset", "regdb", "--data-root", out, "--verify", "--json")
    assert clean.exit_code == 0, clean.output
    info = json.loads(clean.stdout)
    assert (info["verified_images"], info["bad_images"]) == (8, 0)

    broken = sorted(out.glob("Thermal/*/*.bmp"))[1]
    broken.write_bytes(b"BM this is not a bitmap")
    bad = run("dataset-info", "--dataset", "regdb", "--data-root", out, "--verify")
    assert bad.exit_code == 2
    lines = [line for line in bad.stderr.splitlines() if str(out) in line and "verifying" not in line]
    assert len(lines) == 2
    assert str(broken) in lines[0]
    assert "1 of 8 images" in lines[1] and "Traceback" not in bad.output

    skipped = run("dataset-info", "--dataset", "regdb", "--data-root", out, "--verify", "--skip-bad-images")
    assert skipped.exit_code == 0
    assert str(broken) in skipped.stderr and "skipped" in skipped.stderr
