"""Third-party extensions: modules named by a package entry-point group or an environment variable.

A runtime (:mod:`mpanet_tf.runtimes.registry`) outside this package registers itself when its
module is imported. A package declares that module
in its entry-point group (``[project.entry-points."mpanet_tf.runtimes"] toy = "toy_runtime"``); a
module that is not installed is named in the environment variable
(``MPANET_TF_RUNTIMES=toy_runtime``, comma-separated).
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from mpanet_tf.errors import ConfigError


def import_plugins(group: str, variable: str) -> None:
    """Import the module of every entry point of ``group``, then every module the comma-separated
    environment variable ``variable`` names.

    Raises:
        ConfigError: a module of ``variable`` cannot be imported (one line naming it).
    """
    for entry in entry_points(group=group):
        importlib.import_module(entry.value.partition(":")[0])
    for module in os.environ.get(variable, "").split(","):
        if module.strip():
            try:
                importlib.import_module(module.strip())
            except ImportError as error:
                raise ConfigError(f"{variable} names module {module.strip()!r}, which cannot be "
                                  f"imported ({error}); fix the variable or install the module") from None
