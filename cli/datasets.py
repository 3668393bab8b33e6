"""Click pieces that read the dataset registry: ``--dataset`` choices and the protocols' eval options.

The choices are read when a command line is parsed or ``--help`` is shown, not when the module is
imported, so a dataset registered later (a third-party module, a test) is offered like the
built-in ones (:mod:`mpanet_tf.data.registry`).
"""

from __future__ import annotations

import click

from mpanet_tf.cli.declared_options import DeclaredOptionsCommand
from mpanet_tf.cli_option import merge_options
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


def protocol_options() -> list:
    """The :class:`~mpanet_tf.cli_option.CliOption` objects of every registered protocol, in
    registration order; an option declared by several protocols appears once."""
    return merge_options(((name, get_dataset(name).get_protocol().cli_options) for name in dataset_names()),
                         "protocols")


class ProtocolOptionsCommand(DeclaredOptionsCommand):
    """A command whose options are its own plus every registered protocol's (``mpanet-tf eval``),
    inserted after the option named ``after``; rebuilt when the dataset registry changes."""

    def __init__(self, *args, after: str, **kwargs):
        super().__init__(*args, after=after, declared=protocol_options, registry_version=registry_version,
                         **kwargs)
