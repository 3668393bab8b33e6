"""Every malformed dataset layout -> ``dataset-info`` exits 2 with one stderr line naming the path."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from tests.data.test_records_sysu import CELLS, SPLITS, write_sysu_tree
from tests.data.test_regdb import IMAGES, TRIALS, image_names, write_regdb_tree


def sysu_missing_root(root):
    return [], root


def sysu_missing_camera(root):
    shutil.rmtree(root / "cam4")
    return [], root / "cam4"


def sysu_missing_split_file(root):
    (root / "exp" / "val_id.txt").unlink()
    return [], root / "exp" / "val_id.txt"


def sysu_id_without_images(root):
    (root / "exp" / "test_id.txt").write_text("7,3,77\n")
    return [], root / "exp" / "test_id.txt"


def sysu_malformed_split_line(root):
    (root / "exp" / "train_id.txt").write_text("5,2 9\n")
    return [], root / "exp" / "train_id.txt"


def sysu_split_not_text(root):
    (root / "exp" / "train_id.txt").write_bytes(b"\xff\xfe\x00\x81")
    return [], root / "exp" / "train_id.txt"


def sysu_root_is_a_file(root):
    shutil.rmtree(root)
    root.write_text("not a folder")
    return [], root


def regdb_missing_root(root):
    return [], root


def regdb_missing_list(root):
    (root / "idx" / "test_thermal_1.txt").unlink()
    return [], root / "idx" / "test_thermal_1.txt"


def regdb_malformed_list_line(root):
    path = root / "idx" / "train_thermal_1.txt"
    path.write_text(path.read_text() + "Thermal/12/extra.bmp twelve\n")
    return [], path


def regdb_listed_file_missing(root):
    missing = root / image_names(5, 1, "v")[0]
    missing.unlink()
    return [], missing


def regdb_trial(value):
    def mutate(root):
        return ["--trial", str(value)], "--trial"  # refused as an option, before any file is read: the line names it
    mutate.__name__ = f"regdb_trial_{value}"
    return mutate


SYSU_CASES = [sysu_missing_root, sysu_missing_camera, sysu_missing_split_file, sysu_id_without_images,
              sysu_malformed_split_line, sysu_split_not_text, sysu_root_is_a_file]
REGDB_CASES = [regdb_missing_root, regdb_missing_list, regdb_malformed_list_line, regdb_listed_file_missing,
               regdb_trial(0), regdb_trial(11)]


def check_one_line_error(args, path):
    result = CliRunner().invoke(cli, ["dataset-info", *[str(a) for a in args]])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0]
    assert lines[0].startswith("Error: ")


@pytest.mark.parametrize("mutate", SYSU_CASES, ids=lambda f: f.__name__)
def test_bad_sysu_layout(tmp_path, mutate):
    root = tmp_path / "SYSU-MM01"
    if mutate is not sysu_missing_root:
        write_sysu_tree(root, CELLS, SPLITS)
    extra, path = mutate(root)
    check_one_line_error(["--dataset", "sysu", "--data-root", root, *extra], path)


@pytest.mark.parametrize("mutate", REGDB_CASES, ids=lambda f: f.__name__)
def test_bad_regdb_layout(tmp_path, mutate):
    root = tmp_path / "RegDB"
    if mutate is not regdb_missing_root:
        write_regdb_tree(root, IMAGES, TRIALS)
    extra, path = mutate(root)
    check_one_line_error(["--dataset", "regdb", "--data-root", root, *extra], path)
