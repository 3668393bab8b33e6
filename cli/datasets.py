"""Click pieces that read the dataset registry: ``--dataset`` (turned into the dataset's spec once,
here), ``--trial`` (the dataset's split) and the options each protocol declares for ``eval``,
``visualize`` and ``index``.

The choices and the protocols' options are read when a command line is parsed or ``--help`` is
shown, not when the module is imported, so a dataset registered later (a third-party module, a
test) is offered like the built-in ones (:mod:`mpanet_tf.data.registry`).
"""

from __future__ import annotations

import functools

import click
from click.core import ParameterSource

from mpanet_tf.cli.declared_options import DeclaredOptionsCommand, click_option
from mpanet_tf.cli_option import merge_options
from mpanet_tf.data.registry import DatasetSpec, dataset_names, get_dataset, registry_version
from mpanet_tf.errors import ConfigError


class DatasetChoice(click.Choice):
    """``click.Choice`` over the registered dataset names (or those ``names()`` returns), read live;
    the parsed value is the dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`."""

    name = "dataset"

    def __init__(self, names=None):
        self._names = names
        super().__init__((), case_sensitive=True)

    @property
    def choices(self):
        return tuple(self._names() if self._names is not None else dataset_names())

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns it; the registry is the source
        pass

    def convert(self, value, param, ctx) -> DatasetSpec:
        if isinstance(value, DatasetSpec):
            return value
        return get_dataset(super().convert(value, param, ctx))


def synthesizable_names() -> tuple[str, ...]:
    """The registered datasets with a synthetic generator (``synth --layout``)."""
    return tuple(name for name in dataset_names() if get_dataset(name).synthesize is not None)


def split_help(what: str) -> str:
    """The help of a ``--trial`` option: ``what`` and the datasets that ship numbered splits
    (``"... (regdb: 1..10; other datasets have one split)"``)."""
    ranges = [f"{spec.name}: {spec.describe_splits()}" for spec in map(get_dataset, dataset_names()) if spec.splits]
    return f"{what} ({'; '.join(ranges) or 'no registered dataset has several'}; other datasets have one split)."


class SplitOption(click.Option):
    """``--trial N``: the split of a dataset that ships several (:attr:`DatasetSpec.splits`); its
    help lists the registered datasets' ranges when shown."""

    def __init__(self, *args, what: str, **kwargs):
        self._what = what
        super().__init__(*args, **kwargs)

    def get_help_record(self, ctx):
        self.help = split_help(self._what)
        return super().get_help_record(ctx)


def split_option(what: str = "The dataset's train/test split"):
    """The ``--trial`` option (int, default 1); check its value with :meth:`DatasetSpec.check_split`."""
    return click.option("--trial", cls=SplitOption, what=what, type=int, default=1, show_default=True)


def protocol_cli_options(attribute: str = "cli_options") -> list:
    """The :class:`~mpanet_tf.cli_option.CliOption` objects every registered protocol declares in
    ``attribute`` (``cli_options`` = eval, ``visualize_options``, ``index_options``), in
    registration order; an option declared by several protocols appears once."""
    return merge_options(((name, getattr(get_dataset(name).get_protocol(), attribute)) for name in dataset_names()),
                         "protocols")


def protocol_options(attribute: str = "cli_options") -> list[click.Option]:
    """One ``click.Option`` per option of :func:`protocol_cli_options`."""
    return [click_option(option) for option in protocol_cli_options(attribute)]


def chosen_protocol_options(spec: DatasetSpec | None, params: dict, attribute: str) -> dict:
    """``{dest: value}`` of the options ``spec``'s protocol declares in ``attribute`` (empty
    without a dataset).

    Raises:
        ConfigError: an option that only other datasets' protocols declare (or, without a dataset,
            any protocol option) was given on the command line: it would be ignored.
    """
    own = {option.dest for option in getattr(spec.get_protocol(), attribute)} if spec is not None else set()
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        for option in protocol_options(attribute):
            if option.name not in own and ctx.get_parameter_source(option.name) == ParameterSource.COMMANDLINE:
                if spec is None:
                    raise ConfigError(f"{option.opts[0]} is an option of a dataset's protocol; pass --dataset "
                                      "or drop it")
                raise ConfigError(f"{option.opts[0]} is not an option of --dataset {spec.name}; drop it")
    return {dest: params[dest] for dest in own if dest in params}


class ProtocolOptionsCommand(DeclaredOptionsCommand):
    """A command whose options are its own plus the options every registered protocol declares in
    ``attribute`` (``cli_options`` for ``mpanet-tf eval``), inserted after the option named
    ``after``; rebuilt when the dataset registry changes."""

    def __init__(self, *args, after: str, attribute: str = "cli_options", **kwargs):
        super().__init__(*args, after=after, declared=functools.partial(protocol_cli_options, attribute),
                         registry_version=registry_version, **kwargs)
