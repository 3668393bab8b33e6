"""Click pieces that read the dataset registry: ``--dataset`` choices and the protocols' eval options.

The choices are read when a command line is parsed or ``--help`` is shown, not when the module is
imported, so a dataset registered later (a third-party module, a test) is offered like the
built-in ones (:mod:`mpanet_tf.data.registry`).
"""

from __future__ import annotations

import click

from mpanet_tf.data.registry import dataset_names, get_dataset, registry_version


class DatasetChoice(click.Choice):
    """``click.Choice`` over the registered dataset names (or those ``names()`` returns), read live."""

    def __init__(self, names=None):
        self._names = names
        super().__init__((), case_sensitive=True)

    @property
    def choices(self):
        return tuple(self._names() if self._names is not None else dataset_names())

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns it; the registry is the source
        pass


def synthesizable_names() -> tuple[str, ...]:
    """The registered datasets with a synthetic generator (``synth --layout``)."""
    return tuple(name for name in dataset_names() if get_dataset(name).synthesize is not None)


def protocol_options() -> list[click.Option]:
    """One ``click.Option`` per :class:`~mpanet_tf.eval.protocol.CliOption` of every registered
    protocol, in registration order; an option declared by several protocols appears once."""
    declared: dict[str, tuple] = {}
    for name in dataset_names():
        for option in get_dataset(name).get_protocol().cli_options:
            if option.dest in declared and declared[option.dest][0] != option:
                raise RuntimeError(f"the {name} and {declared[option.dest][1]} protocols declare different "
                                   f"options named {option.dest!r}; rename one")
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


class ProtocolOptionsCommand(click.Command):
    """A command whose options are its own plus every registered protocol's (``mpanet-tf eval``),
    inserted after the option named ``after``; :attr:`params` is rebuilt when the registry changes."""

    def __init__(self, *args, after: str, **kwargs):
        self._after = after
        self._built_for = None
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list:
        version = registry_version()
        if version != self._built_for:
            position = next(i for i, p in enumerate(self._own) if p.name == self._after) + 1
            self._params = [*self._own[:position], *protocol_options(), *self._own[position:]]
            self._built_for = version
        return self._params

    @params.setter
    def params(self, value) -> None:  # click.Command.__init__: the command's own options
        self._own = list(value)
        self._built_for = None
