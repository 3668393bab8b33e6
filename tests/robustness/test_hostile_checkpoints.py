"""Hostile ``.pth`` files of a few hundred bytes (issue 14 class 1): bounded time and memory.

Each file is built here, by hand or with CPython's pickler behind stand-in torch modules
(tests/interop/torch_fakes.py), and read by the torch-free reader in a subprocess whose address
space is limited (``RLIMIT_AS``: the baseline of python + numpy + the reader, plus 1.5 GiB), so a
reader that still allocated gigabytes would fail here instead of loading the machine. The reader
must answer with one ``CheckpointError`` line naming the file, within seconds, without its peak
resident memory growing by more than :data:`MAX_GROWTH_MB`, and not by running out of memory
(a ``MemoryError`` caught and reported would still be the bug). TensorFlow is never imported
there; the CLI path (``import-torch``) is checked separately, in-process.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop import torch_pickle
from mpanet_tf.interop.torch_state import load_state_dict
from tests.interop.torch_fakes import fake_torch_pickle
from tests.interop.torch_writer import save_state_dict

ROOT = Path(__file__).resolve().parents[2]
HEADROOM = 3 << 29  # 1.5 GiB of address space above the baseline
MAX_GROWTH_MB = 200
MAX_SECONDS = 20.0  # interpreter and numpy start-up included, on a loaded 2-core machine

# Reads argv[1] like the CLI would: CheckpointError -> "Error: ..." on stderr and exit 2, anything
# else a traceback. Writes peak-RSS figures (kB, /proc/self/status VmHWM) to argv[2].
DRIVER = r"""
import json, sys
def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.torch_state import load_state_dict
before = vm("VmHWM")
try:
    load_state_dict(sys.argv[1])
    code = 0
except CheckpointError as error:
    print(f"Error: {error}", file=sys.stderr)
    code = 2
assert "tensorflow" not in sys.modules and "torch" not in sys.modules
json.dump({"before_kb": before, "after_kb": vm("VmHWM"), "size_kb": vm("VmPeak")},
          open(sys.argv[2], "w"))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def baseline_bytes(tmp_path_factory):
    """Peak virtual size of the driver on a harmless file (python, numpy, the reader)."""
    path = tmp_path_factory.mktemp("base") / "ok.pth"
    save_state_dict(path, {"w": np.ones(4, np.float32)})
    stats = tmp_path_factory.mktemp("base") / "stats.json"
    result = subprocess.run([sys.executable, "-c", DRIVER, str(path), str(stats)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(stats.read_text())["size_kb"] * 1024


def read_limited(path, baseline_bytes, tmp_path):
    """Run the reader on ``path`` under the memory limit -> (returncode, stderr, stats, seconds)."""
    limit = baseline_bytes + HEADROOM

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    stats = tmp_path / "stats.json"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", DRIVER, str(path), str(stats)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, preexec_fn=limit_memory)
    seconds = time.monotonic() - start
    return result.returncode, result.stderr, (json.loads(stats.read_text()) if stats.exists()
                                              else None), seconds


def assert_refused_in_bounds(path, baseline_bytes, tmp_path, *, why):
    code, stderr, stats, seconds = read_limited(path, baseline_bytes, tmp_path)
    lines = stderr.strip().splitlines()
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0], stderr
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr
    assert why in lines[0], lines[0]
    assert seconds < MAX_SECONDS, seconds
    growth_mb = (stats["after_kb"] - stats["before_kb"]) / 1024
    assert growth_mb < MAX_GROWTH_MB, growth_mb
    return lines[0]


# ------------------------------------------------------------------------ building files
def text(value: str) -> bytes:  # BINUNICODE
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def zip_checkpoint(path, data_pkl: bytes, records=None, compress=False):
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        for key, data in (records or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def _put(index: int) -> bytes:
    return b"r" + struct.pack("<I", index)  # LONG_BINPUT


def _get(index: int) -> bytes:
    return b"j" + struct.pack("<I", index)  # LONG_BINGET


def shared_list_dag(levels: int, base: int = 1000) -> bytes:
    """``l_0 = []``, ``l_i = [l_{i-1}, l_{i-1}]`` (no PROTO, no STOP): ``levels`` + 1 lists in the
    file, 2**levels empty lists when walked as a tree. Memo indices from ``base``."""
    out = b"]" + _put(base) + b"0"  # EMPTY_LIST PUT POP
    for i in range(base + 1, base + levels + 1):
        out += b"(" + _get(i - 1) + _get(i - 1) + b"l" + _put(i) + b"0"  # MARK GET GET LIST PUT POP
    return out + _get(base + levels)


def shared_tuple_dag(levels: int, base: int = 1000) -> bytes:
    """The same DAG of tuples (hashable: a hash walks the whole tree)."""
    out = b")" + _put(base) + b"0"
    for i in range(base + 1, base + levels + 1):
        out += _get(i - 1) + _get(i - 1) + b"\x86" + _put(i) + b"0"  # GET GET TUPLE2 PUT POP
    return out + _get(base + levels)


# ---------------------------------------------------------------------------- the cases
def test_shared_references_are_walked_once(tmp_path, baseline_bytes):
    """A DAG of 60 shared lists is 2**60 lists as a tree: walking it as one never ends."""
    path = zip_checkpoint(tmp_path / "dag.pth", b"\x80\x02" + shared_list_dag(60) + b".")
    assert path.stat().st_size < 2000
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="holds a list, not a state dict")


def test_a_shared_dag_beside_real_tensors_still_loads_fast(tmp_path):
    """Sharing is legal: the state dict next to a 2**60-leaf DAG loads, in linear time."""
    body = fake_torch_pickle([["w", "0", "FloatStorage", 3, 0, [3], [1], False]])
    assert body.endswith(b".")
    # {"w": tensor, "junk": DAG}: SETITEM before the STOP
    data_pkl = body[:-1] + text("junk") + shared_list_dag(60) + b"s."
    path = zip_checkpoint(tmp_path / "w.pth", data_pkl, {"0": np.arange(3, dtype="<f4").tobytes()})
    start = time.monotonic()
    state = load_state_dict(path)
    assert time.monotonic() - start < 5
    assert list(state) == ["w"]
    np.testing.assert_array_equal(state["w"], [0.0, 1.0, 2.0])


def test_a_dag_of_tuples_as_a_key_is_not_hashed(tmp_path, baseline_bytes):
    """``{t_60: 1}``: hashing t_60 visits 2**60 tuples."""
    data_pkl = b"\x80\x02}" + shared_tuple_dag(60) + b"K\x01s."  # EMPTY_DICT ... SETITEM
    path = zip_checkpoint(tmp_path / "key.pth", data_pkl)
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="key with more than")


def test_deep_nesting_is_refused(tmp_path, baseline_bytes):
    """5 000 lists, each inside the one before (EMPTY_LIST x 5000, then APPEND x 4999)."""
    path = zip_checkpoint(tmp_path / "deep.pth", b"\x80\x02" + b"]" * 5000 + b"a" * 4999 + b".")
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="nested more than")


@pytest.mark.parametrize("numel, size, stride", [(1, [1 << 29], [0]),
                                                (3 << 14, [1 << 15, 1 << 14], [1, 1])])
def test_stride_zero_or_overlap_cannot_blow_a_storage_up(tmp_path, baseline_bytes, numel, size,
                                                       stride):
    """A few floats of storage, a tensor of 2**29 elements over it (stride 0, or overlapping
    rows): 2 GiB as an array."""
    data_pkl = fake_torch_pickle([["w", "0", "FloatStorage", numel, 0, size, stride, False]])
    path = zip_checkpoint(tmp_path / "stride.pth", data_pkl,
                          {"0": np.zeros(numel, "<f4").tobytes()}, compress=True)
    assert path.stat().st_size < 2000
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="elements over a storage of")


def test_many_tensors_over_one_storage_are_bounded(tmp_path, baseline_bytes):
    """2 000 whole views of one deflated 1 MiB storage would take 2 GiB."""
    numel = 1 << 18
    entries = [[f"t{i}", "0", "FloatStorage", numel, 0, [numel], [1], False] for i in range(2000)]
    path = zip_checkpoint(tmp_path / "views.pth", fake_torch_pickle(entries),
                          {"0": bytes(4 * numel)}, compress=True)
    assert path.stat().st_size < 200_000
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="more memory than its storages")


@pytest.mark.parametrize("case", ["bytearray", "bytearray8"])
def test_constructors_cannot_allocate_from_a_number(tmp_path, baseline_bytes, case):
    if case == "bytearray":  # builtins.bytearray(2**31) through REDUCE
        data_pkl = b"\x80\x02c__builtin__\nbytearray\nJ\xff\xff\xff\x7f\x85R."
        why = "bytearray is only read from bytes"
    else:  # protocol 5's BYTEARRAY8 with a 2 GiB length and no data
        data_pkl = b"\x80\x05\x96" + struct.pack("<Q", 1 << 31) + b"."
        why = "out-of-band buffers"
    path = zip_checkpoint(tmp_path / f"{case}.pth", data_pkl)
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why=why)


def test_zip_bomb_is_refused_before_inflating(tmp_path, baseline_bytes):
    """A 512 MiB storage of zeros deflated to ~0.5 MB: refused on its declared size."""
    numel = 1 << 27
    path = tmp_path / "bomb.pth"
    data_pkl = fake_torch_pickle([["w", "0", "FloatStorage", numel, 0, [numel], [1], False]])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        chunk = bytes(16 << 20)
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(4 * numel // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 1_000_000
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="storages declare")


def test_a_deflated_data_pkl_bomb_is_refused(tmp_path, baseline_bytes):
    path = tmp_path / "pklbomb.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("archive/data.pkl", "w", force_zip64=True) as member:
            member.write(b"\x80\x02")
            chunk = b"N0" * (8 << 20)  # NONE, POP: 16 MiB
            for _ in range(4):
                member.write(chunk)
            member.write(b"N.")
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why="data.pkl declares")


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "folder"])
def test_only_regular_files_are_read(tmp_path, baseline_bytes, kind):
    if kind == "dev_zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "pipe.pth"
        os.mkfifo(path)  # nobody ever writes: opening it for reading would block
    else:
        path = tmp_path / "folder.pth"
        path.mkdir()
    why = "is a folder" if kind == "folder" else "not a regular file"
    assert_refused_in_bounds(path, baseline_bytes, tmp_path, why=why)


def test_opcode_budget(tmp_path, monkeypatch):
    """Every opcode counts: a pickle running more than MAX_PICKLE_OPS is refused."""
    path = tmp_path / "w.pth"
    save_state_dict(path, {f"w{i}": np.ones(2, np.float32) for i in range(20)})
    assert len(load_state_dict(path)) == 20
    monkeypatch.setattr(torch_pickle, "MAX_PICKLE_OPS", 50)
    with pytest.raises(CheckpointError, match="more than 50 opcodes"):
        load_state_dict(path)


def test_legacy_and_tar_keys_must_be_plain(tmp_path):
    """The legacy format's storage-key list holding a shared tuple DAG is refused, not hashed."""
    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {}))
    obj = pickle.dumps({}, protocol=2)
    keys = b"\x80\x02]" + shared_tuple_dag(60) + b"a."  # [t_60]
    path = tmp_path / "legacy.pth"
    path.write_bytes(header + obj + keys)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="legacy.pth"):
        load_state_dict(path)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("case", ["stride", "dag", "fifo"])
def test_import_torch_gives_one_line_and_writes_nothing(tmp_path, case):
    path = tmp_path / "authors.pth"
    if case == "stride":
        zip_checkpoint(path, fake_torch_pickle([["classifier.weight", "0", "FloatStorage", 1, 0,
                                                 [1 << 29], [0], False]]),
                       {"0": bytes(4)})
    elif case == "dag":
        zip_checkpoint(path, b"\x80\x02" + shared_list_dag(60) + b".")
    else:
        os.mkfifo(path)
    out = tmp_path / "run"
    import mpanet_tf.model  # noqa: F401  (TensorFlow's import time is not the reader's)

    start = time.monotonic()
    result = CliRunner().invoke(cli, ["import-torch", str(path), "--output", str(out)])
    assert time.monotonic() - start < 30
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in result.output
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["authors.pth"]


@pytest.mark.parametrize("kind", ["dev_zero", "fifo"])
def test_backbone_weights_path_must_be_a_regular_file(tmp_path, kind):
    """``--backbone-weights PATH`` hashes the file before reading it: never a device or pipe."""
    from mpanet_tf.interop.imagenet import resolve_backbone_weights

    path = Path("/dev/zero") if kind == "dev_zero" else tmp_path / "pipe.pth"
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(CheckpointError, match="is not a regular file") as caught:
        resolve_backbone_weights(str(path), download=False)
    assert str(path) in str(caught.value)
