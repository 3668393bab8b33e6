"""The datasets mpanet-tf knows: one :class:`DatasetSpec` per dataset, each a module-level object.

Everything that names a dataset reads it from here: config validation and the presets
(:mod:`mpanet_tf.config`), the CLI's ``--dataset`` / ``--layout`` choices (turned into the spec
once, when the command line is parsed), and every library function that takes a dataset (it
takes the spec). Adding a dataset is a reader, a protocol and one spec, declared with its protocol::

    # at the bottom of my_package/market_protocol.py, next to the protocol class
    MARKET = DatasetSpec(
        name="market", title="Market-IR", open=MarketDataset, protocol=MarketProtocol,
        preset={"model": {...}, "data": {"data_root": "datasets/Market-IR", ...}, "train": {...}},
        info_keys=("train_ids", "test_ids"), synthesize=None,   # optional: `mpanet-tf synth --layout`
    )

**One registration style.** A dataset is registered by naming its spec as ``"module:attribute"``:
the built-in ones in :data:`BUILTIN_DATASETS`, a third-party package in an entry point of the
group :data:`ENTRY_POINT_GROUP` (``toy = "my_package.toy:TOY"``), a local module in the
comma-separated ``MPANET_TF_DATASETS`` environment variable. Importing a dataset module registers
nothing; the registry imports the named modules the first time a dataset is looked up (so that
``data`` never imports the evaluation code it sits under) and registers each spec with
:func:`register_dataset` (which tests also call directly).

**The reader** (``open(root)``, or ``open(root, trial=N)`` for a dataset with
:attr:`DatasetSpec.splits`) has:

- ``root``: the absolute dataset folder (a :class:`pathlib.Path`);
- ``train_ids``: the training identities (label i = ``train_ids[i]``; ``len`` = classes);
- ``train_records()``: labelled :class:`~mpanet_tf.data.records.ImageRecord` of the training split;
- ``all_records()``: every record the dataset lists (``dataset-info --verify``, ``prepare``);
- ``counts()``: a dict holding at least :attr:`DatasetSpec.info_keys` (``dataset-info``).

It raises :class:`~mpanet_tf.errors.DatasetError` naming the file and the fix for any layout
problem, and never imports TensorFlow.

**The protocol** is a subclass of :class:`mpanet_tf.eval.protocol.EvalProtocol` (see that module:
the test split, its ``eval``, ``visualize`` and ``index`` options, evaluation of a feature set, the
evaluation during training, the table label); :meth:`DatasetSpec.get_protocol` makes its one
instance, bound to the spec.
"""

from __future__ import annotations

import copy
import importlib
import os
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from mpanet_tf.errors import ConfigError, DatasetError

#: The built-in datasets, in the order of every listing, as ``"module:attribute"`` of their spec.
BUILTIN_DATASETS = ("mpanet_tf.eval.sysu_protocol:SYSU", "mpanet_tf.eval.regdb_protocol:REGDB",
                    "mpanet_tf.eval.llcm_protocol:LLCM", "mpanet_tf.eval.manifest_protocol:MANIFEST")
#: Entry-point group of third-party datasets (each entry point names a :class:`DatasetSpec`).
ENTRY_POINT_GROUP = "mpanet_tf.datasets"
#: Environment variable naming more dataset specs, comma-separated ``"module:attribute"``.
ENVIRONMENT_VARIABLE = "MPANET_TF_DATASETS"


class UnknownDatasetError(DatasetError, ConfigError):
    """A dataset name that no :class:`DatasetSpec` is registered under (a dataset and a config error)."""


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """One dataset: how to open it, its preset, its protocol and what ``dataset-info`` shows.

    Attributes:
        name: the ``--dataset`` / ``data.dataset`` value, lower case (``"sysu"``).
        title: the dataset's usual name in messages and pictures (``"SYSU-MM01"``).
        open: ``open(root) -> reader``; ``open(root, trial=N)`` when the dataset has
            :attr:`splits` (see the module docstring for the reader).
        preset: config overrides of the dataset's preset, by section: ``model`` (image size),
            ``data`` (``data_root`` = the default dataset folder, batch layout), ``train``
            (milestones, epochs). ``data.dataset`` is filled in with :attr:`name`.
        protocol: the :class:`~mpanet_tf.eval.protocol.EvalProtocol` subclass that evaluates it.
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
    protocol: type
    info_keys: tuple[str, ...]
    splits: tuple[int, ...] = ()
    cache_all_records: bool = False
    synthesize: Callable[..., Any] | None = None
    _instances: dict = field(default_factory=dict, init=False, repr=False, compare=False)

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
        """The one instance of :attr:`protocol`, bound to this spec (its results carry :attr:`name`)."""
        if "protocol" not in self._instances:
            self._instances["protocol"] = self.protocol(self)
        return self._instances["protocol"]

    def describe_splits(self) -> str:
        """``"1..10"`` (consecutive splits) or ``"1, 3, 5"``; empty without splits."""
        splits = list(self.splits)
        if splits and splits == list(range(splits[0], splits[-1] + 1)) and len(splits) > 2:
            return f"{splits[0]}..{splits[-1]}"
        return ", ".join(map(str, splits))

    def check_split(self, trial, option: str = "--trial") -> int:
        """``trial`` as an int when the dataset has that split (1 for a dataset with one split).

        Raises:
            ConfigError: ``trial`` is not one of :attr:`splits` (not 1 without splits).
        """
        if isinstance(trial, bool) or (self.splits and trial not in self.splits):
            raise ConfigError(f"{option} must be one of {self.title}'s splits {self.describe_splits()}, got {trial!r}")
        if not self.splits and trial != 1:
            raise ConfigError(f"{self.title} has one train/test split; {option} must be 1 (or left out), got {trial!r}")
        return int(trial)

    def load(self, root, trial: int = 1):
        """The validated reader of ``root`` (``trial``: the split, read only with :attr:`splits`)."""
        return self.open(root, trial=trial) if self.splits else self.open(root)


_REGISTRY: dict[str, DatasetSpec] = {}
_BUILTIN_NAMES: list[str] = []
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


def load_spec(reference: str, where: str) -> DatasetSpec:
    """The :class:`DatasetSpec` that ``"module:attribute"`` names.

    Raises:
        ConfigError: not of that form, the module cannot be imported, or the attribute is missing
            or not a spec; the message names ``where`` the reference came from.
    """
    module, colon, attribute = str(reference).strip().partition(":")
    if not colon or not module or not attribute:
        raise ConfigError(f"{where} names {reference!r}; a dataset is named as module:attribute of its "
                          "DatasetSpec, e.g. my_package.toy:TOY")
    try:
        spec = getattr(importlib.import_module(module), attribute)
    except ImportError as error:
        raise ConfigError(f"{where} names module {module!r}, which cannot be imported ({error}); "
                          "fix the name or install the module") from None
    except AttributeError:
        raise ConfigError(f"{where} names {reference!r}, but module {module} has no {attribute!r}") from None
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"{where} names {reference!r}, which is a {type(spec).__name__}, not a DatasetSpec")
    return spec


def load_builtin_datasets() -> None:
    """Register the specs of :data:`BUILTIN_DATASETS`, of the entry points of
    :data:`ENTRY_POINT_GROUP` and of the ``MPANET_TF_DATASETS`` environment variable, once."""
    if _LOADED["builtin"]:
        return
    _LOADED["builtin"] = True
    for reference in BUILTIN_DATASETS:
        _BUILTIN_NAMES.append(register_dataset(load_spec(reference, "BUILTIN_DATASETS")).name)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        register_dataset(load_spec(entry.value, f"entry point {entry.name!r} of {ENTRY_POINT_GROUP}"))
    for reference in os.environ.get(ENVIRONMENT_VARIABLE, "").split(","):
        if reference.strip():
            register_dataset(load_spec(reference, ENVIRONMENT_VARIABLE))


def _order(name: str) -> int:
    """Built-in datasets first, in :data:`BUILTIN_DATASETS` order, then the others in registration order."""
    if name in _BUILTIN_NAMES:
        return _BUILTIN_NAMES.index(name)
    return len(_BUILTIN_NAMES) + list(_REGISTRY).index(name)


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
    """The spec registered under ``name`` (case-insensitive; a spec is returned as is);
    :class:`UnknownDatasetError` listing the choices otherwise."""
    if isinstance(name, DatasetSpec):
        return name
    load_builtin_datasets()
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise UnknownDatasetError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    return _REGISTRY[key]


def load_dataset(name, root, trial: int = 1):
    """Open a dataset by name (or spec): the reader of :func:`get_dataset` ``(name).load(root, trial)``.

    ``trial`` is read by datasets with splits (RegDB) only. Raises :class:`DatasetError` for an
    unknown name and for any layout problem the reader finds.
    """
    return get_dataset(name).load(root, trial=trial)
