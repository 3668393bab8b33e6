"""A command-line option declared without click, by the code it configures.

Dataset protocols declare their ``mpanet-tf eval``, ``visualize`` and ``index`` options
(:attr:`mpanet_tf.eval.protocol.EvalProtocol.cli_options`, ``visualize_options``,
``index_options``) and runtimes their ``mpanet-tf export`` options (:attr:`mpanet_tf.runtimes.registry.Runtime.cli_options`) as :class:`CliOption` objects;
:mod:`mpanet_tf.cli.declared_options` turns each into a ``click.Option``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from mpanet_tf.errors import ConfigError


@dataclass(frozen=True)
class CliOption:
    """One command-line option, declared without click.

    The command turns each into a ``click.Option`` named :attr:`dest`. Two declarers (protocols,
    runtimes) may declare the same option only as equal :class:`CliOption` objects (they then
    share it).

    Attributes:
        flags: the option's spellings, e.g. ``("--mode",)`` or ``("--normalize/--no-normalize",)``.
        dest: the parameter name, which is also the options-dataclass field it sets. All declarers'
            options share one command, so name an option after its declarer (``llcm_mode``,
            ``toy_note``) unless it means the same thing as another's.
        help: the ``--help`` text.
        default: the command-line default (a string for choices given as text).
        choices: the allowed values (a ``click.Choice``), or None.
        type: ``int``, ``float`` or ``str`` when not a choice or a flag pair.
        show_default: print the default in ``--help``.
        parse: converts the command-line value (e.g. ``"10"`` -> 10); it runs while the command
            line is parsed, and raises :class:`~mpanet_tf.errors.ConfigError`.
        minimum: the smallest value of an ``int`` option (a ``click.IntRange``), or None.
    """

    flags: tuple[str, ...]
    dest: str
    help: str
    default: Any = None
    choices: tuple | None = None
    type: type | None = None
    show_default: bool = False
    parse: Callable[[Any], Any] | None = None
    minimum: int | None = None


def merge_options(declarers, what: str) -> list[CliOption]:
    """The options of ``(declarer name, options)`` pairs, in order, each ``dest`` once.

    Args:
        declarers: iterable of (name, iterable of :class:`CliOption`).
        what: the declarers in a message ("protocols", "runtimes").

    Raises:
        ConfigError: two declarers declare different options under one ``dest`` (one line).
    """
    declared: dict[str, tuple[CliOption, str]] = {}
    for name, options in declarers:
        for option in options:
            if option.dest in declared and declared[option.dest][0] != option:
                raise ConfigError(f"the {name} and {declared[option.dest][1]} {what} declare different "
                                  f"options named {option.dest!r}; rename one")
            declared.setdefault(option.dest, (option, name))
    return [option for option, _ in declared.values()]
