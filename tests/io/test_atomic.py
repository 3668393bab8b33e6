"""The atomic writer (mpanet_tf/io/atomic.py): the content arrives whole, a writer that raises
leaves the old file byte for byte and no temporary file, and temporary files keep the suffixes
that Keras and numpy look at."""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest

from mpanet_tf.io import atomic


class Boom(RuntimeError):
    pass


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_bytes_text_and_json_arrive_whole(tmp_path):
    target = tmp_path / "new" / "sub" / "file.bin"  # missing folders are created
    data = bytes(range(256)) * 1000
    atomic.atomic_write_bytes(target, data)
    assert target.read_bytes() == data

    text = tmp_path / "notes.txt"
    atomic.atomic_write_text(text, "è\nline two\n")
    assert text.read_bytes() == "è\nline two\n".encode("utf-8")

    obj = {"b": [1, 2.5, None], "a": {"z": "ü"}}
    path = tmp_path / "obj.json"
    atomic.atomic_write_json(path, obj)
    assert json.loads(path.read_text(encoding="utf-8")) == obj
    assert path.read_text(encoding="utf-8") == json.dumps(obj, indent=2, sort_keys=True) + "\n"
    assert names(tmp_path) == ["new", "notes.txt", "obj.json"]  # no temporary file left


def test_replacing_an_existing_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("old")
    atomic.atomic_write_json(path, {"status": "done"})
    assert json.loads(path.read_text()) == {"status": "done"}
    assert names(tmp_path) == ["run.json"]


def test_file_gets_the_usual_mode(tmp_path):
    path = tmp_path / "x.json"
    atomic.atomic_write_json(path, [])
    reference = tmp_path / "plain"
    reference.write_text("")  # open() honours the umask, as atomic writes must
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_stream_writer_that_raises_keeps_the_old_file(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_bytes(b"old,content\n")
    with pytest.raises(Boom):
        with atomic.atomic_open(path, "w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerow(["half", "of"])
            handle.flush()  # the bytes are on disk under the temporary name
            raise Boom
    assert path.read_bytes() == b"old,content\n"
    assert names(tmp_path) == ["manifest.csv"]


def test_path_writer_that_raises_leaves_no_file(tmp_path):
    path = tmp_path / "features.npz"
    with pytest.raises(Boom):
        with atomic.atomic_path(path) as temp:
            temp.write_bytes(b"PK half of a zip")
            raise Boom
    assert names(tmp_path) == []


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"previous model")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(path) as temp:
            temp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous model" and names(tmp_path) == ["model.keras"]


def test_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    path.write_text("old")

    def refuse(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        atomic.atomic_write_json(path, {"new": True})
    assert path.read_text() == "old" and names(tmp_path) == ["a.json"]


def test_temporary_name_keeps_suffixes_and_is_recognised(tmp_path):
    weights = tmp_path / "ckpt-000000004.weights.h5"
    seen = []
    with atomic.atomic_path(weights) as temp:
        seen.append(temp)
        assert temp.parent == tmp_path and temp.name.endswith(".weights.h5")
        assert "ckpt-000000004" in temp.name and atomic.is_temporary(temp.name)
        temp.write_bytes(b"w")
    assert not seen[0].exists() and weights.read_bytes() == b"w"
    assert atomic.temporary_path(weights) != atomic.temporary_path(weights)  # never shared
    assert not atomic.is_temporary(weights.name) and not atomic.is_temporary("history.json")


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    order = []
    real_fsync, real_replace = atomic.fsync_file, os.replace
    monkeypatch.setattr(atomic, "fsync_file", lambda p: (order.append("fsync"), real_fsync(p)))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b)))
    atomic.atomic_write_bytes(tmp_path / "f", b"x")
    assert order == ["fsync", "replace"]


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic.atomic_open(tmp_path / "f", "ab"):
            pass
    assert names(tmp_path) == []
