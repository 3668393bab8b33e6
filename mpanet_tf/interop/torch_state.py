"""Read PyTorch ``.pth`` state dicts safely, without importing torch (design.md §9, decision 2).

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

Nor can a small hostile file make the reader hang or allocate gigabytes: only a regular file is
opened (never ``/dev/zero`` or a named pipe, which would not end or would block), every size an
archive declares is checked before anything is read or decompressed (a pickle at most
:data:`MAX_PICKLE_BYTES`; storages at most what a ResNet-50 or MPANet checkpoint could need,
:data:`MAX_STORAGE_BYTES`, and a zip's decompressed storages at most
:data:`MAX_INFLATION` times the file plus :data:`INFLATION_SLACK_BYTES`), and the tensors built
from the storages are bounded by :func:`torch_pickle.tensor_budget`.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import tarfile
import zipfile
import zlib

import numpy as np

from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.torch_pickle import (
    RESAVE_HINT,
    STORAGE_DTYPES,
    Budget,
    SafeUnpickler,
    Storage,
    StorageType,
    TensorRef,
    TorchName,
    check_key,
    materialize,
    short_repr,
    storage_pid,
    tensor_budget,
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
#: Largest pickle (``data.pkl``, a tar member) read: a 334-tensor state dict's is ~60 kB.
MAX_PICKLE_BYTES = 32 << 20
#: Largest storage data one file may hold: MPANet's whole training checkpoint (weights and Adam
#: moments, ~0.7 GB) fits with room to spare; a ResNet-50 state dict is 0.1 GB.
MAX_STORAGE_BYTES = 4 << 30
#: A zip record may inflate to at most this many times the file's size (torch stores records
#: uncompressed; deflated float weights shrink by ~10 %), plus the slack for small files.
MAX_INFLATION = 16
INFLATION_SLACK_BYTES = 64 << 20


def open_regular_file(path):
    """Open ``path`` for binary reading if it is a regular file -> (file object, size in bytes).

    A device (``/dev/zero`` never ends), a named pipe (opening it would wait for a writer) or a
    folder is refused with one line; the pipe is opened non-blocking, so nothing waits.

    Raises:
        CheckpointError: missing, unreadable or not a regular file.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise CheckpointError(f"cannot read checkpoint {path} ({error.strerror or error}); "
                              "check the path") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
        raise CheckpointError(f"checkpoint {path} is {kind}; pass a .pth file written by "
                              "torch.save")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb"), int(info.st_size)


def _storage_limit(path, needed: int, used: int, limit: int) -> None:
    if used + needed > limit:
        raise CheckpointError(f"{path} is corrupt or not a state dict (its storages declare "
                              f"{used + needed} bytes, more than the {limit} such a file can hold); "
                              "re-download or re-save it")


def _read_member(archive, info, nbytes, path):
    """The first ``nbytes`` bytes of a zip member, inflated as a stream (never more)."""
    with archive.open(info) as member:
        data = member.read(nbytes)
    if len(data) < nbytes:
        raise CheckpointError(f"{path} is truncated (record {info.filename} holds {len(data)} of "
                              f"{nbytes} bytes); re-download it")
    return data


def _load_zip(handle, path, file_size):
    with zipfile.ZipFile(handle) as archive:
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
            info = archive.getinfo(f"{prefix}/byteorder")
            big_endian = _read_member(archive, info, min(info.file_size, 16), path).strip() == b"big"
        limit = min(MAX_STORAGE_BYTES, MAX_INFLATION * file_size + INFLATION_SLACK_BYTES)
        used = [0]

        def read_record(key, nbytes):
            try:
                info = archive.getinfo(f"{prefix}/data/{key}")
            except KeyError:
                raise CheckpointError(f"{path} is corrupt (record {prefix}/data/{key} is "
                                      "missing); re-download or re-save it") from None
            if info.file_size < nbytes:
                raise CheckpointError(f"{path} is truncated (record {info.filename} holds "
                                      f"{info.file_size} of {nbytes} bytes); re-download it")
            _storage_limit(path, nbytes, used[0], limit)
            used[0] += nbytes
            return _read_member(archive, info, nbytes, path)

        storages, views = {}, {}
        pickle_info = archive.getinfo(f"{prefix}/data.pkl")
        if pickle_info.file_size > MAX_PICKLE_BYTES:
            raise CheckpointError(f"{path} is not a state dict (its data.pkl declares "
                                  f"{pickle_info.file_size} bytes, more than {MAX_PICKLE_BYTES})")
        stream = io.BytesIO(_read_member(archive, pickle_info, pickle_info.file_size, path))
        obj = SafeUnpickler(stream, path, lambda pid: storage_pid(
            pid, path, storages, views, read_record)).load()
    return obj, big_endian, storages.values()


def _read_count_and_bytes(stream, path, name, itemsize):
    """int64 element count then that many elements' bytes -> (count, bytes)."""
    header = stream.read(8)
    if len(header) < 8:
        raise CheckpointError(f"{path} is truncated (storage {name} has no data); re-download it")
    (numel,) = struct.unpack("<q", header)
    if numel < 0:
        raise CheckpointError(f"{path} is corrupt (storage {name} of {numel} elements)")
    return numel, stream.read(numel * itemsize)


def _key(key, path):
    """A storage or tensor key read from the file: a small str/bytes/int, safe to hash."""
    if isinstance(key, bytes):
        key = key.decode("ascii")
    if type(key) not in (str, int):
        raise CheckpointError(f"{path} is corrupt (storage key {short_repr(key)}); re-save it")
    return check_key(key)


def _load_legacy(path, data: bytes):
    stream, storages, views = io.BytesIO(data), {}, {}
    if SafeUnpickler(stream, path).load() != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{path} is a pickle but not a PyTorch checkpoint (bad magic "
                              "number); pass a .pth file written by torch.save")
    version = SafeUnpickler(stream, path).load()
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{path} uses legacy protocol {short_repr(version)}, not "
                              f"{LEGACY_PROTOCOL_VERSION}; {RESAVE_HINT}")
    SafeUnpickler(stream, path).load()  # sys info (C type sizes); the data is little-endian always
    obj = SafeUnpickler(stream, path, lambda pid: storage_pid(pid, path, storages, views)).load()
    keys = SafeUnpickler(stream, path).load()
    if not isinstance(keys, list):
        raise CheckpointError(f"{path} is corrupt (storage keys {short_repr(keys)}); re-save it")
    for key in keys:
        storage = storages.get(_key(key, path))
        if not isinstance(storage, Storage) or storage.data is not None:
            raise CheckpointError(f"{path} is corrupt (data for unknown storage {short_repr(key)})")
        itemsize = np.dtype(STORAGE_DTYPES[storage.name]).itemsize
        numel, storage.data = _read_count_and_bytes(stream, path, key, itemsize)
        if numel != storage.numel:
            raise CheckpointError(f"{path} is corrupt (storage {short_repr(key)} holds {numel} "
                                  f"elements, {storage.numel} expected); re-download or re-save it")
    return obj, False, storages.values()


def _tar_member(tar, name, path, file_size):
    """The bytes of a regular tar member no larger than the file (a sparse member could claim
    gigabytes of holes) and, for pickles, no larger than :data:`MAX_PICKLE_BYTES`."""
    try:
        member = tar.getmember(name)
    except KeyError:
        member = None
    if member is None or not member.isreg():
        raise CheckpointError(f"{path} is a tar archive without '{name}', not a "
                              f"PyTorch checkpoint; {RESAVE_HINT}")
    limit = file_size if name == "storages" else min(file_size, MAX_PICKLE_BYTES)
    if member.size > limit or member.issparse():
        raise CheckpointError(f"{path} is corrupt (tar member '{name}' declares {member.size} "
                              f"bytes in a {file_size}-byte file); re-download or re-save it")
    data = tar.extractfile(member).read(member.size)
    if len(data) < member.size:
        raise CheckpointError(f"{path} is truncated (tar member '{name}'); re-download it")
    return data


def _load_tar(handle, path, file_size):
    """torch <= 0.3: the object pickle refers to tensors by key; tensors to storages by key."""
    with tarfile.open(fileobj=handle, mode="r:") as tar:
        members = {name: _tar_member(tar, name, path, file_size)
                   for name in ("storages", "tensors", "pickle")}
    storages, tensors = {}, {}
    stream = io.BytesIO(members["storages"])
    for _ in range(SafeUnpickler(stream, path).load()):
        key, _location, storage_type = SafeUnpickler(stream, path).load()
        key = _key(key, path)
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{path} is corrupt (storage {short_repr(key)} of type "
                                  f"{short_repr(storage_type)})")
        itemsize = np.dtype(STORAGE_DTYPES[storage_type.name]).itemsize
        numel, data = _read_count_and_bytes(stream, path, key, itemsize)
        storages[key] = Storage(storage_type.name, numel, data=data)
    roots = list(storages.values())
    for view_key, root_key, offset, numel in SafeUnpickler(stream, path).load():
        root = storages[_key(root_key, path)]
        storages[_key(view_key, path)] = Storage(root.name, int(numel), root=root, offset=int(offset))
    stream = io.BytesIO(members["tensors"])
    for _ in range(SafeUnpickler(stream, path).load()):
        key, storage_key, tensor_type = SafeUnpickler(stream, path).load()
        (ndim,) = struct.unpack("<i", stream.read(4))
        stream.read(4)  # ndim was written as 8 bytes
        if not 0 <= ndim <= 64:
            raise CheckpointError(f"{path} is corrupt (a tensor of {ndim} dimensions)")
        size = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        stride = struct.unpack(f"<{ndim}q", stream.read(8 * ndim))
        (offset,) = struct.unpack("<q", stream.read(8))
        storage = None if storage_key is None else storages.get(_key(storage_key, path))
        if storage is None and storage_key is None and isinstance(tensor_type, TorchName):
            storage = Storage(tensor_type.name.replace("Tensor", "Storage"), 0, data=b"")
        tensors[_key(key, path)] = TensorRef(storage, offset, size, stride, None)

    def tensor_pid(pid):
        if isinstance(pid, tuple):  # (module class, source file, source): a whole nn.Module
            raise CheckpointError(f"{path} holds a whole pickled nn.Module, not a state dict; "
                                  f"{RESAVE_HINT}")
        key = int(pid)
        if key in tensors:
            return tensors[key]
        return storages[key]

    obj = SafeUnpickler(io.BytesIO(members["pickle"]), path, tensor_pid).load()
    return obj, False, roots


def load_object(path):
    """Safely unpickle a torch file: the top-level object with every tensor as a numpy array.

    Raises:
        CheckpointError: missing, empty, not a regular file, not a torch file, truncated/corrupt,
            larger than a state dict can be, or naming any global beyond tensors and plain
            containers (one line naming the file and the refused name).
    """
    path = os.fspath(path)
    handle, file_size = open_regular_file(path)
    with handle:
        if file_size == 0:
            raise CheckpointError(f"checkpoint {path} is empty; re-download or re-save it")
        try:
            head = handle.read(4)
            handle.seek(0)
            if head == b"PK\x03\x04" or zipfile.is_zipfile(handle):
                handle.seek(0)
                obj, big_endian, storages = _load_zip(handle, path, file_size)
            elif head[:1] == b"\x80":
                handle.seek(0)
                obj, big_endian, storages = _load_legacy(path, handle.read(file_size))
            elif _is_tar(handle):
                handle.seek(0)
                obj, big_endian, storages = _load_tar(handle, path, file_size)
            else:
                raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither a torch zip or "
                                      "tar archive nor a pickle); pass a .pth file written by "
                                      "torch.save")
            budget = Budget(path, tensor_budget(storages))
            return materialize(obj, path, big_endian, budget)
        except _CORRUPT as error:
            detail = " ".join(str(error).split())[:100]
            raise CheckpointError(f"{path} is truncated or corrupt ({type(error).__name__}: "
                                  f"{detail}); re-download or re-save it") from None


def _is_tar(handle) -> bool:
    handle.seek(0)
    try:
        with tarfile.open(fileobj=handle, mode="r:"):
            return True
    except tarfile.TarError:
        return False


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
        keys = ", ".join(short_repr(k) for k in list(obj)[:6])
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
