"""Read PyTorch ``.pth`` state dicts safely, without importing torch (facts §9, decision 2).

Three file layouts exist, all read here:

* zip archive (torch >= 1.6): ``<prefix>/data.pkl`` (a protocol-2 pickle), one record
  ``<prefix>/data/<key>`` per storage, ``<prefix>/version`` and ``<prefix>/byteorder``;
* legacy stream (torch 0.4 to 1.5): five pickles back to back (magic number, protocol version
  1001, a sys-info dict, the object, the storage keys), then per key an int64 element count and
  the raw little-endian bytes;
* tar archive (torch <= 0.3, e.g. torchvision's ``resnet50-19c8e357.pth``): members ``sys_info``,
  ``pickle`` (the object; tensors are persistent ids), ``tensors`` (per tensor a pickled
  ``(key, storage key, type)`` then int64 ndim, sizes, strides and offset) and ``storages`` (per
  storage a pickled ``(key, location, type)``, an int64 element count and the bytes; then the
  list of storage views).

Every pickle goes through :class:`torch_pickle.SafeUnpickler`, which refuses any global beyond
tensors and plain containers, so no code named by the file ever runs.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.torch_pickle import (
    RESAVE_HINT,
    STORAGE_DTYPES,
    SafeUnpickler,
    Storage,
    StorageType,
    TensorRef,
    TorchName,
    materialize,
    storage_pid,
)

#: First pickle of a legacy (torch 0.4 to 1.5) file, and the second one.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
#: Keys under which training scripts commonly nest the state dict.
STATE_DICT_KEYS = ("state_dict", "model", "model_state_dict", "net", "module", "state")
# What a malformed pickle or archive raises inside the standard library.
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, struct.error, UnicodeDecodeError, OverflowError, zipfile.BadZipFile,
            tarfile.TarError, zlib.error, RecursionError, MemoryError)


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] if names and "/" in names[0] else None
        if prefix is None or f"{prefix}/data.pkl" not in names:
            if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
                raise CheckpointError(f"{path} is a TorchScript archive (torch.jit.save), not a "
                                      f"state dict; {RESAVE_HINT}")
            raise CheckpointError(f"{path} is a zip archive without data.pkl, not a PyTorch "
                                  f"checkpoint; {RESAVE_HINT}")
        big_endian = False
        if f"{prefix}/byteorder" in names:
            big_endian = archive.read(f"{prefix}/byteorder").strip() == b"big"

        def read_record(key):
            try:
                return archive.read(f"{prefix}/data/{key}")
            except KeyError:
                raise CheckpointError(f"{path} is corrupt (record {prefix}/data/{key} is "
                                      "missing); re-download or re-save it") from None

        storages, views = {}, {}
        stream = io.BytesIO(archive.read(f"{prefix}/data.pkl"))
        obj = SafeUnpickler(stream, path, lambda pid: storage_pid(
            pid, path, storages, views, read_record)).load()
    return obj, big_endian


def _read_count_and_bytes(stream, path, name, itemsize):
    """int64 element count then that many elements' bytes -> (count, bytes)."""
    header = stream.read(8)
    if len(header) < 8:
        raise CheckpointError(f"{path} is truncated (storage {name} has no data); re-download it")
    (numel,) = struct.unpack("<q", header)
    if numel < 0:
        raise CheckpointError(f"{path} is corrupt (storage {name} of {numel} elements)")
    return numel, stream.read(numel * itemsize)


def _load_legacy(path, data: bytes):
    stream, storages, views = io.BytesIO(data), {}, {}
    if SafeUnpickler(stream, path).load() != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{path} is a pickle but not a PyTorch checkpoint (bad magic "
                              "number); pass a .pth file written by torch.save")
    version = SafeUnpickler(stream, path).load()
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{path} uses legacy protocol {version!r}, not "
                              f"{LEGACY_PROTOCOL_VERSION}; {RESAVE_HINT}")
    SafeUnpickler(stream, path).load()  # sys info (C type sizes); the data is little-endian always
    obj = SafeUnpickler(stream, path, lambda pid: storage_pid(pid, path, storages, views)).load()
    for key in SafeUnpickler(stream, path).load():
        storage = storages.get(key.decode("ascii") if isinstance(key, bytes) else key)
        if not isinstance(storage, Storage):
            raise CheckpointError(f"{path} is corrupt (data for unknown storage {key!r})")
        itemsize = np.dtype(STORAGE_DTYPES[storage.name]).itemsize
        numel, storage.data = _read_count_and_bytes(stream, path, key, itemsize)
        if numel != storage.numel:
            raise CheckpointError(f"{path} is corrupt (storage {key} holds {numel} elements, "
                                  f"{storage.numel} expected); re-download or re-save it")
    return obj, False


def _load_tar(path):
    """torch <= 0.3: the object pickle refers to tensors by key; tensors to storages by key."""
    with tarfile.open(path, mode="r:") as tar:
        members = {}
        for name in ("storages", "tensors", "pickle"):
            member = tar.extractfile(name)
            if member is None:
                raise CheckpointError(f"{path} is a tar archive without '{name}', not a "
                                      f"PyTorch checkpoint; {RESAVE_HINT}")
            members[name] = member.read()
    storages, tensors = {}, {}
    stream = io.BytesIO(members["storages"])
    for _ in range(SafeUnpickler(stream, path).load()):
        key, _location, storage_type = SafeUnpickler(stream, path).load()
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{path} is corrupt (storage {key!r} of type {storage_type!r})")
        itemsize = np.dtype(STORAGE_DTYPES[storage_type.name]).itemsize
        numel, data = _read_count_and_bytes(stream, path, key, itemsize)
        storages[key] = Storage(storage_type.name, numel, data=data)
    for view_key, root_key, offset, numel in SafeUnpickler(stream, path).load():
        root = storages[root_key]
        storages[view_key] = Storage(root.name, int(numel), root=root, offset=int(offset))
    stream = io.BytesIO(members["tensors"])
    for _ in range(SafeUnpickler(stream, path).load()):
        key, storage_key, tensor_type = SafeUnpickler(stream, path).load()
        (ndim,) = struct.unpack("<i", stream.read(4))
        stream.read(4)  # ndim was written as 8 bytes
        size = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        stride = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        (offset,) = struct.unpack("<q", stream.read(8))
        storage = storages.get(storage_key)
        if storage is None and storage_key is None and isinstance(tensor_type, TorchName):
            storage = Storage(tensor_type.name.replace("Tensor", "Storage"), 0, data=b"")
        tensors[key] = TensorRef(storage, offset, size, stride, None)

    def tensor_pid(pid):
        if isinstance(pid, tuple):  # (module class, source file, source): a whole nn.Module
            raise CheckpointError(f"{path} holds a whole pickled nn.Module, not a state dict; "
                                  f"{RESAVE_HINT}")
        key = int(pid)
        if key in tensors:
            return tensors[key]
        return storages[key]

    obj = SafeUnpickler(io.BytesIO(members["pickle"]), path, tensor_pid).load()
    return obj, False


def load_object(path):
    """Safely unpickle a torch file: the top-level object with every tensor as a numpy array.

    Raises:
        CheckpointError: missing, empty, not a torch file, truncated/corrupt, or naming any global
            beyond tensors and plain containers (one line naming the file and the refused name).
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path} ({error.strerror or error}); "
                              "check the path") from None
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty; re-download or re-save it")
    try:
        if data[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(data)):
            obj, big_endian = _load_zip(path)
        elif data[:1] == b"\x80":
            obj, big_endian = _load_legacy(path, data)
        elif tarfile.is_tarfile(path):
            obj, big_endian = _load_tar(path)
        else:
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch zip or "
                                  "tar archive nor a pickle); pass a .pth file written by "
                                  "torch.save")
        return materialize(obj, path, big_endian)
    except _CORRUPT as error:
        detail = " ".join(str(error).split())[:100]
        raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__}: {detail}); "
                              "re-download or re-save it") from None


def find_state_dict(obj, path="checkpoint") -> dict[str, np.ndarray]:
    """The state dict inside a loaded object: ``obj`` itself or ``obj[k]`` for k in STATE_DICT_KEYS.

    Only string keys with array values are kept (an ``epoch`` int beside the tensors is dropped), in
    file order; a leading ``module.`` (DataParallel) is stripped from every key.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict; "
                              f"{RESAVE_HINT}")
    for key in STATE_DICT_KEYS:
        nested = obj.get(key)
        if isinstance(nested, dict) and any(isinstance(v, np.ndarray) for v in nested.values()):
            obj = nested
            break
    state = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, np.ndarray):
            state[key[len("module."):] if key.startswith("module.") else key] = value
    if not state:
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        raise CheckpointError(f"{path} holds no tensors at its top level nor under any of "
                              f"{', '.join(STATE_DICT_KEYS)} (top-level keys: {keys}); "
                              f"{RESAVE_HINT}")
    return state


def load_state_dict(path) -> dict[str, np.ndarray]:
    """Read a ``.pth`` file (zip, legacy or tar format) -> {torch key: numpy array}, in file order.

    Arrays keep torch's layouts (conv ``(out, in, kh, kw)``, linear ``(out, in)``); see
    :mod:`mpanet_tf.interop.convert` for the Keras layouts. Never imports torch, never runs code
    from the file.
    """
    return find_state_dict(load_object(path), os.fspath(path))
