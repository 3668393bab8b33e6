"""``mpanet-tf train``: train MPANet on SYSU-MM01 or RegDB into a run folder.

The defaults are the authors' configuration (``MPANetConfig.preset(dataset)``, design.md §3); every
hyper-parameter has an option. Every option that sets config fields (its name, type, choices,
parsing, help and stated default) is derived from the config dataclasses
(:func:`mpanet_tf.config.cli_fields`), and ``--set section.field=value`` sets any field. The command only resolves the config and calls
:func:`mpanet_tf.training.train` / :func:`~mpanet_tf.training.train_repeats`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from mpanet_tf import run_folder
from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.config import ABLATIONS, MPANetConfig, apply_assignments, cli_fields, default_help
from mpanet_tf.data.registry import describe_choices
from mpanet_tf.errors import ConfigError
from mpanet_tf.io.output_checks import check_output_folder


def _option_name(declaration: str) -> str:
    """The click parameter name of ``--foo-bar`` or ``--foo-bar/--no-foo-bar``: ``foo_bar``."""
    return declaration.split("/")[0].lstrip("-").replace("-", "_")


#: option name -> (config section, field) for the options derived from the config's fields
#: (:func:`mpanet_tf.config.cli_fields`). Only options given on the command line override the
#: preset (or, with --resume, the run's config.json).
FIELD_OPTIONS = {_option_name(item.metadata["cli"]): (section, item) for section, item in cli_fields()}


class FieldOption(click.Option):
    """The option of a config field; its help states the default when shown (the presets, read from
    the dataset registry then, not when the CLI is imported)."""

    def __init__(self, *args, section: str, item, **kwargs):
        self._section, self._item, self._flag = section, item, bool(kwargs.get("is_flag"))
        super().__init__(*args, **kwargs)

    @property
    def help(self) -> str:
        text = self._item.metadata["help"]
        if not self._flag:
            text += f" [default: {default_help(self._section, self._item)}]"
        return text + "."

    @help.setter
    def help(self, value) -> None:  # click.Option.__init__ assigns it; the field is the source
        pass


def config_field_options(command):
    """Add one option per config field that declares one (``metadata["cli"]``): its type, choices,
    help and stated default come from the dataclass; the option's default is None ("the preset's").
    A field with ``parse`` takes the option's text (``--image-size 384x128``); a flag without
    ``/`` on a True field (``--single-modality-ce``) sets it False."""
    for section, item in reversed(cli_fields()):
        declaration = item.metadata["cli"]
        kwargs = {"default": None, "cls": FieldOption, "section": section, "item": item}
        choices = item.metadata.get("cli_choices", item.metadata.get("choices"))
        if isinstance(item.default, bool):
            kwargs["default"] = item.default
            if "/" not in declaration:
                kwargs.update(is_flag=True, flag_value=not item.default)
        elif choices is not None:
            kwargs["type"] = click.Choice(list(choices))
        elif not isinstance(item.default, str) and "parse" not in item.metadata:
            kwargs["type"] = type(item.default)
        command = click.option(declaration, **kwargs)(command)
    return command


def _given(ctx, name) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _apply_overrides(config, ctx, params):
    data = config.to_dict()
    for name, (section, item) in FIELD_OPTIONS.items():
        if _given(ctx, name):
            value = params[name]
            if "parse" in item.metadata:
                value = item.metadata["parse"](value)
            fields = item.metadata.get("sets", (item.name,))
            for field, field_value in zip(fields, value if len(fields) > 1 else (value,)):
                data[section][field] = list(field_value) if isinstance(field_value, tuple) else field_value
    return apply_assignments(MPANetConfig.from_dict(data), params["set_fields"])


def _saved_config(output: Path, repeat: int):
    """The config.json a --resume continues from (the lowest seed folder with --repeat), or None."""
    if repeat == 1:
        folders = [output] if run_folder.is_run_folder(output) else []
    else:
        folders = [folder for folder in run_folder.seed_folders(output) if run_folder.is_run_folder(folder)]
    return MPANetConfig.from_json_file(folders[0] / run_folder.CONFIG_FILE) if folders else None


def resolve_config(ctx, params):
    """The run's config: preset (+ ablation) or, with --resume, the saved one; then the options."""
    output, repeat = Path(params["output"]), int(params["repeat"])
    base = _saved_config(output, repeat) if params["resume"] else None
    if base is None:
        if not params["dataset"]:
            raise ConfigError(f"--dataset is required ({describe_choices()}) unless --resume finds a run in --output")
        base = MPANetConfig.preset(params["dataset"])
        if params["ablation"]:
            base = base.with_ablation(params["ablation"])
    elif params["dataset"] and params["dataset"].name != base.data.dataset:
        raise ConfigError(f"cannot resume: the run in {output} trained on {base.data.dataset}, "
                          f"not {params['dataset'].name}")
    return _apply_overrides(base, ctx, params)


def _resume_hint(output, repeat) -> str:
    extra = f" --repeat {repeat}" if repeat > 1 else ""
    return f"mpanet-tf train --output {shlex.quote(str(output))}{extra} --resume"


@click.command("train")
@click.option("--dataset", type=DatasetChoice(), default=None,
              help="Dataset and preset (the authors' SYSU.yml / RegDB.yml). Required unless --resume.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Run folder (runs/NAME); must be empty unless --resume or --force.")
@click.option("--final-eval/--no-final-eval", default=True,
              help="Evaluate the last epoch's model at the end [default: on].")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Delete what an earlier run wrote in --output (only its own files) and start over.")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Train N runs with seeds seed, seed+1, ... into --output/seed-K/.")
@click.option("--ablation", default=None, type=click.Choice(list(ABLATIONS)),
              help="A row of the paper's ablation tables (config.ABLATIONS) [default: the full model].")
@config_field_options
@click.option("--set", "set_fields", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Set any config field, e.g. --set loss.normalize_sep=true --set train.milestones=40,60 "
                   "(repeatable; applied after the other options).")
@click.option("-v", "--verbose", is_flag=True, help="Also print every step checkpoint.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-epoch lines.")
@click.pass_context
def train_command(ctx, **params):
    """Train MPANet; writes config.json, run.json, checkpoints/, history.json, tensorboard/ and
    model.keras into --output.

    Example: mpanet-tf train --dataset sysu --data-root datasets/SYSU-MM01 --output runs/sysu

    Ctrl-C saves a checkpoint and exits with code 130; continue with --resume.
    """
    if params["verbose"] and params["quiet"]:
        raise ConfigError("--verbose and --quiet exclude each other; pass one")
    config = resolve_config(ctx, params)

    check_output_folder(params["output"], "--output")

    from mpanet_tf.training.trainer import TrainingInterrupted, train, train_repeats  # deferred: TensorFlow

    quiet = params["quiet"]
    log = (lambda message: None) if quiet else click.echo
    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    kwargs = dict(dataset=params["dataset"], resume=params["resume"], force=params["force"], verbose=verbose,
                  final_eval=params["final_eval"] if _given(ctx, "final_eval") else None, log=log, detail_log=click.echo if params["verbose"] else None)
    output, repeat = Path(params["output"]), int(params["repeat"])
    try:
        if repeat == 1:
            results = [train(config, output, **kwargs)]
        else:
            results = train_repeats(config, output, repeat, **kwargs)
    except TrainingInterrupted as interrupted:
        click.echo(f"{interrupted}; resume with: {_resume_hint(output, repeat)}", err=True)
        ctx.exit(130)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        click.echo(f"interrupted; complete checkpoints in {output} are intact; resume with: "
                   f"{_resume_hint(output, repeat)}", err=True)
        ctx.exit(130)
    for result in results:
        line = f"{result.run_dir}: {result.global_step} steps"
        summary = (result.evaluation or {}).get("summary")
        if summary:
            line += f", rank-1 {summary['rank1']:.2f}, mAP {summary['mAP']:.2f}"
        click.echo(line)


def register(group) -> None:
    group.add_command(train_command)
