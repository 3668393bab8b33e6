"""Write PyTorch ``.pth`` state dicts that ``torch.load`` reads, without torch (design.md §9, dec. 2).

The tests build their PyTorch checkpoints with it (the package only reads them). The layout is what
``torch.save`` writes:

* zip (default; the layout of torch 1.13 to 2.0, which every torch >= 1.6 reads): records
  ``archive/data.pkl``, ``archive/byteorder`` ("little"), ``archive/data/<key>`` (keys "0", "1",
  ... in lexicographic order) and ``archive/version`` ("3\\n"), stored uncompressed, each record's
  bytes aligned to 64 bytes by an ``FB`` extra field padded with ``Z``
  (caffe2/serialize/inline_container.cc ``getPadding``). Newer torch also writes
  ``.format_version``, ``.storage_alignment`` and ``.data/serialization_id``; no reader needs them;
* legacy (``legacy=True``, torch < 1.6 and ``_use_new_zipfile_serialization=False``): pickles of
  the magic number, the protocol version 1001 and the sys-info dict, the object, the sorted storage
  keys, then per key an int64 element count and the raw little-endian bytes.

``data.pkl`` is a protocol-2 pickle emitted opcode by opcode in the order CPython's pickler writes
for torch's reduce protocol: an ``OrderedDict`` whose values reduce to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` with the
storage as the persistent id ``('storage', torch.FloatStorage, key, 'cpu', numel)``. Arrays that
are numpy views of one C-contiguous base share one storage, with their offset and strides kept.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

from mpanet_tf.interop.torch_pickle import STORAGE_DTYPES
from mpanet_tf.interop.torch_state import LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION

#: numpy dtype name -> torch storage class name.
NUMPY_STORAGES = {
    "float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "int32": "IntStorage",
    "int16": "ShortStorage", "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage", "complex128": "ComplexDoubleStorage",
}
ZIP_VERSION = b"3\n"
ALIGNMENT = 64
_DATE = (1980, 1, 1, 0, 0, 0)


class _Global(collections.namedtuple("_Global", "module name")):
    """A global reference written as the GLOBAL opcode (``torch.FloatStorage``, ...)."""

    __slots__ = ()


class _Tensor(collections.namedtuple("_Tensor", "storage_id offset size stride")):
    """One tensor to pickle; ``storage_id`` is a ``(key, storage name, numel)`` triple."""

    __slots__ = ()


class _Pickler:
    """Protocol-2 opcodes for the few types a state dict holds, with CPython's memo behaviour."""

    def __init__(self, legacy: bool):
        self.out, self.memo, self.legacy = io.BytesIO(), {}, legacy

    def dump(self, obj) -> bytes:
        self.out.write(b"\x80\x02")
        self.save(obj)
        self.out.write(b".")
        return self.out.getvalue()

    def _memoize(self, key=None):
        index = len(self.memo)
        self.memo[key if key is not None else ("anon", index)] = index
        self.out.write(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def _get(self, key) -> bool:
        index = self.memo.get(key)
        if index is None:
            return False
        self.out.write(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))
        return True

    def save(self, obj):
        write = self.out.write
        if obj is None:
            write(b"N")
        elif obj is True or obj is False:
            write(b"\x88" if obj else b"\x89")
        elif isinstance(obj, (int, np.integer)):
            self._save_int(int(obj))
        elif isinstance(obj, (float, np.floating)):
            write(b"G" + struct.pack(">d", float(obj)))
        elif isinstance(obj, str):
            if not self._get(("str", obj)):
                data = obj.encode("utf-8", "surrogatepass")
                write(b"X" + struct.pack("<I", len(data)) + data)
                self._memoize(("str", obj))
        elif isinstance(obj, _Global):
            if not self._get(obj):
                write(b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n")
                self._memoize(obj)
        elif isinstance(obj, _Tensor):
            self._save_tensor(obj)
        elif isinstance(obj, tuple):
            self._save_tuple(obj)
        elif isinstance(obj, list):
            write(b"]")
            self._memoize()
            self._batch(obj, pairs=False)
        elif isinstance(obj, collections.OrderedDict):
            self.save(_Global("collections", "OrderedDict"))
            write(b")R")
            self._memoize()
            self._batch(list(obj.items()), pairs=True)
        elif isinstance(obj, dict):
            write(b"}")
            self._memoize()
            self._batch(list(obj.items()), pairs=True)
        else:
            raise TypeError(f"cannot write a {type(obj).__name__} into a torch state dict")

    def _save_int(self, value):
        if 0 <= value <= 0xFF:
            self.out.write(b"K" + struct.pack("<B", value))
        elif 0 <= value <= 0xFFFF:
            self.out.write(b"M" + struct.pack("<H", value))
        elif -0x80000000 <= value <= 0x7FFFFFFF:
            self.out.write(b"J" + struct.pack("<i", value))
        else:
            encoded = pickle.encode_long(value)
            self.out.write(b"\x8a" + struct.pack("<B", len(encoded)) + encoded)

    def _save_tuple(self, items):
        if not items:
            self.out.write(b")")
            return
        if len(items) > 3:
            self.out.write(b"(")
        for item in items:
            self.save(item)
        self.out.write(b"t" if len(items) > 3 else b"\x85\x86\x87"[len(items) - 1:len(items)])
        self._memoize()

    def _batch(self, items, pairs: bool, size=1000):
        """CPython's _batch_setitems (pairs) / _batch_appends: MARK ... SETITEMS/APPENDS per
        1000 items, a lone item with SETITEM/APPEND."""
        one, many = (b"s", b"u") if pairs else (b"a", b"e")
        for start in range(0, len(items), size):
            batch = items[start:start + size]
            if len(batch) > 1:
                self.out.write(b"(")
            for item in batch:
                for part in (item if pairs else (item,)):
                    self.save(part)
            self.out.write(many if len(batch) > 1 else one)

    def _save_tensor(self, tensor: _Tensor):
        key, storage_name, numel = tensor.storage_id
        self.save(_Global("torch._utils", "_rebuild_tensor_v2"))
        self.out.write(b"(")
        pid = ("storage", _Global("torch", storage_name), key, "cpu", numel)
        self._save_tuple(pid + (None,) if self.legacy else pid)
        self.out.write(b"Q")  # BINPERSID
        for item in (tensor.offset, tuple(tensor.size), tuple(tensor.stride), False,
                     collections.OrderedDict()):
            self.save(item)
        self.out.write(b"t")
        self._memoize()
        self.out.write(b"R")
        self._memoize()


def _contiguous_strides(shape) -> list[int]:
    """torch's contiguous strides, in elements: stride[i] = stride[i+1] * max(size[i+1], 1)."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.insert(0, step)
        step *= max(size, 1)
    return strides


def _root(array: np.ndarray):
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    return base


def _plan(tensors) -> tuple[dict, dict]:
    """-> ({name: _Tensor}, {key: (storage name, bytes)}); views of one base share its storage."""
    refs, storages, keys = {}, {}, {}
    for name, value in tensors.items():
        array = np.asarray(value)
        dtype_name = array.dtype.name
        if dtype_name not in NUMPY_STORAGES:
            raise TypeError(f"tensor {name!r} has dtype {array.dtype}, which torch cannot store; "
                            f"use one of {', '.join(NUMPY_STORAGES)}")
        root, itemsize = _root(array), array.dtype.itemsize
        shared = (isinstance(root, np.ndarray) and root.dtype == array.dtype and array.size > 0
                  and root.flags.c_contiguous and array.dtype.byteorder in "=|<")
        if shared:
            offset = (array.__array_interface__["data"][0]
                      - root.__array_interface__["data"][0])
            stride = [s // itemsize for s in array.strides]
            last = offset // itemsize + sum((n - 1) * s for n, s in zip(array.shape, stride))
            shared = (offset >= 0 and offset % itemsize == 0 and last < root.size
                      and all(s >= 0 and s % itemsize == 0 for s in array.strides))
        if not shared:
            root = array = np.ascontiguousarray(array, array.dtype.newbyteorder("<"))
            offset, stride = 0, _contiguous_strides(array.shape)
        if id(root) not in keys:
            keys[id(root)] = key = str(len(keys))
            storages[key] = (NUMPY_STORAGES[dtype_name], root)
        key = keys[id(root)]
        refs[name] = _Tensor((key, NUMPY_STORAGES[dtype_name], int(root.size)),
                             offset // itemsize, tuple(array.shape), tuple(stride))
    return refs, {k: (n, np.ascontiguousarray(a).tobytes()) for k, (n, a) in storages.items()}


def _top_level(refs, wrap_key, extra):
    state = collections.OrderedDict(refs)
    if wrap_key is None:
        state.update(extra or {})
        return state
    return {wrap_key: state, **(extra or {})}


def _write_zip(path, data_pkl: bytes, storages: dict):
    records = [("data.pkl", data_pkl), ("byteorder", b"little")]
    records += [(f"data/{key}", storages[key][1]) for key in sorted(storages)]
    records.append(("version", ZIP_VERSION))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, data in records:
            info = zipfile.ZipInfo(f"archive/{name}", date_time=_DATE)
            start = archive.fp.tell() + 30 + len(info.filename.encode()) + 4
            padding = -start % ALIGNMENT
            info.extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
            archive.writestr(info, data)


def _write_legacy(path, data_pkl: bytes, storages: dict):
    sys_info = dict(protocol_version=LEGACY_PROTOCOL_VERSION, little_endian=True,
                    type_sizes=dict(short=2, int=4, long=4))
    keys = sorted(storages)
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info):
            handle.write(pickle.dumps(header, protocol=2))
        handle.write(data_pkl)
        handle.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            name, data = storages[key]
            handle.write(struct.pack("<q", len(data) // np.dtype(STORAGE_DTYPES[name]).itemsize))
            handle.write(data)


def save_state_dict(path, tensors, legacy: bool = False, wrap_key: str | None = None,
                    extra: dict | None = None) -> None:
    """Write ``tensors`` ({torch key: array in torch layout}) as a file ``torch.load`` reads.

    Args:
        path: destination ``.pth``; overwritten.
        tensors: ordered mapping of key -> numpy array (any of NUMPY_STORAGES' dtypes; ml_dtypes
            bfloat16 included). Arrays that are views of one C-contiguous numpy base are written as
            one shared storage with their offset and strides, as torch saves tensor views.
        legacy: write the pre-1.6 pickle stream instead of the zip archive.
        wrap_key: nest the state dict under this key (``{"state_dict": {...}}``).
        extra: plain values (int, float, str, lists, dicts) written beside the state dict, e.g.
            ``{"epoch": 140}``.
    """
    refs, storages = _plan(tensors)
    data_pkl = _Pickler(legacy).dump(_top_level(refs, wrap_key, extra))
    path = os.fspath(path)
    (_write_legacy if legacy else _write_zip)(path, data_pkl, storages)
