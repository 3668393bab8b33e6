"""The datasets mpanet-tf knows: one :class:`DatasetSpec` per dataset, registered where it is defined.

Everything that names a dataset reads it from here: config validation and the presets
(:mod:`mpanet_tf.config`), :func:`load_dataset`, the training set-up and the evaluation during
training, ``mpanet-tf eval`` (:mod:`mpanet_tf.eval.artifacts`), the results table
(:mod:`mpanet_tf.eval.report`), ``visualize`` and every ``--dataset`` / ``--layout`` option of the
CLI. Adding a dataset is one reader file and one protocol file, registered with a few lines::

    # at the bottom of mpanet_tf/data/llcm.py (the reader)
    from mpanet_tf.data.registry import DatasetSpec, register_dataset

    register_dataset(DatasetSpec(
        name="llcm", title="LLCM", open=LLCMDataset,
        preset={"model": {"image_height": 384, "image_width": 128},
                "data": {"data_root": "datasets/LLCM", "batch_ids": 16, "images_per_id": 8},
                "train": {"milestones": [80, 120], "epochs": 140}},
        protocol="mpanet_tf.eval.llcm_protocol:LLCM_PROTOCOL",
        info_keys=("train_ids", "train_visible", "train_infrared", "test_ids", "test_visible", "test_infrared"),
        synthesize=synthesize_llcm,                 # optional: `mpanet-tf synth --layout llcm`
    ))

and the module's name added to :data:`BUILTIN_MODULES` (a third-party package instead declares an
entry point in the group ``mpanet_tf.datasets`` naming its module; importing it registers).

**The reader** (``open(root, trial)`` returns it; ``trial`` is the config's ``data.trial``, which
only datasets with :attr:`DatasetSpec.splits` read) has:

- ``root``: the absolute dataset folder (a :class:`pathlib.Path`);
- ``train_ids``: the training identities (label i = ``train_ids[i]``; ``len`` = classes);
- ``train_records()``: labelled :class:`~mpanet_tf.data.records.ImageRecord` of the training split;
- ``all_records()``: every record the dataset lists (``dataset-info --verify``, ``prepare``);
- ``counts()``: a dict holding at least :attr:`DatasetSpec.info_keys` (``dataset-info``).

It raises :class:`~mpanet_tf.errors.DatasetError` naming the file and the fix for any layout
problem, and never imports TensorFlow.

**The protocol** is an :class:`mpanet_tf.eval.protocol.EvalProtocol` (see that module for its
methods: the test split, its options dataclass and CLI options, evaluation of a feature set, the
evaluation during training, the table label, the ranked-list sources of ``visualize ranks``).
``protocol`` may name it as ``"module:attribute"`` so that config validation does not import the
evaluation code.

Nothing here imports a reader at import time: :mod:`mpanet_tf.data.records` is plain records and
the readers import it, not the other way round.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.plugins import import_plugins

#: Modules that register the built-in datasets when imported (in this order).
BUILTIN_MODULES = ("mpanet_tf.data.sysu", "mpanet_tf.data.regdb", "mpanet_tf.data.llcm", "mpanet_tf.data.manifest")
#: Entry-point group of third-party dataset modules (each entry point names a module to import).
ENTRY_POINT_GROUP = "mpanet_tf.datasets"


class UnknownDatasetError(DatasetError, ConfigError):
    """A dataset name that no :class:`DatasetSpec` is registered under (a dataset and a config error)."""


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One dataset: how to open it, its preset, its protocol and what ``dataset-info`` shows.

    Attributes:
        name: the ``--dataset`` / ``data.dataset`` value, lower case (``"sysu"``).
        title: the dataset's usual name in messages and pictures (``"SYSU-MM01"``).
        open: ``open(root, trial=1) -> reader`` (see the module docstring for the reader).
        preset: config overrides of the dataset's preset, by section: ``model`` (image size),
            ``data`` (``data_root`` = the default dataset folder, batch layout), ``train``
            (milestones, epochs). ``data.dataset`` is filled in with :attr:`name`.
        protocol: an :class:`~mpanet_tf.eval.protocol.EvalProtocol`, or ``"module:attribute"``
            naming one (imported on first use).
        info_keys: the keys of ``reader.counts()`` that ``dataset-info`` prints, in order.
        splits: the numbered train/test splits the dataset ships (RegDB: 1..10), selected by
            ``data.trial`` / ``--trial``; empty when it has one (SYSU-MM01).
        cache_all_records: ``prepare`` caches ``all_records()`` (True: one cache serves every
            split) instead of ``train_records()``.
        synthesize: optional ``synthesize(out, *, seed, overwrite, ids=None, images=None,
            size=None) -> root``: ``mpanet-tf synth --layout NAME`` (None arguments: the
            generator's defaults).
    """

    name: str
    title: str
    open: Callable[..., Any]
    preset: Mapping[str, Mapping[str, Any]]
    protocol: Any
    info_keys: tuple[str, ...]
    splits: tuple[int, ...] = ()
    cache_all_records: bool = False
    synthesize: Callable[..., Any] | None = None
    _resolved: dict = field(default_factory=dict, repr=False, compare=False)

    def config_overrides(self) -> dict:
        """A fresh copy of :attr:`preset` with ``data.dataset`` set: ``MPANetConfig.from_dict`` input."""
        overrides = {section: dict(values) for section, values in copy.deepcopy(dict(self.preset)).items()}
        overrides.setdefault("data", {})["dataset"] = self.name
        return overrides

    @property
    def data_root(self) -> str:
        """The preset's dataset folder (``datasets/SYSU-MM01``)."""
        return str(self.preset.get("data", {}).get("data_root", ""))

    @property
    def image_size(self) -> tuple[int, int]:
        """The preset's network input size (H, W)."""
        model = self.preset.get("model", {})
        return int(model["image_height"]), int(model["image_width"])

    def get_protocol(self):
        """The :class:`~mpanet_tf.eval.protocol.EvalProtocol`, importing it on first use."""
        if "protocol" not in self._resolved:
            protocol = self.protocol
            if isinstance(protocol, str):
                module, _, attribute = protocol.partition(":")
                protocol = getattr(importlib.import_module(module), attribute)
            self._resolved["protocol"] = protocol
        return self._resolved["protocol"]

    def load(self, root, trial: int = 1):
        """``open(root, trial)``: the validated reader."""
        return self.open(root, trial=trial)


_REGISTRY: dict[str, DatasetSpec] = {}
_LOADED = {"builtin": False}
#: Bumped at every registration, so that lazily built CLI options can tell they are stale.
_VERSION = [0]


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` under ``spec.name``; registering the same name twice needs ``replace=True``."""
    name = spec.name.strip().lower()
    if name != spec.name or not name:
        raise ValueError(f"dataset names are non-empty lower case without spaces, got {spec.name!r}")
    if name in _REGISTRY and not replace and _REGISTRY[name] is not spec:
        raise ValueError(f"dataset {name!r} is already registered (by {_REGISTRY[name].open!r}); "
                         "pass replace=True to override it")
    _REGISTRY[name] = spec
    _VERSION[0] += 1
    return spec


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (tests of third-party registration)."""
    if _REGISTRY.pop(name, None) is not None:
        _VERSION[0] += 1


def registry_version() -> int:
    """A number that changes whenever a dataset is registered or removed."""
    load_builtin_datasets()
    return _VERSION[0]


def load_builtin_datasets() -> None:
    """Import :data:`BUILTIN_MODULES`, the entry points of :data:`ENTRY_POINT_GROUP` and the modules
    of the comma-separated ``MPANET_TF_DATASETS`` environment variable, once."""
    if _LOADED["builtin"]:
        return
    _LOADED["builtin"] = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    import_plugins(ENTRY_POINT_GROUP, "MPANET_TF_DATASETS")


def _order(name: str) -> int:
    """Built-in datasets first, in :data:`BUILTIN_MODULES` order (whichever module was imported
    first), then the others in registration order."""
    module = getattr(_REGISTRY[name].open, "__module__", "")
    if module in BUILTIN_MODULES:
        return BUILTIN_MODULES.index(module)
    return len(BUILTIN_MODULES) + list(_REGISTRY).index(name)


def dataset_names() -> tuple[str, ...]:
    """Names of every registered dataset: the built-in ones first (``sysu``, ``regdb``), then the
    others in registration order."""
    load_builtin_datasets()
    return tuple(sorted(_REGISTRY, key=_order))


def describe_choices(names=None, last: str = "or") -> str:
    """``"sysu or regdb"`` / ``"sysu, regdb or llcm"``: the names for a message."""
    names = list(dataset_names() if names is None else names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def get_dataset(name) -> DatasetSpec:
    """The spec registered under ``name`` (case-insensitive); :class:`UnknownDatasetError` listing
    the choices otherwise."""
    load_builtin_datasets()
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UnknownDatasetError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    return _REGISTRY[key]


def load_dataset(name: str, root, trial: int = 1):
    """Open a dataset by name: the reader of :func:`get_dataset` ``(name).open(root, trial)``.

    ``trial`` (1..10) is read by datasets with splits (RegDB) only. Raises :class:`DatasetError`
    for an unknown name and for any layout problem the reader finds.
    """
    return get_dataset(name).load(root, trial=trial)
