"""Independent torch-format writers for the interop tests (not tests themselves).

CPython's own pickler driven by stand-in ``torch`` modules, run in a subprocess so that the fake
``torch`` never enters the test process: it pickles tensors and storages exactly as torch's
reduce protocol does (``torch.save`` of torch >= 0.4), and writes torch 0.3's tar format.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import struct
import subprocess
import sys

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C

# CPython's pickler with stand-in torch modules: how torch.save pickles tensors and storages.
FAKE_TORCH_PICKLER = r"""
import collections, json, pickle, sys, types
spec = json.loads(sys.argv[1])
torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
torch._utils = utils
sys.modules.update({"torch": torch, "torch._utils": utils})
def _rebuild_tensor_v2(*args): pass
def _rebuild_parameter(*args): pass
for fn in (_rebuild_tensor_v2, _rebuild_parameter):
    fn.__module__ = "torch._utils"; setattr(utils, fn.__name__, fn)
class Storage:
    def __init__(self, key, name, numel, view=None):
        cls = getattr(torch, name, None) or type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        self.key, self.cls, self.numel, self.view = key, cls, numel, view
class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size),
                                     tuple(self.stride), False, collections.OrderedDict()))
class Parameter(Tensor):
    def __reduce_ex__(self, proto):
        return (_rebuild_parameter, (Tensor(self.storage, self.offset, self.size, self.stride),
                                     True, collections.OrderedDict()))
class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            pid = ("storage", obj.cls, obj.key, "cpu", obj.numel)
            return pid + (obj.view,) if spec["legacy"] else pid
        return None
storages, state = {}, collections.OrderedDict()
for name, key, storage_name, numel, offset, size, stride, param, *view in spec["entries"]:
    view = tuple(view[0]) if view else None  # legacy storage view: (view key, offset, numel)
    storage = storages.setdefault((key, view), Storage(key, storage_name, numel, view))
    state[name] = (Parameter if param else Tensor)(storage, offset, size, stride)
if spec.get("metadata"):
    state._metadata = collections.OrderedDict([("", {"version": 1}), ("bn1", {"version": 2})])
top = state
if spec.get("wrap"):
    top = {spec["wrap"]: state, "epoch": 140, "tag": b"\x00\xff", "ids": {1, 2}}
Pickler(sys.stdout.buffer, protocol=2).dump(top)
"""


# torch <= 0.3's torch.save (the tar format of torchvision's resnet50-19c8e357.pth), in CPython
# with stand-in torch classes: members sys_info, pickle, tensors, storages.
FAKE_TORCH03_SAVE = r"""
import collections, io, json, pickle, struct, sys, tarfile, types
spec = json.loads(sys.argv[1])
torch = types.ModuleType("torch")
sys.modules["torch"] = torch
def torch_class(name):
    if not hasattr(torch, name):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    return getattr(torch, name)
class Tensor:
    def __init__(self, storage_key, name, offset, size, stride):
        self.storage_key, self.offset, self.size, self.stride = storage_key, offset, size, stride
        self.type = torch_class(name.replace("Storage", "Tensor"))
class Py2OrderedDict(list):  # Python 2 reduced an OrderedDict to OrderedDict([[k, v], ...])
    def __reduce__(self):
        return (collections.OrderedDict, ([list(item) for item in self],))
tensors, state = {}, []
for name, storage_key, storage_name, offset, size, stride in spec["entries"]:
    tensor = Tensor(storage_key, storage_name, offset, size, stride)
    tensors[id(tensor)] = tensor
    state.append((name, tensor))
class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return str(id(obj)) if isinstance(obj, Tensor) else None
def dumps(obj):
    return pickle.dumps(obj, protocol=2)
main = io.BytesIO()
Pickler(main, protocol=2).dump(Py2OrderedDict(state))
tensor_part = [dumps(len(tensors))]
for key, t in tensors.items():
    tensor_part.append(dumps((key, t.storage_key, t.type)))
    n = len(t.size)
    tensor_part.append(struct.pack(f"<q{n}q{n}qq", n, *t.size, *t.stride, t.offset))
storage_part = [dumps(len(spec["storages"]))]
for key, name, numel, data in spec["storages"]:
    storage_part.append(dumps((key, "cpu", torch_class(name))))
    storage_part.append(struct.pack("<q", numel) + bytes.fromhex(data))
storage_part.append(dumps([tuple(view) for view in spec["views"]]))
with tarfile.open(spec["path"], "w:", format=tarfile.PAX_FORMAT) as tar:
    for name, data in (("sys_info", dumps({"little_endian": True})), ("pickle", main.getvalue()),
                       ("tensors", b"".join(tensor_part)), ("storages", b"".join(storage_part))):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
"""


def fake_torch_pickle(entries, legacy=False, **options) -> bytes:
    spec = json.dumps({"entries": entries, "legacy": legacy, **options})
    result = subprocess.run([sys.executable, "-c", FAKE_TORCH_PICKLER, spec], capture_output=True,
                            check=True, timeout=60)
    return result.stdout


def views_example():
    """Three views of one 24-float base, a float16 matrix and a 0-d int64, with their layout
    derived by hand: (name, key, storage, numel, offset, size, stride)."""
    base = np.arange(24, dtype=np.float32) * 0.5 - 3.0
    tensors = {
        "a": base[2:14].reshape(3, 4),           # offset 2, contiguous
        "b": base.reshape(4, 6)[:, ::2],         # offset 0, strides (6, 2)
        "c": base[2:14].reshape(3, 4).T,         # offset 2, strides (1, 4)
        "w": np.arange(6, dtype=np.float16).reshape(2, 3),
        "n": np.array(5, dtype=np.int64),
    }
    layout = [
        ["a", "0", "FloatStorage", 24, 2, [3, 4], [4, 1], False],
        ["b", "0", "FloatStorage", 24, 0, [4, 3], [6, 2], False],
        ["c", "0", "FloatStorage", 24, 2, [4, 3], [1, 4], False],
        ["w", "1", "HalfStorage", 6, 0, [2, 3], [3, 1], False],
        ["n", "2", "LongStorage", 1, 0, [], [], False],
    ]
    storages = {"0": base.tobytes(), "1": tensors["w"].tobytes(), "2": tensors["n"].tobytes()}
    return tensors, layout, storages


def split_legacy(data: bytes):
    """Walk a legacy stream with pickletools: -> (list of the 5 pickles' bytes, raw tail)."""
    pickles, position = [], 0
    for _ in range(5):
        for opcode, _, offset in pickletools.genops(io.BytesIO(data[position:])):
            if opcode.name == "STOP":
                pickles.append(data[position:position + offset + 1])
                position += offset + 1
                break
    return pickles, data[position:]


def write_legacy(path, data_pkl, storages):
    """A legacy stream around ``data_pkl``; ``storages``: {key: (numel, bytes)}."""
    keys = sorted(storages)
    parts = [pickle.dumps(x, protocol=2) for x in (MAGIC, 1001, {"little_endian": True})]
    parts += [data_pkl, pickle.dumps(keys, protocol=2)]
    parts += [struct.pack("<q", storages[k][0]) + storages[k][1] for k in keys]
    path.write_bytes(b"".join(parts))


def assert_same_arrays(loaded, expected):
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        value = np.asarray(value)
        assert loaded[key].shape == value.shape, key
        np.testing.assert_array_equal(loaded[key], value.astype(loaded[key].dtype), err_msg=key)


def write_torch03_tar(path, entries, storages, views):
    spec = {"path": str(path), "entries": entries, "views": views,
            "storages": [[key, name, numel, data.hex()] for key, name, numel, data in storages]}
    subprocess.run([sys.executable, "-c", FAKE_TORCH03_SAVE, json.dumps(spec)], check=True,
                   timeout=60)
