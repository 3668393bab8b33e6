"""Two processes, one folder; leftovers of killed processes (issue 14 classes 4 and 6).

A second process holds the lock of a folder (:func:`mpanet_tf.io.locks.folder_lock`) while
``train``, ``train --resume``, ``import-torch --force``, ``export`` and ``prepare`` try to write it:
each stops with exit 2 and one line naming the holder's pid, nothing written. A holder killed with
``kill -9`` leaves its lock file, which the next run takes over. Staging folders of dead processes
are removed by the next run; a live process's are left alone; a failed write leaves none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.io import locks
from mpanet_tf.io.staging import STALE_SECONDS, _host, is_stale_staging, replace_folder, staging_folder

ROOT = Path(__file__).resolve().parents[2]

# Takes the lock of argv[1], says so, and sleeps until killed.
HOLDER = r"""
import sys, time
from mpanet_tf.io import locks
with locks.folder_lock(sys.argv[1], "test folder"):
    print("locked", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder():
    """``start(folder)`` -> a process holding ``folder``'s lock (killed at the end)."""
    processes = []

    def start(folder):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        processes.append(process)
        assert process.stdout.readline().strip() == "locked", process.stderr.read()
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_second_process_is_refused_with_the_holders_name(tmp_path, holder):
    folder = tmp_path / "run"
    process = holder(folder)
    with pytest.raises(locks.FolderInUseError) as caught:
        with locks.folder_lock(folder, "train folder"):
            pass
    message = str(caught.value)
    assert f"pid {process.pid} " in message and str(folder) in message and "\n" not in message
    assert os.uname().nodename in message and "started" in message and "-c" in message
    assert sorted(p.name for p in folder.iterdir()) == [locks.LOCK_FILE]


def test_a_killed_holder_leaves_a_lock_the_next_run_takes_over(tmp_path, holder):
    folder = tmp_path / "run"
    process = holder(folder)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (folder / locks.LOCK_FILE).is_file()  # left behind by kill -9
    with locks.folder_lock(folder, "train folder"):
        record = (folder / locks.LOCK_FILE).read_text()
        assert f'"pid": {os.getpid()}' in record
    # released: the lock file is removed, and the folder it created too when nothing else is in it
    assert not (folder / locks.LOCK_FILE).exists()


def test_the_lock_creates_and_removes_only_what_it_needs(tmp_path):
    target = tmp_path / "a" / "b"
    with locks.folder_lock(target):
        assert (target / locks.LOCK_FILE).is_file()
    assert list(tmp_path.iterdir()) == []
    target.mkdir(parents=True)
    (target / "kept.txt").write_text("x")
    with locks.folder_lock(target):
        pass
    assert sorted(p.name for p in target.iterdir()) == ["kept.txt"]


@pytest.mark.parametrize("resume", [False, True])
def test_train_is_refused_while_another_process_holds_the_run_folder(tmp_path, holder, resume):
    output = tmp_path / "run"
    process = holder(output)
    args = ["train", "--dataset", "sysu", "--data-root", str(tmp_path / "no-data"),
            "--output", str(output), "--backbone-weights", "none", "--quiet"]
    result = CliRunner().invoke(cli, args + (["--resume"] if resume else []))
    line = one_line(result)
    assert f"pid {process.pid} " in line and str(output) in line
    assert sorted(p.name for p in output.iterdir()) == [locks.LOCK_FILE]


def test_the_empty_folder_check_ignores_a_stale_lock_file(tmp_path):
    from mpanet_tf.training import setup

    output = tmp_path / "run"
    output.mkdir()
    (output / locks.LOCK_FILE).write_text('{"pid": 1}')  # left by a killed run
    assert setup.check_output(output, resume=False, force=False) is None
    (output / "config.json").write_text("{}")
    setup.clear_run_folder(output)  # --force keeps the lock file (this run may hold it)
    assert sorted(p.name for p in output.iterdir()) == [locks.LOCK_FILE]


def test_import_torch_force_export_and_prepare_are_refused(tmp_path, holder):
    checkpoint = tmp_path / "authors.pth"
    checkpoint.write_bytes(b"not read: the lock comes first")
    output = tmp_path / "imported"
    output.mkdir()
    (output / "config.json").write_text("{}")
    process = holder(output)
    line = one_line(CliRunner().invoke(cli, ["import-torch", str(checkpoint), "--output",
                                             str(output), "--force"]))
    assert f"pid {process.pid} " in line and str(output) in line
    assert sorted(p.name for p in output.iterdir()) == [locks.LOCK_FILE, "config.json"]

    base = tmp_path / "saved_models" / "m"
    process = holder(base)
    line = one_line(CliRunner().invoke(cli, ["export", "--model", str(tmp_path / "no-model"),
                                             "--output", str(base)]))
    assert f"pid {process.pid} " in line and str(base) in line

    from mpanet_tf.data.cache import prepare_cache
    from mpanet_tf.data.records import ImageRecord

    cache = tmp_path / "cache"
    process = holder(cache)
    records = [ImageRecord(str(checkpoint), "a.jpg", 1, 1, False, 0)]  # never read
    with pytest.raises(locks.FolderInUseError, match=f"pid {process.pid} "):
        prepare_cache(records, (8, 4), cache, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["authors.pth", "cache", "imported",
                                                          "saved_models"]


# ------------------------------------------------------------------------------ staging
def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def staging_name(target: Path, pid: int, kind: str = "staging") -> Path:
    return target.with_name(f".{target.name}.{kind}-{_host()}-{pid}-abcd1234")


def test_stale_staging_of_a_dead_process_is_removed_and_a_live_one_kept(tmp_path):
    target = tmp_path / "out"
    dead = staging_name(target, dead_pid())
    dead_old = staging_name(target, dead_pid(), "old")
    live = staging_name(target, os.getpid())
    other = tmp_path / ".someone-else.staging-x-1-abcd"  # not this target's: never touched
    for folder in (dead, dead_old, live, other):
        folder.mkdir()
        (folder / "big.bin").write_bytes(b"x" * 1000)
    with staging_folder(target) as staging:
        (staging / "file").write_text("new")
        replace_folder(staging, target)
    assert not dead.exists() and not dead_old.exists()
    assert live.is_dir() and other.is_dir()
    assert (target / "file").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out"])


def test_staging_of_another_host_is_stale_only_when_old(tmp_path):
    recent = tmp_path / ".out.staging-otherhost-1-abcd1234"
    recent.mkdir()
    assert not is_stale_staging(recent)
    assert is_stale_staging(recent, now=time.time() + STALE_SECONDS + 60)


def test_a_failed_write_leaves_nothing_and_keeps_the_old_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with staging_folder(target) as staging:
            (staging / "half").write_text("half")
            raise OSError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in target.iterdir()] == ["old"]


def test_the_next_import_removes_a_killed_imports_staging(tmp_path, monkeypatch):
    """import-torch's own staging: a folder left by a dead pid goes when the next import stages
    (here made to fail while saving the model: nothing of it stays either)."""
    import types

    from mpanet_tf.interop import import_mpanet

    class Unsaveable:
        def save(self, path):
            Path(path).write_bytes(b"half")
            raise OSError("disk full")

    output = tmp_path / "imported"
    leftover = staging_name(output, dead_pid())
    leftover.mkdir()
    (leftover / "model.keras").write_bytes(b"x" * 1000)
    live = staging_name(output, os.getpid())
    live.mkdir()
    monkeypatch.setattr(import_mpanet, "read_authors_state", lambda path: ({}, 3))
    monkeypatch.setattr(import_mpanet, "sha256_of", lambda path: "0" * 64)
    monkeypatch.setattr(import_mpanet, "build_model", lambda config, n: Unsaveable())
    monkeypatch.setattr(import_mpanet, "mpanet_torch_mapping", lambda model: {})
    monkeypatch.setattr(import_mpanet, "apply_state_dict", lambda *a, **k: types.SimpleNamespace(
        complete=True, loaded=[], ignored=[]))
    with pytest.raises(OSError, match="disk full"):
        import_mpanet.import_mpanet_checkpoint(tmp_path / "a.pth", output, image_size="64x32")
    assert list(tmp_path.iterdir()) == [live]


def test_prepare_removes_a_killed_prepares_staging(tmp_path):
    from PIL import Image

    from mpanet_tf.data.cache import open_cache, prepare_cache
    from mpanet_tf.data.records import ImageRecord

    image = tmp_path / "data" / "a.png"
    image.parent.mkdir()
    Image.fromarray(np.full((8, 4, 3), 7, np.uint8)).save(image)
    records = [ImageRecord(str(image), "a.png", 1, 1, False, 0)]
    cache = tmp_path / "cache"
    leftover = staging_name(cache, dead_pid())
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"x" * 1000)
    prepare_cache(records, (8, 4), cache, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]
    assert open_cache(cache, records, (8, 4)).read(0).max() == 7
