"""The safe unpickler behind :mod:`torch_state`: tensors and plain containers, never code.

torch pickles a tensor as ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
requires_grad, backward_hooks[, metadata])`` (``_rebuild_tensor`` in torch 0.3, wrapped in
``_rebuild_parameter`` for an ``nn.Parameter``), and a storage as a persistent id naming its type
(the global ``torch.FloatStorage``) and key. :class:`SafeUnpickler` maps exactly those names, plus
``collections.OrderedDict`` and a few harmless builtins, to inert stand-ins of ours; any other
global (``os.system``, ``builtins.eval``, a model class) raises :class:`CheckpointError` before it
is called. Nothing of torch is imported. Tensors become numpy arrays rebuilt with ``as_strided``
from (offset, size, stride) over their storage and copied out; bfloat16 becomes float32 (exact).
"""

from __future__ import annotations

import collections
import pickle

import numpy as np

from mpanet_tf.errors import CheckpointError

#: torch storage class name -> little-endian numpy dtype of its elements (bfloat16 read as raw u2).
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "ComplexFloatStorage": "<c8",
    "ComplexDoubleStorage": "<c16", "UntypedStorage": "u1",
}
#: torch dtype name (``torch.float32`` pickles as the global ``torch.float32``) -> storage name.
TORCH_DTYPE_STORAGES = {
    "float32": "FloatStorage", "float": "FloatStorage", "float64": "DoubleStorage",
    "double": "DoubleStorage", "float16": "HalfStorage", "half": "HalfStorage",
    "bfloat16": "BFloat16Storage", "int64": "LongStorage", "long": "LongStorage",
    "int32": "IntStorage", "int": "IntStorage", "int16": "ShortStorage", "short": "ShortStorage",
    "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    "complex64": "ComplexFloatStorage", "complex128": "ComplexDoubleStorage",
}
RESAVE_HINT = "re-save it with torch >= 1.6: torch.save(model.state_dict(), path)"


class StorageType(collections.namedtuple("StorageType", "name")):
    """Stand-in for ``torch.FloatStorage`` and friends (immutable: a pickle cannot alter it)."""

    __slots__ = ()


class TorchName(collections.namedtuple("TorchName", "name")):
    """Stand-in for other inert torch globals: ``torch.float32``, ``torch.FloatTensor``, ..."""

    __slots__ = ()


class TensorRef(collections.namedtuple("TensorRef", "storage offset size stride dtype")):
    """A tensor seen in a pickle; :func:`materialize` turns it into an array once bytes are read."""

    __slots__ = ()


class Storage:
    """One storage: element type name, element count, its bytes once read, or a view of a root."""

    __slots__ = ("name", "numel", "data", "root", "offset", "_array")

    def __init__(self, name, numel, root=None, offset=0, data=None):
        self.name, self.numel, self.root, self.offset, self.data = name, numel, root, offset, data
        self._array = None

    def array(self, path, big_endian=False) -> np.ndarray:
        """(numel,) array of the storage's elements in native byte order (bfloat16 as uint16)."""
        if self._array is not None:
            return self._array
        if isinstance(self.root, Storage):
            flat = self.root.array(path, big_endian)[self.offset:self.offset + self.numel]
        else:
            dtype = np.dtype(STORAGE_DTYPES[self.name])
            if not isinstance(self.data, (bytes, bytearray)):
                raise CheckpointError(f"{path} is truncated or corrupt (a storage has no data); "
                                      "re-download or re-save it")
            if len(self.data) < self.numel * dtype.itemsize:
                raise CheckpointError(f"{path} is truncated (a storage holds {len(self.data)} of "
                                      f"{self.numel * dtype.itemsize} bytes); re-download it")
            flat = np.frombuffer(self.data, dtype.newbyteorder(">" if big_endian else "<"),
                                 count=self.numel).astype(dtype.newbyteorder("="))
        if flat.size != self.numel:
            raise CheckpointError(f"{path} is corrupt (a storage view lies outside its storage)")
        self._array = flat
        return flat


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that knows only tensors, storages and plain containers.

    Args:
        stream: binary file object positioned at a pickle.
        path: the checkpoint's name, for messages.
        persistent_load: ``pid -> object`` for the format at hand (storages or tensors); None
            refuses persistent ids.
    """

    def __init__(self, stream, path, persistent_load=None):
        super().__init__(stream, encoding="latin1")
        self.path, self._persistent = path, persistent_load
        # Bound methods, namedtuples and builtin types only: nothing a BUILD opcode can alter.
        rebuilders = {"_rebuild_tensor": self._rebuild_tensor,
                      "_rebuild_tensor_v2": self._rebuild_tensor,
                      "_rebuild_tensor_v3": self._rebuild_tensor_v3,
                      "_rebuild_parameter": self._rebuild_parameter,
                      "_rebuild_parameter_with_state": self._rebuild_parameter}
        allowed = {("torch._utils", name): fn for name, fn in rebuilders.items()}
        for storage in STORAGE_DTYPES:
            allowed[("torch", storage)] = allowed[("torch.cuda", storage)] = StorageType(storage)
            tensor = storage.replace("Storage", "Tensor")
            allowed[("torch", tensor)] = allowed[("torch.cuda", tensor)] = TorchName(tensor)
        allowed.update({("torch", name): TorchName(name) for name in TORCH_DTYPE_STORAGES})
        allowed.update({
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage"),
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch", "Tensor"): TorchName("Tensor"),
            ("torch.nn.parameter", "Parameter"): TorchName("Parameter"),
            ("torch", "Size"): tuple,
            ("_codecs", "encode"): self._codecs_encode,
        })
        for module in ("builtins", "__builtin__"):
            for value in (set, frozenset, complex, bytearray):
                allowed[(module, value.__name__)] = value
        self.allowed = allowed

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.path}: the pickle asks for the global {module}.{name}; refusing to run "
                f"code from a checkpoint (only tensors and plain containers are read); "
                f"{RESAVE_HINT}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        return self._persistent(pid)

    # Stand-ins of torch's rebuild functions: they only record what the pickle says.
    def _rebuild_tensor(self, storage, storage_offset, size, stride, *unused):
        return TensorRef(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, hooks,
                           dtype, *unused):
        if not isinstance(dtype, TorchName) or dtype.name not in TORCH_DTYPE_STORAGES:
            raise pickle.UnpicklingError(f"unknown tensor dtype {dtype!r}")
        return TensorRef(storage, storage_offset, size, stride, TORCH_DTYPE_STORAGES[dtype.name])

    def _rebuild_parameter(self, data, *unused):
        return data

    def _rebuild_from_type(self, func, new_type, args, state=None):
        if func not in (self._rebuild_tensor, self._rebuild_tensor_v3, self._rebuild_parameter):
            raise pickle.UnpicklingError("_rebuild_from_type_v2 of a non-tensor")
        return func(*args)

    def _codecs_encode(self, text, encoding="utf-8"):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise pickle.UnpicklingError("_codecs.encode is only read for protocol-2 bytes")
        return text.encode("latin1")


def storage_pid(pid, path, storages: dict, views: dict, read_record=None):
    """Resolve ``('storage', type, key, location, numel[, view_metadata])`` to a :class:`Storage`.

    ``storages`` maps key -> Storage across a file; ``read_record(key)`` fetches a zip record's
    bytes. ``view_metadata`` ``(view_key, offset, numel)`` (legacy files) makes a view of the root.
    """
    if not isinstance(pid, tuple) or not pid:
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind == "module":
        raise CheckpointError(f"{path} holds a whole pickled nn.Module, not a state dict; "
                              f"{RESAVE_HINT}")
    if kind != "storage" or len(pid) not in (5, 6):
        raise pickle.UnpicklingError(f"unknown persistent id {pid[:1]!r}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    key = key.decode("ascii") if isinstance(key, bytes) else key
    if not isinstance(storage_type, StorageType) or not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"malformed storage id {pid!r}")
    storage = storages.get(key)
    if storage is None:
        data = read_record(key) if read_record is not None else None
        storage = storages[key] = Storage(storage_type.name, numel, data=data)
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return storage
    view_key, offset, size = view
    if view_key not in views:
        views[view_key] = Storage(storage.name, int(size), root=storage, offset=int(offset))
    return views[view_key]


def _check_ints(values, path):
    if not isinstance(values, tuple) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise CheckpointError(f"{path} is corrupt (tensor size/stride {values!r}); re-save it")
    return values


def tensor_from_ref(ref: TensorRef, path, big_endian=False) -> np.ndarray:
    """Rebuild one tensor: ``as_strided`` over its storage from (offset, size, stride), copied."""
    if not isinstance(ref.storage, Storage) or not isinstance(ref.offset, int) or ref.offset < 0:
        raise CheckpointError(f"{path} is corrupt (a tensor without a valid storage); re-save it")
    size, stride = _check_ints(tuple(ref.size), path), _check_ints(tuple(ref.stride), path)
    if len(size) != len(stride):
        raise CheckpointError(f"{path} is corrupt (size {size} with stride {stride}); re-save it")
    flat = ref.storage.array(path, big_endian)
    element = ref.dtype or ref.storage.name
    if element != ref.storage.name:  # _rebuild_tensor_v3: a typed view of untyped bytes
        flat = flat.view(np.dtype(STORAGE_DTYPES[element])).astype(
            np.dtype(STORAGE_DTYPES[element]).newbyteorder("="))
    if 0 in size:
        out = np.zeros(size, flat.dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= flat.size:
            raise CheckpointError(f"{path} is corrupt (a tensor reaches element {last} of a "
                                  f"{flat.size}-element storage); re-download or re-save it")
        itemsize = flat.dtype.itemsize
        out = np.array(np.lib.stride_tricks.as_strided(
            flat[ref.offset:], shape=size, strides=[s * itemsize for s in stride], writeable=False))
    if element == "BFloat16Storage":  # bfloat16 is the upper half of a float32
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


def materialize(obj, path, big_endian=False):
    """Replace every tensor reference in nested dicts/lists/tuples by its numpy array."""
    if isinstance(obj, TensorRef):
        return tensor_from_ref(obj, path, big_endian)
    if isinstance(obj, (dict, list)):  # in place: keeps order and OrderedDict._metadata
        for key, value in (obj.items() if isinstance(obj, dict) else enumerate(obj)):
            obj[key] = materialize(value, path, big_endian)
        return obj
    if type(obj) is tuple:
        return tuple(materialize(value, path, big_endian) for value in obj)
    return obj
