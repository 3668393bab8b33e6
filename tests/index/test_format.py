"""Opening an index: corrupt, truncated, foreign and unfinished indexes are refused in one line (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.index import GalleryIndex, GalleryIndexError, build_index
from tests.index.conftest import make_embedder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.export.test_savedmodel import write_images

    root = tmp_path_factory.mktemp("built")
    write_images(root / "pictures", sizes=((40, 20),) * 11, seed=3)
    model = root / "model-a.onnx"
    return build_index(make_embedder(model), root / "g.mpidx", images=root / "pictures", batch_size=4,
                       progress=False).path


@pytest.fixture
def index_folder(built, tmp_path):
    """A fresh copy of one built index (each test damages its own)."""
    return Path(shutil.copytree(built, tmp_path / "g.mpidx"))


def _edit_meta(folder, **changes):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


def _truncate(folder, name, keep):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[:keep(len(data))])


DAMAGES = {
    "not a folder": (lambda f: None, "does not exist"),
    "no meta": (lambda f: (f / "meta.json").unlink(), "no meta.json"),
    "meta not json": (lambda f: (f / "meta.json").write_text("{\"count\": 3,"), "corrupt meta.json"),
    "foreign json": (lambda f: (f / "meta.json").write_text('{"format": "faiss", "count": 3}'), "not a gallery index"),
    "newer format": (lambda f: _edit_meta(f, format_version=99), "format version 99"),
    "bad dtype": (lambda f: _edit_meta(f, dtype="int8"), "unknown dtype"),
    "count lies": (lambda f: _edit_meta(f, count=12), "inconsistent"),
    "embeddings truncated": (lambda f: _truncate(f, "embeddings.bin", lambda n: n - 10), "truncated"),
    "embeddings grown": (lambda f: (f / "embeddings.bin").open("ab").write(b"xx"), "trailing bytes"),
    "entries truncated": (lambda f: _truncate(f, "entries.jsonl", lambda n: n // 2), "truncated"),
    "entries missing": (lambda f: (f / "entries.jsonl").unlink(), "lacks entries.jsonl"),
    "entry not json": (lambda f: (f / "entries.jsonl").write_bytes(
        b"x" * (f / "entries.jsonl").stat().st_size), "not JSON|lists 1 images"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_index_is_refused_naming_it(index_folder, damage, tmp_path):
    change, message = DAMAGES[damage]
    folder = tmp_path / "nowhere.mpidx" if damage == "not a folder" else index_folder
    change(folder)
    with pytest.raises(GalleryIndexError, match=message) as caught:
        GalleryIndex.open(folder)
    assert str(folder) in str(caught.value) and "\n" not in str(caught.value)
    result = CliRunner().invoke(cli, ["index", "info", "--index", str(folder)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: ") and str(folder) in result.output


def test_info_describes_the_index(index_folder):
    result = CliRunner().invoke(cli, ["index", "info", "--index", str(index_folder)])
    assert result.exit_code == 0, result.output
    meta = json.loads((index_folder / "meta.json").read_text())
    assert "images: 11" in result.output and "24-d float32" in result.output
    assert meta["model"]["fingerprint"] in result.output and "size on disk:" in result.output
    assert meta["created"] in result.output and "UNFINISHED" not in result.output


def test_cli_search_needs_exactly_one_gallery(index_folder, model_file, pictures):
    query = str(sorted(pictures.rglob("*.png"))[0])
    for extra in ([], ["--gallery", str(pictures), "--index", str(index_folder)], ["--gallery", str(pictures), "--ann"]):
        result = CliRunner().invoke(cli, ["search", "--model", str(model_file), "--query", query, *extra])
        assert result.exit_code == 2 and "exactly one of --gallery" in result.output


def test_build_refuses_a_folder_that_is_not_an_index(pictures, model_file, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(GalleryIndexError, match="not a gallery index"):
        build_index(make_embedder(model_file), tmp_path / "taken", images=pictures, progress=False)
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
