"""``mpanet-tf train``: train MPANet on SYSU-MM01 or RegDB into a run folder.

The defaults are the authors' configuration (``MPANetConfig.preset(dataset)``, facts §3); every
hyper-parameter has an option. The command only resolves the config and calls
:func:`mpanet_tf.training.train` / :func:`~mpanet_tf.training.train_repeats`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.errors import ConfigError

#: option name -> (config section, field, converter). Only options given on the command line
#: override the preset (or, with --resume, the run's config.json).
OVERRIDES = {
    "data_root": ("data", "data_root", str),
    "trial": ("data", "trial", int),
    "epochs": ("train", "epochs", int),
    "batch_ids": ("data", "batch_ids", int),
    "images_per_id": ("data", "images_per_id", int),
    "lr": ("train", "lr", float),
    "weight_decay": ("train", "weight_decay", float),
    "gamma": ("train", "gamma", float),
    "seed": ("train", "seed", int),
    "steps_per_epoch": ("train", "steps_per_epoch", int),
    "backbone_weights": ("model", "backbone_weights", str),
    "strategy": ("train", "strategy", str),
    "jit": ("train", "jit", bool),
    "sync_bn_neck": ("train", "sync_bn_neck", bool),
    "save_every_steps": ("train", "save_every_steps", int),
    "eval_every": ("train", "eval_every", int),
    "skip_bad_images": ("data", "skip_bad_images", bool),
    "cache": ("data", "cache", str),
    "pad_fill": ("data", "pad_fill", str),
    "weight_sep": ("loss", "weight_sep", float),
    "weight_sid": ("loss", "weight_sid", float),
    "weight_kl": ("loss", "weight_kl", float),
    "margin": ("loss", "margin", float),
    "update_rate": ("loss", "update_rate", float),
}


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
    from mpanet_tf.config import MPANetConfig, parse_image_size

    data = config.to_dict()
    for name, (section, field, convert) in OVERRIDES.items():
        if _given(ctx, name):
            data[section][field] = convert(params[name])
    if _given(ctx, "image_size"):
        data["model"]["image_height"], data["model"]["image_width"] = parse_image_size(params["image_size"])
    if _given(ctx, "milestones"):
        data["train"]["milestones"] = list(_parse_milestones(params["milestones"]))
    if _given(ctx, "mixed_precision"):
        data["train"]["mixed_precision"] = "" if params["mixed_precision"] == "none" else params["mixed_precision"]
    if params["single_modality_ce"]:
        data["loss"]["double_modality_ce"] = False
    return MPANetConfig.from_dict(data)


def _saved_config(output: Path, repeat: int):
    """The config.json a --resume continues from (the lowest seed folder with --repeat), or None."""
    from mpanet_tf import run_folder
    from mpanet_tf.config import MPANetConfig

    if repeat == 1:
        return MPANetConfig.from_json_file(output / "config.json") if run_folder.is_run_folder(output) else None
    folders = sorted((p for p in output.glob("seed-*") if run_folder.is_run_folder(p)),
                     key=lambda p: int(p.name.split("-", 1)[1]) if p.name.split("-", 1)[1].isdigit() else 1 << 30)
    if not folders:
        return None
    config = MPANetConfig.from_json_file(folders[0] / "config.json")
    return config


def resolve_config(ctx, params):
    """The run's config: preset (+ ablation) or, with --resume, the saved one; then the options."""
    from mpanet_tf.config import MPANetConfig

    output, repeat = Path(params["output"]), int(params["repeat"])
    base = _saved_config(output, repeat) if params["resume"] else None
    if base is None:
        if not params["dataset"]:
            from mpanet_tf.data.registry import describe_choices

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


@click.command("train")
@click.option("--dataset", type=DatasetChoice(), default=None,
              help="Dataset and preset (the authors' SYSU.yml / RegDB.yml). Required unless --resume.")
@click.option("--data-root", default=None,
              help="Dataset folder [default: the preset's, datasets/SYSU-MM01 or datasets/RegDB].")
@click.option("--trial", type=int, default=1, show_default=True, help="RegDB trial 1..10 (train and test split).")
@click.option("--output", required=True, type=click.Path(file_okay=False),
              help="Run folder (runs/NAME); must be empty unless --resume or --force.")
@click.option("--epochs", type=int, default=None, help="Epochs [default: 140].")
@click.option("--image-size", default=None,
              help="Input size HxW [default: 384x128 for sysu, 256x128 for regdb].")
@click.option("--batch-ids", type=int, default=None, help="P identities per batch [default: 16 sysu, 12 regdb].")
@click.option("--images-per-id", type=int, default=None,
              help="K images per identity, half infrared [default: 8 sysu, 10 regdb].")
@click.option("--lr", type=float, default=3.5e-4, help="Adam learning rate [default: 3.5e-4].")
@click.option("--weight-decay", type=float, default=5e-4,
              help="Coupled L2 weight decay, as PyTorch Adam's (added to the gradients) [default: 5e-4].")
@click.option("--milestones", default=None,
              help="Epochs after which the LR is multiplied by --gamma [default: 80,120 sysu; 110 regdb].")
@click.option("--gamma", type=float, default=0.1, help="LR factor at each milestone [default: 0.1].")
@click.option("--seed", type=int, default=1, help="Seed of the sampler and the augmentation [default: 1].")
@click.option("--steps-per-epoch", type=int, default=0,
              help="Cap on iterations per epoch [default: 0 = one full pass of the regenerated sampler].")
@click.option("--backbone-weights", default="imagenet",
              help="ResNet-50 init: imagenet (torchvision resnet50-19c8e357.pth, cached or downloaded), none "
                   "(random) or the path of a torchvision-layout .pth [default: imagenet].")
@click.option("--strategy", type=click.Choice(["auto", "one-device", "mirrored", "multi-worker"]), default="auto",
              help="Distribution: auto = mirrored over all GPUs when >1, else one device; multi-worker reads "
                   "TF_CONFIG [default: auto].")
@click.option("--mixed-precision", type=click.Choice(["none", "bf16", "fp16"]), default="none",
              help="Mixed precision policy (losses stay float32; fp16 uses dynamic loss scaling) [default: none].")
@click.option("--jit/--no-jit", default=False, help="Compile the train step with XLA [default: off].")
@click.option("--sync-bn-neck/--no-sync-bn-neck", default=False,
              help="Synchronise the BN-neck batch statistics across replicas [default: off].")
@click.option("--save-every-steps", type=int, default=0,
              help="Also checkpoint every N steps [default: 0 = at epoch ends only].")
@click.option("--eval-every", type=int, default=0,
              help="Evaluate on the test split every N epochs [default: 0 = only the last epoch's model].")
@click.option("--final-eval/--no-final-eval", default=True,
              help="Evaluate the last epoch's model at the end [default: on].")
@click.option("--resume", is_flag=True, help="Continue the run in --output from its newest checkpoint.")
@click.option("--force", is_flag=True, help="Delete what an earlier run wrote in --output and start over.")
@click.option("--repeat", type=int, default=1, show_default=True,
              help="Train N runs with seeds seed, seed+1, ... into --output/seed-K/.")
@click.option("--skip-bad-images", is_flag=True, help="Leave undecodable training images out instead of stopping.")
@click.option("--cache", default="", help="Image cache folder written by `mpanet-tf prepare` [default: none].")
@click.option("--ablation", default=None,
              type=click.Choice(["baseline", "+cc", "+ml", "+pam", "+mam", "mam-as-in", "mam-as-se"]),
              help="A row of the paper's ablation tables (config.ABLATIONS) [default: the full model].")
@click.option("--pad-fill", type=click.Choice(["grey", "red"]), default="grey",
              help="Pad colour before the random crop: grey (127,127,127) or red (127,0,0), what the authors' "
                   "torchvision 0.4 produced [default: grey].")
@click.option("--weight-sep", type=float, default=0.5, help="Weight of the separation loss [default: 0.5].")
@click.option("--weight-sid", type=float, default=0.5,
              help="Weight of each modality-specific CE, counted twice as in the authors' code [default: 0.5].")
@click.option("--weight-kl", type=float, default=2.5, help="Weight of the mutual-mean KL loss [default: 2.5].")
@click.option("--margin", type=float, default=0.7, help="Centre-cluster push margin rho [default: 0.7].")
@click.option("--update-rate", type=float, default=0.2, help="EMA rate of the mean classifiers [default: 0.2].")
@click.option("--single-modality-ce", is_flag=True,
              help="Count each modality-specific CE once (the paper's Eq.) instead of twice (the code).")
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
    from mpanet_tf.run_folder import check_output_folder

    check_output_folder(params["output"], "--output")

    from mpanet_tf.training import TrainingInterrupted, train, train_repeats

    quiet = params["quiet"]
    log = (lambda message: None) if quiet else click.echo
    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    kwargs = dict(resume=params["resume"], force=params["force"], verbose=verbose,
                  final_eval=params["final_eval"], log=log, detail_log=click.echo if params["verbose"] else None)
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
