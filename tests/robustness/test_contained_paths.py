"""Issue 26, item 1: paths read from a manifest or a list file stay inside their root.

Each hostile file is made here: a manifest row or a list line naming ``../outside``, an absolute
path or a drive letter, next to a real file at that place, so only the containment rule can
refuse it. Symbolic links inside the root are followed (documented in ``data/contained_paths``).
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.data.contained_paths import contained_relpath
from mpanet_tf.data.llcm import LLCMDataset
from mpanet_tf.data.manifest import ManifestDataset
from mpanet_tf.data.records import read_comma_separated_ids
from mpanet_tf.data.regdb import RegDBDataset
from mpanet_tf.errors import DatasetError
from tests.data.llcm_tree import build_llcm_tree
from tests.data.test_manifest import HEADER, ROWS, write
from tests.data.test_regdb import IMAGES, TRIALS, write_regdb_tree


def _one_line(result, *names):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("text, expected", [
    ("a/b.jpg", "a/b.jpg"), ("a\\b.jpg", "a/b.jpg"), ("./a//b.jpg", "a/b.jpg"), ("a/../b.jpg", "b.jpg"),
    ("a/b/../../c.jpg", "c.jpg"),
])
def test_relative_paths_are_normalised(text, expected):
    assert contained_relpath(text, "f:1") == expected


@pytest.mark.parametrize("text, problem", [
    ("../x.jpg", "leaves its root"), ("a/../../x.jpg", "leaves its root"), ("..\\..\\etc\\passwd", "leaves its root"),
    ("..", "leaves its root"), ("/etc/passwd", "absolute"), ("\\\\server\\share\\x.jpg", "absolute"),
    ("C:x.jpg", "absolute"), ("c:\\images\\x.jpg", "absolute"), ("d:/x.jpg", "absolute"),
    ("a/..", "names no file"), (".", "names no file"), ("a\x00b.jpg", "NUL"),
])
def test_paths_leaving_the_root_are_refused_naming_file_and_line(text, problem):
    with pytest.raises(DatasetError, match=problem) as caught:
        contained_relpath(text, "lists/x.txt:7")
    assert str(caught.value).startswith("lists/x.txt:7 ")


def _outside_file(tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not yours")
    return secret


def test_manifest_row_climbing_out_is_refused_by_dataset_info_verify(tmp_path):
    _outside_file(tmp_path)
    root = tmp_path / "ds"
    root.mkdir()
    manifest = write(root, ROWS + ["../secret.jpg,dave,gate,visible,gallery"])
    result = CliRunner().invoke(cli, ["dataset-info", "--dataset", "manifest", "--data-root", str(manifest),
                                      "--verify"])
    _one_line(result, f"{manifest}:12", "../secret.jpg", "leaves its root")


def test_manifest_absolute_path_to_an_existing_file_is_refused(tmp_path):
    secret = _outside_file(tmp_path)
    root = tmp_path / "ds"
    root.mkdir()
    manifest = write(root, ROWS + [f"{secret},dave,gate,visible,gallery"])
    with pytest.raises(DatasetError, match=r"data\.csv:12 has an absolute path"):
        ManifestDataset(manifest)


def test_symbolic_link_inside_the_root_is_followed(tmp_path):
    elsewhere = tmp_path / "disk2" / "img"
    elsewhere.mkdir(parents=True)
    root = tmp_path / "ds"
    root.mkdir()
    manifest = write(root)
    os.rename(root / "img", elsewhere.parent / "moved")
    os.symlink(elsewhere.parent / "moved", root / "img")      # the user's own link to where the data lives
    data = ManifestDataset(manifest)
    assert [r.relpath for r in data.all_records()] == [row.split(",")[0] for row in ROWS]


def test_llcm_train_list_climbing_out_is_refused(tmp_path):
    _outside_file(tmp_path)
    root = build_llcm_tree(tmp_path / "LLCM")
    lines = (root / "idx" / "train_vis.txt").read_text().splitlines()
    lines.insert(1, "../secret.jpg 0")
    (root / "idx" / "train_vis.txt").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(cli, ["dataset-info", "--dataset", "llcm", "--data-root", str(root)])
    _one_line(result, f"{root / 'idx' / 'train_vis.txt'}:2", "leaves its root")


def test_llcm_train_list_absolute_path_is_refused(tmp_path):
    secret = _outside_file(tmp_path)
    root = build_llcm_tree(tmp_path / "LLCM")
    with open(root / "idx" / "train_nir.txt", "a") as handle:
        handle.write(f"{secret} 0\n")
    with pytest.raises(DatasetError, match=r"train_nir\.txt:\d+ has an absolute path"):
        LLCMDataset(root)


@pytest.mark.parametrize("line", ["../../outside/1/x.bmp 1", "C:\\RegDB\\Visible\\1\\x.bmp 1"])
def test_regdb_list_line_leaving_the_root_is_refused(tmp_path, line):
    outside = tmp_path / "outside" / "1"
    outside.mkdir(parents=True)
    (outside / "x.bmp").write_bytes(b"bmp")
    root = write_regdb_tree(tmp_path / "a" / "RegDB", IMAGES, TRIALS)
    with open(root / "idx" / "test_visible_1.txt", "a") as handle:
        handle.write(line + "\n")
    with pytest.raises(DatasetError, match=r"test_visible_1\.txt:\d+ has (an absolute path|a path .* leaves)"):
        RegDBDataset(root, trial=1)


def _camera_tree(root, persons):
    for modality in ("visible", "infrared"):
        for person in persons:
            folder = root / modality / person
            folder.mkdir(parents=True)
            (folder / f"gate_{modality}.jpg").write_bytes(b"img")


def test_failed_manifest_from_folders_leaves_no_file(tmp_path):
    root = tmp_path / "cams"
    _camera_tree(root, ["p1", "p2", "p3", "   "])     # a blank person name: a row the reader refuses
    output = root / "data.csv"
    result = CliRunner().invoke(cli, ["manifest", "--from-folders", str(root), "--output", str(output)])
    _one_line(result, "empty person")
    assert not output.exists()
    assert sorted(p.name for p in root.iterdir()) == ["infrared", "visible"]   # no temporary file either


def test_manifest_output_outside_the_tree_is_refused_before_writing(tmp_path):
    root = tmp_path / "cams"
    _camera_tree(root, ["p1", "p2", "p3"])
    output = tmp_path / "elsewhere" / "data.csv"
    result = CliRunner().invoke(cli, ["manifest", "--from-folders", str(root), "--output", str(output)])
    _one_line(result, "--output", str(root))
    assert not output.parent.exists()


class _CountingId(int):
    comparisons = 0

    def __eq__(self, other):
        _CountingId.comparisons += 1
        return int.__eq__(self, other)

    __hash__ = int.__hash__


def test_id_files_are_parsed_in_linear_time(tmp_path):
    """A list membership test made a 200,000-id test_id.txt quadratic: count the comparisons."""
    n = 3000
    path = tmp_path / "test_id.txt"
    path.write_text(",".join(str(i) for i in range(1, n + 1)))
    _CountingId.comparisons = 0
    ids = read_comma_separated_ids(path, "test id file", "fix", parse=lambda t: _CountingId(int(t)))
    assert ids == list(range(1, n + 1))
    assert _CountingId.comparisons <= 2 * n, _CountingId.comparisons     # a list scan needs n^2/2
