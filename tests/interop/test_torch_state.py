"""Reading PyTorch checkpoints without torch (design.md §9 decision 2): zip, legacy and tar formats.

Independent expectations: files written by CPython's own pickler with stand-in torch modules
(tests/interop/torch_fakes.py), layouts built by hand, numpy views sharing one storage, and
pickles that would run code if anything in them were executed.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.torch_state import load_object, load_state_dict
from tests.interop.torch_fakes import (
    MAGIC,
    assert_same_arrays,
    fake_torch_pickle,
    views_example,
    write_legacy,
    write_torch03_tar,
)
from tests.interop.torch_writer import save_state_dict


@pytest.mark.parametrize("legacy", [False, True])
def test_round_trip_honours_offsets_strides_and_dtypes(tmp_path, legacy):
    tensors, _, _ = views_example()
    tensors.update({
        "bf": np.array([[1.5, -2.0], [0.25, 3.0]], dtype=ml_dtypes.bfloat16),
        "mask": np.array([True, False, True]),
        "i8": np.array([-3, 7], dtype=np.int8), "u8": np.array([0, 255], dtype=np.uint8),
        "i16": np.array([-300], dtype=np.int16), "i32": np.array([1 << 20], dtype=np.int32),
        "f64": np.array([np.pi]), "empty": np.zeros((0, 3), np.float32),
        "big": np.arange(4, dtype=">f4"),
    })
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors, legacy=legacy)
    loaded = load_state_dict(path)
    assert_same_arrays(loaded, tensors)
    assert loaded["bf"].dtype == np.float32 and loaded["w"].dtype == np.float16
    assert loaded["n"].dtype == np.int64 and loaded["n"].shape == ()
    assert loaded["a"].flags.writeable and loaded["a"].flags.c_contiguous


@pytest.mark.parametrize("legacy", [False, True])
def test_reads_files_written_by_cpythons_pickler(tmp_path, legacy):
    """Parameters, a wrapping dict, OrderedDict._metadata (BUILD), bytes and sets beside it."""
    _, layout, storages = views_example()
    for row in layout[:2]:
        row[-1] = True  # nn.Parameter
    data_pkl = fake_torch_pickle(layout, legacy=legacy, wrap="model", metadata=True)
    path = tmp_path / "ckpt.pt"
    if legacy:
        numels = {"0": 24, "1": 6, "2": 1}
        write_legacy(path, data_pkl, {k: (numels[k], data) for k, data in storages.items()})
    else:
        with zipfile.ZipFile(path, "w") as archive:  # torch names the folder after the file
            archive.writestr("ckpt/data.pkl", data_pkl)
            for key, data in storages.items():
                archive.writestr(f"ckpt/data/{key}", data)
            archive.writestr("ckpt/version", "3\n")
    tensors, _, _ = views_example()
    assert_same_arrays(load_state_dict(path), tensors)
    whole = load_object(path)
    assert whole["epoch"] == 140 and whole["tag"] == b"\x00\xff" and whole["ids"] == {1, 2}
    assert whole["model"]._metadata["bn1"] == {"version": 2}


def test_legacy_storage_views_are_honoured(tmp_path):
    base = np.arange(24, dtype=np.float32) - 10.0
    # storage "0" is the whole base; "5" is the view base[6:16]; the tensor starts 2 into the view
    entries = [["v", "0", "FloatStorage", 24, 2, [2, 3], [3, 1], False, ["5", 6, 10]],
               ["whole", "0", "FloatStorage", 24, 0, [24], [1], False]]
    path = tmp_path / "views.pth"
    write_legacy(path, fake_torch_pickle(entries, legacy=True), {"0": (24, base.tobytes())})
    loaded = load_state_dict(path)
    np.testing.assert_array_equal(loaded["v"], base[8:14].reshape(2, 3))
    np.testing.assert_array_equal(loaded["whole"], base)


def test_torch03_tar_format_like_torchvisions_resnet50_file(tmp_path):
    base = np.arange(12, dtype=np.float32) * 1.5
    counts = np.array([5, -6, 7], dtype=np.int64)
    storages = [[7, "FloatStorage", 12, base.tobytes()], [9, "LongStorage", 3, counts.tobytes()]]
    views = [["11", 7, 4, 6]]  # storage "11" = elements 4..9 of storage 7
    entries = [["conv.weight", 7, "FloatStorage", 0, [3, 4], [4, 1]],
               ["conv.t", 7, "FloatStorage", 1, [2, 3], [1, 4]],
               ["view.v", "11", "FloatStorage", 2, [2, 2], [2, 1]],
               ["bn.num_batches_tracked", 9, "LongStorage", 1, [2], [1]],
               ["scalar", 9, "LongStorage", 2, [], []]]
    path = tmp_path / "resnet50-00000000.pth"
    write_torch03_tar(path, entries, storages, views)
    assert tarfile.is_tarfile(path)
    loaded = load_state_dict(path)
    assert list(loaded) == [e[0] for e in entries]
    np.testing.assert_array_equal(loaded["conv.weight"], base.reshape(3, 4))
    expected_t = [[base[1 + i + 4 * j] for j in range(3)] for i in range(2)]
    np.testing.assert_array_equal(loaded["conv.t"], expected_t)
    np.testing.assert_array_equal(loaded["view.v"], base[6:10].reshape(2, 2))
    np.testing.assert_array_equal(loaded["bn.num_batches_tracked"], [-6, 7])
    assert loaded["scalar"].shape == () and loaded["scalar"] == 7


@pytest.mark.parametrize("wrap_key", ["state_dict", "model", "model_state_dict", "net", "module",
                                      "state"])
def test_finds_nested_state_dict_and_strips_dataparallel_prefix(tmp_path, wrap_key):
    tensors = {"module.conv1.weight": np.ones((2, 1, 1, 1), np.float32),
               "module.bn1.running_var": np.full(2, 3.0, np.float32)}
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors, wrap_key=wrap_key, extra={"epoch": 7, "best": 0.5})
    loaded = load_state_dict(path)
    assert list(loaded) == ["conv1.weight", "bn1.running_var"]
    np.testing.assert_array_equal(loaded["bn1.running_var"], [3.0, 3.0])
    assert load_object(path)["epoch"] == 7


def test_bare_state_dict_ignores_non_tensor_leaves(tmp_path):
    path = tmp_path / "w.pth"
    save_state_dict(path, {"fc.bias": np.zeros(3, np.float32)}, extra={"epoch": 1})
    assert list(load_state_dict(path)) == ["fc.bias"]


def test_big_endian_byteorder_record_is_honoured(tmp_path):
    values = np.array([1.0, -2.5, 1e6], dtype=np.float32)
    path = tmp_path / "w.pth"
    save_state_dict(path, {"x": values})
    records = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            records[name] = archive.read(name)
    records["archive/byteorder"] = b"big"
    records["archive/data/0"] = values.astype(">f4").tobytes()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    np.testing.assert_array_equal(load_state_dict(path)["x"], values)


def malicious_pickles(marker):
    """Pickles that would create ``marker`` if anything in them were executed."""
    def text(value: str) -> bytes:  # BINUNICODE
        data = value.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    return {
        "os.system": b"\x80\x02cos\nsystem\n" + text(f"touch {marker}") + b"\x85R.",
        "builtins.eval": b"\x80\x04" + text("builtins") + text("eval") + b"\x93"
                         + text(f"open({str(marker)!r}, 'w')") + b"\x85R.",
        "builtins.exec": pickle.dumps(ExecOnLoad(marker), protocol=4),
    }


class ExecOnLoad:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("refused", ["os.system", "builtins.eval", "builtins.exec"])
@pytest.mark.parametrize("layout", ["zip", "legacy", "tar"])
def test_tampered_pickle_is_refused_without_running_it(tmp_path, refused, layout):
    marker = tmp_path / "pwned"
    payload = malicious_pickles(marker)[refused]
    path = tmp_path / "evil.pth"
    if layout == "legacy":
        header = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, 1001, {}))
        path.write_bytes(header + payload)
    elif layout == "tar":
        members = {"storages": pickle.dumps(0) + pickle.dumps([]), "tensors": pickle.dumps(0),
                   "pickle": payload}
        with tarfile.open(path, "w:") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
            archive.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and refused in message
    assert "refusing to run code from a checkpoint" in message
    assert not marker.exists()


def test_whole_module_class_is_refused(tmp_path):
    payload = b"\x80\x02ctorch.nn.modules.conv\nConv2d\n)\x81."
    path = tmp_path / "model.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(CheckpointError, match=r"torch\.nn\.modules\.conv\.Conv2d"):
        load_state_dict(path)


def write_sample(path, legacy=False):
    save_state_dict(path, {"w": np.arange(64, dtype=np.float32)}, legacy=legacy)
    return path.read_bytes()


@pytest.mark.parametrize("case", ["text", "empty", "missing", "zip_cut", "legacy_cut",
                                  "record_cut", "no_tensors", "no_data_pkl"])
def test_broken_files_give_one_line_naming_the_file(tmp_path, case):
    path = tmp_path / f"{case}.pth"
    if case == "text":
        path.write_text("this is not a checkpoint\n")
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "zip_cut":
        data = write_sample(path)
        path.write_bytes(data[: len(data) // 2])
    elif case == "legacy_cut":
        data = write_sample(path, legacy=True)
        path.write_bytes(data[:-40])
    elif case == "record_cut":
        write_sample(path)
        with zipfile.ZipFile(path) as archive:
            records = {n: archive.read(n) for n in archive.namelist()}
        records["archive/data/0"] = records["archive/data/0"][:100]
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in records.items():
                archive.writestr(name, data)
    elif case == "no_tensors":
        save_state_dict(path, {}, extra={"epoch": 3})
    elif case == "no_data_pkl":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x/readme.txt", "hello")
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message


def test_reader_never_imports_torch(tmp_path):
    path = tmp_path / "w.pth"
    save_state_dict(path, {"w": np.ones(2, np.float32)})
    code = ("import sys; from mpanet_tf.interop.torch_state import load_state_dict; "
            f"load_state_dict({str(path)!r}); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   cwd=Path(__file__).resolve().parents[2])


def test_ordered_dict_order_is_kept(tmp_path):
    names = [f"k{i}" for i in (5, 3, 9, 0, 1)]
    tensors = collections.OrderedDict((n, np.full(1, i, np.int32)) for i, n in enumerate(names))
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors)
    assert list(load_state_dict(path)) == names
