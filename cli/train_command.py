"""``mpanet-tf train``: train MPANet on SYSU-MM01 or RegDB into a run folder.

The defaults are the authors' configuration (``MPANetConfig.preset(dataset)``, facts §3); every
hyper-parameter has an option. The options of config fields (their names, types, choices, help and
stated defaults) are derived from the config dataclasses (:func:`mpanet_tf.config.cli_fields`), and
``--set section.field=value`` sets any field. The command only resolves the config and calls
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
from mpanet_tf.config import (
    ABLATIONS, MIXED_PRECISIONS, MPANetConfig, apply_assignments, cli_fields, default_help, parse_image_size,
    preset_values, show_value,
)
from mpanet_tf.data.registry import describe_choices
from mpanet_tf.errors import ConfigError
from mpanet_tf.io.output_checks import check_output_folder


def _option_name(declaration: str) -> str:
    """The click parameter name of ``--foo-bar`` or ``--foo-bar/--no-foo-bar``: ``foo_bar``."""
    return declaration.split("/")[0].lstrip("-").replace("-", "_")


#: option name -> (config section, field) for the options derived from the config's fields
#: (:func:`mpanet_tf.config.cli_fields`). Only options given on the command line override the
#: preset (or, with --resume, the run's config.json).
FIELD_OPTIONS = {_option_name(item.metadata["cli"]): (section, item.name) for section, item in cli_fields()}


def config_field_options(command):
    """Add one option per config field that declares one (``metadata["cli"]``): its type, choices,
    help and stated default come from the dataclass; the option's default is None ("the preset's")."""
    for section, item in reversed(cli_fields()):
        declaration = item.metadata["cli"]
        kwargs = {"help": item.metadata["help"], "default": None}
        if isinstance(item.default, bool):
            kwargs["default"] = item.default
            if "/" not in declaration:
                kwargs["is_flag"] = True
        elif "choices" in item.metadata:
            kwargs["type"] = click.Choice(list(item.metadata["choices"]))
        elif not isinstance(item.default, str):
            kwargs["type"] = type(item.default)
        if not kwargs.get("is_flag"):
            kwargs["help"] += f" [default: {default_help(section, item)}]"
        kwargs["help"] += "."
        command = click.option(declaration, **kwargs)(command)
    return command


def _parse_milestones(text: str) -> tuple:
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"--milestones must be comma-separated epochs such as 80,120, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ConfigError(f"--milestones must be positive epochs, got {text!r}")
    return values


def _given(ctx, name) -> bool:
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _apply_overrides(config, ctx, params):
    data = config.to_dict()
    for name, (section, field) in FIELD_OPTIONS.items():
        if _given(ctx, name):
            data[section][field] = params[name]
    if _given(ctx, "image_size"):
        data["model"]["image_height"], data["model"]["image_width"] = parse_image_size(params["image_size"])
    if _given(ctx, "milestones"):
        data["train"]["milestones"] = list(_parse_milestones(params["milestones"]))
    if _given(ctx, "mixed_precision"):
        data["train"]["mixed_precision"] = "" if params["mixed_precision"] == "none" else params["mixed_precision"]
    if params["single_modality_ce"]:
        data["loss"]["double_modality_ce"] = False
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
    elif params["dataset"] and params["dataset"] != base.data.dataset:
        raise ConfigError(f"cannot resume: the run in {output} trained on {base.data.dataset}, not {params['dataset']}")
    return _apply_overrides(base, ctx, params)


def _resume_hint(output, repeat) -> str:
    extra = f" --repeat {repeat}" if repeat > 1 else ""
    return f"mpanet-tf train --output {shlex.quote(str(output))}{extra} --resume"


def _preset_default(section: str, name: str) -> str:
    """``80,120 sysu, 110 regdb``: a field's value in every preset, for an option's help."""
    return ", ".join(f"{show_value(value)} {preset}" for preset, value in preset_values(section, name).items())


def _image_size_default() -> str:
    """``384x128 sysu, 256x128 regdb``: the presets' input sizes."""
    heights, widths = preset_values("model", "image_height"), preset_values("model", "image_width")
    return ", ".join(f"{heights[preset]}x{widths[preset]} {preset}" for preset in heights)


@click.command("train")
@click.option("--dataset", type=DatasetChoice(), default=None,
              help="Dataset and preset (the authors' SYSU.yml / RegDB.yml). Required unless --resume.")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Run folder (runs/NAME); must be empty unless --resume or --force.")
@click.option("--image-size", default=None,
              help=f"Input size HxW [default: the preset's: {_image_size_default()}].")
@click.option("--milestones", default=None,
              help=f"Epochs after which the LR is multiplied by --gamma [default: the preset's: "
                   f"{_preset_default('train', 'milestones')}].")
@click.option("--mixed-precision", type=click.Choice([p or "none" for p in MIXED_PRECISIONS]), default="none",
              help="Mixed precision policy (losses stay float32; fp16 uses dynamic loss scaling) [default: none].")
@click.option("--final-eval/--no-final-eval", default=True,
              help="Evaluate the last epoch's model at the end [default: on].")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Delete what an earlier run wrote in --output and start over.")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Train N runs with seeds seed, seed+1, ... into --output/seed-K/.")
@click.option("--ablation", default=None, type=click.Choice(list(ABLATIONS)),
              help="A row of the paper's ablation tables (config.ABLATIONS) [default: the full model].")
@click.option("--single-modality-ce", is_flag=True,
              help="Count each modality-specific CE once (the paper's Eq.) instead of twice (the code).")
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

    from mpanet_tf.training.trainer import TrainingInterrupted, train, train_repeats  # deferred: TensorFlow; --help stays fast

    quiet = params["quiet"]
    log = (lambda message: None) if quiet else click.echo
    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    kwargs = dict(resume=params["resume"], force=params["force"], verbose=verbose,
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
