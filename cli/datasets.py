"""Click pieces that read the dataset registry: ``--dataset`` (turned into the dataset's spec once,
here), ``--trial`` (the dataset's split) and the options each protocol declares for ``eval``,
``visualize`` and ``index``.

The choices and the protocols' options are read when a command line is parsed or ``--help`` is
shown, not when the module is imported, so a dataset registered later (a third-party module, a
test) is offered like the built-in ones (:mod:`mpanet_tf.data.registry`).
"""

from __future__ import annotations

import click
from click.core import ParameterSource

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


def protocol_options(attribute: str = "cli_options") -> list[click.Option]:
    """One ``click.Option`` per :class:`~mpanet_tf.eval.protocol.CliOption` that every registered
    protocol declares in ``attribute`` (``cli_options`` = eval, ``visualize_options``,
    ``index_options``), in registration order; an option declared by several protocols appears once."""
    declared: dict[str, tuple] = {}
    for name in dataset_names():
        for option in getattr(get_dataset(name).get_protocol(), attribute):
            if option.dest in declared and declared[option.dest][0] != option:
                raise RuntimeError(f"the {name} and {declared[option.dest][1]} protocols declare different "
                                   f"{attribute} named {option.dest!r}; rename one")
            declared.setdefault(option.dest, (option, name))
    return [_click_option(option) for option, _ in declared.values()]


def _click_option(option) -> click.Option:
    kwargs = {"default": option.default, "help": option.help, "show_default": option.show_default}
    if option.choices is not None:
        kwargs["type"] = click.Choice(list(option.choices))
    elif option.type is not None:
        kwargs["type"] = option.type
    if option.parse is not None:
        parse = option.parse
        kwargs["callback"] = lambda ctx, param, value: value if value is None else parse(value)
    return click.Option([*option.flags, option.dest], **kwargs)


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


class ProtocolOptionsCommand(click.Command):
    """A command whose options are its own plus the options every registered protocol declares in
    ``attribute`` (``cli_options`` for ``mpanet-tf eval``), inserted after the option named
    ``after``; :attr:`params` is rebuilt when the registry changes."""

    def __init__(self, *args, after: str, attribute: str = "cli_options", **kwargs):
        self._after = after
        self._attribute = attribute
        self._built_for = None
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list:
        version = registry_version()
        if version != self._built_for:
            position = next(i for i, p in enumerate(self._own) if p.name == self._after) + 1
            self._params = [*self._own[:position], *protocol_options(self._attribute), *self._own[position:]]
            self._built_for = version
        return self._params

    @params.setter
    def params(self, value) -> None:  # click.Command.__init__: the command's own options
        self._own = list(value)
        self._built_for = None
