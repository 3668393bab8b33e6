"""Commands whose options are partly declared by the library: the protocols' ``eval`` options, the
runtimes' ``export`` options (:class:`~mpanet_tf.cli_option.CliOption`).

The declared options are read when a command line is parsed or ``--help`` is shown, and again
whenever the registry that holds their declarers changes, so a dataset or runtime registered after
this module was imported (a third-party module, a test) brings its options like the built-in ones.
"""

from __future__ import annotations

from typing import Callable

import click


def click_option(option) -> click.Option:
    """The ``click.Option`` of a :class:`~mpanet_tf.cli_option.CliOption`."""
    kwargs = {"default": option.default, "help": option.help, "show_default": option.show_default}
    if option.choices is not None:
        kwargs["type"] = click.Choice(list(option.choices))
    elif option.minimum is not None:
        kwargs["type"] = click.IntRange(min=option.minimum)
    elif option.type is not None:
        kwargs["type"] = option.type
    if option.parse is not None:
        parse = option.parse
        kwargs["callback"] = lambda ctx, param, value: value if value is None else parse(value)
    return click.Option([*option.flags, option.dest], **kwargs)


class DeclaredOptionsCommand(click.Command):
    """A command whose options are its own plus the declared ones, inserted after the option named
    ``after``; :attr:`params` is rebuilt when ``registry_version()`` (the declarers' registry)
    changes.

    Args:
        after: the name of the command's own option the declared ones follow.
        declared: () -> the :class:`~mpanet_tf.cli_option.CliOption` objects to add.
        registry_version: () -> a number that changes whenever a declarer is registered or removed.
    """

    def __init__(self, *args, after: str, declared: Callable[[], list], registry_version: Callable[[], int],
                 **kwargs):
        self._after, self._declared, self._version = after, declared, registry_version
        self._built_for = None
        super().__init__(*args, **kwargs)

    @property
    def params(self) -> list:
        version = self._version()
        if version != self._built_for:
            position = next(i for i, p in enumerate(self._own) if p.name == self._after) + 1
            added = [click_option(option) for option in self._declared()]
            self._params = [*self._own[:position], *added, *self._own[position:]]
            self._built_for = version
        return self._params

    @params.setter
    def params(self, value) -> None:  # click.Command.__init__: the command's own options
        self._own = list(value)
        self._built_for = None
