"""``mpanet-tf``: the click group. Each command lives in its own module of this package.

Commands parse options, call one library function and print. Any :class:`MPANetError` the library
raises becomes one line on stderr and exit code 2 (:class:`ProjectGroup`); click's own usage
errors keep click's short form and also exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import click

from mpanet_tf.errors import MPANetError, printable
from mpanet_tf.tf_runtime import import_tensorflow_quietly

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: Modules of this package that each define ``register(group)``.
COMMAND_MODULES = (
    "data_commands",
    "train_command",
    "eval_command",
    "export_commands",
    "visualize_command",
    "import_command",
    "quickstart_command",
    "prepare_command",
    "manifest_command",
    "index_command",
)


def _describe_os_error(error: OSError) -> str:
    names = [os.fsdecode(n) for n in (error.filename, error.filename2) if n is not None]
    where = " -> ".join(names) if names else "a file"
    return printable(f"cannot access {where} ({error.strerror or error}); check the path, its permissions "
                     "and the free disk space")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Show a warning as ``Warning: <message>`` on stderr: no source line, no file position."""
    click.echo(f"Warning: {' '.join(str(message).split())}", err=True)


HELP_OPTIONS = ("-h", "--help")


class ProjectGroup(click.Group):
    """A click group that imports TensorFlow quietly before a command runs and turns the project's
    errors into one line and exit code 2."""

    def resolve_command(self, ctx, args):
        # Called once the group's own options are parsed, with [command, its arguments...]. A
        # command that will run (not its --help, not shell completion) gets TensorFlow imported
        # first, with its native start-up lines silenced (mpanet_tf.tf_runtime).
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not ctx.resilient_parsing and not set(HELP_OPTIONS) & set(rest):
            import_tensorflow_quietly()
        return name, command, rest

    def invoke(self, ctx):
        try:
            with warnings.catch_warnings():
                # A library warning (a permutation cell left out, ...) reaches the user as one line.
                warnings.showwarning = _one_line_warning
                return super().invoke(ctx)
        except MPANetError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(2)
        except OSError as error:
            # A file that vanished or could not be written part-way (disk full, permissions
            # changed): one line naming it, as for every other error a user can cause.
            click.echo(f"Error: {_describe_os_error(error)}", err=True)
            ctx.exit(2)


@click.group(cls=ProjectGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mpanet-tf", prog_name="mpanet-tf")
def cli():
    """MPANet for visible-infrared person re-identification (Keras 3 / TensorFlow).

    Train on SYSU-MM01 or RegDB, evaluate with the field's protocols, export to TF Serving and
    ONNX. Start with `mpanet-tf quickstart`; `mpanet-tf COMMAND --help` explains every option.
    """


for _name in COMMAND_MODULES:
    importlib.import_module(f"mpanet_tf.cli.{_name}").register(cli)


def main(argv=None):
    """Console-script entry point."""
    return cli.main(args=argv, prog_name="mpanet-tf")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
