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
import reprlib
import sys

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
#: Opcodes one pickle may execute: a 334-tensor state dict takes ~15 000, a full training checkpoint
#: with Adam moments a few times that. Each opcode allocates a bounded amount.
MAX_PICKLE_OPS = 2_000_000
#: Nodes a dict or set key may have (a tuple's elements, recursively) and how deep the loaded
#: object may nest (a state dict nests 2-4 levels).
MAX_KEY_NODES = 64
MAX_DEPTH = 64
#: Bytes the objects that allowed callables create may take in all (strings, bytes, containers:
#: ``_codecs.encode``, ``bytearray``, ``tuple``, ``set``, ``OrderedDict``, ...). A state dict's
#: pickle creates well under 1 MB this way; without a bound, one 20 kB string encoded again and
#: again grows a 25 kB file to gigabytes. Tensors have their own budget (:func:`tensor_budget`).
MAX_CREATED_BYTES = 64 << 20
#: The attributes BUILD may set on an OrderedDict: torch's per-module versions, nothing that would
#: shadow a dict method (``get``, ``items``) the reader calls later.
BUILD_ATTRIBUTES = ("_metadata",)
#: Dimensions of a tensor (torch allows 64 at most).
MAX_NDIM = 64
#: Bytes all tensors of a file may take beyond twice the storage bytes read (tensors sharing a
#: storage are copied apart, e.g. the weights of tied layers).
TENSOR_SLACK_BYTES = 16 << 20
_ATOMS = (str, bytes, int, float, bool, complex, type(None))
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 40, 40, 40


def short_repr(obj) -> str:
    """A bounded ``repr`` for messages (a hostile object may be huge or deeply shared)."""
    return _SHORT.repr(obj)


def check_key(key):
    """Refuse a dict/set key whose hash would walk a large (or exponentially shared) structure.

    Keys are str, bytes, numbers, None, or tuples/frozensets of those with at most
    :data:`MAX_KEY_NODES` nodes in all; returns ``key``.
    """
    pending, nodes = [key], 0
    while pending:
        item = pending.pop()
        nodes += 1
        if nodes > MAX_KEY_NODES:
            raise pickle.UnpicklingError(f"a dict or set key with more than {MAX_KEY_NODES} parts")
        if isinstance(item, (tuple, frozenset)) and type(item) in (tuple, frozenset):
            pending.extend(item)
        elif not isinstance(item, _ATOMS):
            raise pickle.UnpicklingError(f"a dict or set key of type {type(item).__name__}")
    return key


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
                                 count=self.numel).astype(dtype.newbyteorder("="), copy=False)
        if flat.size != self.numel:
            raise CheckpointError(f"{path} is corrupt (a storage view lies outside its storage)")
        self._array = flat
        return flat


def _counted(load):
    def counted(unpickler):
        unpickler.ops += 1
        if unpickler.ops > MAX_PICKLE_OPS:
            raise pickle.UnpicklingError(f"the pickle runs more than {MAX_PICKLE_OPS} opcodes")
        load(unpickler)
    return counted


def _refused(unpickler):
    raise pickle.UnpicklingError("protocol-5 out-of-band buffers are not read")


class SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be bounded
    """An unpickler that knows only tensors, storages and plain containers, in bounded work.

    Args:
        stream: binary file object positioned at a pickle.
        path: the checkpoint's name, for messages.
        persistent_load: ``pid -> object`` for the format at hand (storages or tensors); None
            refuses persistent ids.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, stream, path, persistent_load=None):
        super().__init__(stream, encoding="latin1")
        self.path, self._persistent, self.ops, self.created = path, persistent_load, 0, 0
        # Bound methods, namedtuples and checked builtins only: nothing a BUILD opcode can alter.
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
            ("collections", "OrderedDict"): _ordered_dict,
            ("torch.storage", "UntypedStorage"): StorageType("UntypedStorage"),
            ("torch._tensor", "_rebuild_from_type_v2"): self._rebuild_from_type,
            ("torch", "Tensor"): TorchName("Tensor"),
            ("torch.nn.parameter", "Parameter"): TorchName("Parameter"),
            ("torch", "Size"): tuple,
            ("_codecs", "encode"): self._codecs_encode,
        })
        for module in ("builtins", "__builtin__"):
            allowed.update({(module, "set"): _set, (module, "frozenset"): _frozenset,
                            (module, "complex"): complex, (module, "bytearray"): _bytearray})
        self.allowed = allowed

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"{self.path}: the pickle asks for the global {str(module)[:80]}.{str(name)[:80]}; "
                "refusing to run code from a checkpoint (only tensors and plain containers are "
                f"read); {RESAVE_HINT}") from None

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError(f"unexpected persistent id {short_repr(pid)}")
        return self._persistent(pid)

    # Opcodes that hash keys or mutate a container: only plain containers, only small keys.
    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        _dict_target(self.stack[-1])[check_key(key)] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = _dict_target(self.stack[-1])
        for i in range(0, len(items) - 1, 2):
            target[check_key(items[i])] = items[i + 1]

    def load_dict(self):
        items = self.pop_mark()
        self.append({check_key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})

    def load_additems(self):
        items = self.pop_mark()
        target = self.stack[-1]
        if type(target) is not set:
            raise pickle.UnpicklingError("ADDITEMS to a non-set")
        target.update(check_key(item) for item in items)

    def load_frozenset(self):
        self.append(_frozenset(self.pop_mark()))

    def load_append(self):
        value = self.stack.pop()
        _list_target(self.stack[-1]).append(value)

    def load_appends(self):
        items = self.pop_mark()
        _list_target(self.stack[-1]).extend(items)

    def load_build(self):
        """Only ``OrderedDict._metadata`` (torch's per-module versions) is ever set by BUILD."""
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(target, collections.OrderedDict) or not isinstance(state, dict) \
                or not all(type(key) is str and key in BUILD_ATTRIBUTES for key in state):
            names = ", ".join(short_repr(key) for key in list(state)[:3]) if isinstance(state, dict) else ""
            raise pickle.UnpicklingError(f"BUILD of anything but an OrderedDict's {', '.join(BUILD_ATTRIBUTES)} "
                                         f"(asked to set {names or short_repr(state)})")
        for key, value in state.items():
            setattr(target, key, value)

    # Every opcode that calls an allowed callable (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST) charges
    # what it creates to MAX_CREATED_BYTES.
    def _charge(self, result):
        self.created += sys.getsizeof(result)
        if self.created > MAX_CREATED_BYTES:
            raise CheckpointError(f"{self.path} is corrupt (its pickle creates more than {MAX_CREATED_BYTES >> 20} "
                                  "MiB of objects, far more than a state dict); re-download or re-save it")
        return result

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._charge(self.stack[-1](*args))

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._charge(cls.__new__(cls, *args)))

    def load_newobj_ex(self):
        kwargs, args = self.stack.pop(), self.stack.pop()
        cls = self.stack.pop()
        self.append(self._charge(cls.__new__(cls, *args, **kwargs)))

    def _instantiate(self, klass, args):
        self.append(self._charge(klass(*args)))

    for _code, _load in (("SETITEM", load_setitem), ("SETITEMS", load_setitems),
                         ("DICT", load_dict), ("ADDITEMS", load_additems),
                         ("FROZENSET", load_frozenset), ("APPEND", load_append),
                         ("APPENDS", load_appends), ("BUILD", load_build), ("REDUCE", load_reduce),
                         ("NEWOBJ", load_newobj), ("NEWOBJ_EX", load_newobj_ex)):
        dispatch[getattr(pickle, _code)[0]] = _load
    for _code in ("BYTEARRAY8", "NEXT_BUFFER", "READONLY_BUFFER"):
        dispatch[getattr(pickle, _code)[0]] = _refused
    dispatch = {code: _counted(load) for code, load in dispatch.items()}
    del _code, _load

    # Stand-ins of torch's rebuild functions: they only record what the pickle says.
    def _rebuild_tensor(self, storage, storage_offset, size, stride, *unused):
        return TensorRef(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v3(self, storage, storage_offset, size, stride, requires_grad, hooks,
                           dtype, *unused):
        if not isinstance(dtype, TorchName) or dtype.name not in TORCH_DTYPE_STORAGES:
            raise pickle.UnpicklingError(f"unknown tensor dtype {short_repr(dtype)}")
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


def _dict_target(target):
    if not isinstance(target, dict):
        raise pickle.UnpicklingError(f"SETITEM on a {type(target).__name__}")
    return target


def _list_target(target):
    if type(target) is not list:
        raise pickle.UnpicklingError(f"APPEND to a {type(target).__name__}")
    return target


# The builtins a pickle may call, with their arguments checked: elements become hashed keys, and
# no size is ever taken from a number (``bytearray(10**9)``).
def _ordered_dict(items=()):
    if isinstance(items, dict):
        items = list(items.items())
    pairs = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise pickle.UnpicklingError("OrderedDict of something other than pairs")
        pairs.append((check_key(item[0]), item[1]))
    return collections.OrderedDict(pairs)


def _set(items=()):
    return set(check_key(item) for item in _iterable(items))


def _frozenset(items=()):
    return frozenset(check_key(item) for item in _iterable(items))


def _iterable(items):
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise pickle.UnpicklingError(f"a set of a {type(items).__name__}")
    return items


def _bytearray(data=b"", encoding=None):
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        return bytearray(data, encoding)
    if isinstance(data, (bytes, bytearray)) and encoding is None:
        return bytearray(data)
    raise pickle.UnpicklingError("bytearray is only read from bytes or latin-1 text")


def storage_pid(pid, path, storages: dict, views: dict, read_record=None):
    """Resolve ``('storage', type, key, location, numel[, view_metadata])`` to a :class:`Storage`.

    ``storages`` maps key -> Storage across a file; ``read_record(key, nbytes)`` fetches a zip
    record's first ``nbytes`` bytes. ``view_metadata`` ``(view_key, offset, numel)`` (legacy
    files) makes a view of the root.
    """
    if not isinstance(pid, tuple) or not pid:
        raise pickle.UnpicklingError(f"unknown persistent id {short_repr(pid)}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind == "module":
        raise CheckpointError(f"{path} holds a whole pickled nn.Module, not a state dict; "
                              f"{RESAVE_HINT}")
    if kind != "storage" or len(pid) not in (5, 6):
        raise pickle.UnpicklingError(f"unknown persistent id {short_repr(pid[:1])}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    key = key.decode("ascii") if isinstance(key, bytes) else key
    if not isinstance(storage_type, StorageType) or type(key) not in (str, int) \
            or type(numel) is not int or numel < 0:
        raise pickle.UnpicklingError(f"malformed storage id {short_repr(pid)}")
    storage = storages.get(key)
    if storage is None:
        nbytes = numel * np.dtype(STORAGE_DTYPES[storage_type.name]).itemsize
        data = read_record(key, nbytes) if read_record is not None else None
        storage = storages[key] = Storage(storage_type.name, numel, data=data)
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return storage
    if not isinstance(view, tuple) or len(view) != 3 or type(view[0]) not in (str, bytes, int):
        raise pickle.UnpicklingError(f"malformed storage view {short_repr(view)}")
    view_key, offset, size = view
    if view_key not in views:
        views[view_key] = Storage(storage.name, int(size), root=storage, offset=int(offset))
    return views[view_key]


def _check_ints(values, path):
    if not isinstance(values, tuple) or len(values) > MAX_NDIM \
            or not all(type(v) is int and v >= 0 for v in values):
        raise CheckpointError(f"{path} is corrupt (tensor size/stride {short_repr(values)}); "
                              "re-save it")
    return values


def tensor_budget(storages) -> int:
    """Bytes all tensors of a file may take: twice the bytes of its root storages (views of one
    storage, tied weights) plus :data:`TENSOR_SLACK_BYTES`."""
    read = sum(len(s.data) for s in storages if isinstance(s.data, (bytes, bytearray)))
    return 2 * read + TENSOR_SLACK_BYTES


class Budget:
    """Bytes a file may still make the reader allocate for tensors; see :func:`tensor_budget`."""

    def __init__(self, path, limit: int):
        self.path, self.left = path, int(limit)

    def take(self, nbytes: int) -> None:
        if nbytes > self.left:
            raise CheckpointError(f"{self.path} is corrupt (its tensors would take more memory "
                                  "than its storages hold); re-download or re-save it")
        self.left -= nbytes


def tensor_from_ref(ref: TensorRef, path, big_endian=False, budget: Budget | None = None
                    ) -> np.ndarray:
    """Rebuild one tensor: ``as_strided`` over its storage from (offset, size, stride), copied.

    The tensor may hold no more elements than its storage (so a stride of 0 cannot turn a small
    storage into a huge array) and takes its bytes from ``budget``.
    """
    if not isinstance(ref.storage, Storage) or type(ref.offset) is not int or ref.offset < 0:
        raise CheckpointError(f"{path} is corrupt (a tensor without a valid storage); re-save it")
    size = _check_ints(tuple(ref.size) if isinstance(ref.size, (tuple, list)) else ref.size, path)
    stride = _check_ints(tuple(ref.stride) if isinstance(ref.stride, (tuple, list)) else ref.stride,
                         path)
    if len(size) != len(stride):
        raise CheckpointError(f"{path} is corrupt (size {short_repr(size)} with stride "
                              f"{short_repr(stride)}); re-save it")
    flat = ref.storage.array(path, big_endian)
    element = ref.dtype or ref.storage.name
    if element != ref.storage.name:  # _rebuild_tensor_v3: a typed view of untyped bytes
        typed = np.dtype(STORAGE_DTYPES[element])
        usable = flat.nbytes - flat.nbytes % typed.itemsize
        flat = flat[:usable].view(typed).astype(typed.newbyteorder("="), copy=False)
    numel = int(np.prod(size, dtype=object)) if size else 1
    if numel > flat.size and 0 not in size:
        raise CheckpointError(f"{path} is corrupt (a tensor of {numel} elements over a storage of "
                              f"{flat.size}); re-download or re-save it")
    if budget is not None:
        budget.take(numel * flat.dtype.itemsize)
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


def materialize(obj, path, big_endian=False, budget: Budget | None = None):
    """Replace every tensor reference in nested dicts/lists/tuples by its numpy array.

    Each object is visited once, however often the pickle shares it (a DAG of shared lists is
    linear work, not exponential), and nesting deeper than :data:`MAX_DEPTH` is refused.
    """
    done: dict[int, tuple] = {}  # id -> (object, result); holding the object keeps its id unique

    def walk(item, depth):
        known = done.get(id(item))
        if known is not None:
            return known[1]
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{path} is corrupt (objects nested more than {MAX_DEPTH} "
                                  "levels deep); re-save it")
        if isinstance(item, TensorRef):
            result = tensor_from_ref(item, path, big_endian, budget)
        elif isinstance(item, (dict, list)):  # in place: keeps order and OrderedDict._metadata
            done[id(item)] = (item, item)
            for key, value in (list(item.items()) if isinstance(item, dict) else enumerate(item)):
                item[key] = walk(value, depth + 1)
            return item
        elif type(item) is tuple:
            result = tuple(walk(value, depth + 1) for value in item)
        else:
            return item
        done[id(item)] = (item, result)
        return result

    return walk(obj, 0)
