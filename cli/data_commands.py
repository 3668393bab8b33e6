"""``mpanet-tf dataset-info`` and ``mpanet-tf synth``: inspect a dataset tree, write a synthetic one."""

from __future__ import annotations

import json
import pathlib

import click

from mpanet_tf.cli.datasets import DatasetChoice, synthesizable_names
from mpanet_tf.config import parse_image_size
from mpanet_tf.data.bad_images import verify_images
from mpanet_tf.data.registry import get_dataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.io.output_checks import check_output_folder


def _echo_table(info: dict) -> None:
    width = max(len(key) for key in info)
    for key, value in info.items():
        click.echo(f"{key:<{width}}  {value}")


@click.command("dataset-info")
@click.option("--dataset", type=DatasetChoice(), default="sysu", show_default=True,
              help="Which layout to read.")
@click.option("--data-root", default=None,
              help="Dataset folder [default: datasets/SYSU-MM01 or datasets/RegDB, per --dataset].")
@click.option("--trial", type=int, default=1, show_default=True,
              help="RegDB trial 1..10 (the idx/*_{trial}.txt split); ignored for SYSU-MM01.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--verify", is_flag=True,
              help="Decode every image and list the ones that fail (exit code 2 if any).")
@click.option("--skip-bad-images", is_flag=True,
              help="With --verify: report undecodable images as warnings and exit 0 (training with "
                   "--skip-bad-images leaves them out).")
def dataset_info(dataset, data_root, trial, as_json, verify, skip_bad_images):
    """Validate a dataset tree and print its split sizes.

    SYSU-MM01: train ids (train_id.txt + val_id.txt) with their visible / infrared image counts,
    test ids, queries (infrared test images), the all-search and indoor gallery pools (every
    visible test image in cameras 1,2,4,5 or 1,2) and whether exp/rand_perm_cam.mat is present.
    RegDB: the four lists of one trial.
    """
    spec = get_dataset(dataset)
    data = spec.load(data_root or spec.data_root, trial=trial)
    counts = data.counts()
    info = {"dataset": dataset, "root": str(data.root), **{key: counts[key] for key in spec.info_keys}}
    bad = []
    if verify:
        records = data.all_records()
        bad = verify_images(records)
        info["verified_images"] = len({r.path for r in records})
        info["bad_images"] = len(bad)
    if as_json:
        click.echo(json.dumps(info))
    else:
        _echo_table(info)
    for line in bad:
        click.echo(line, err=True)
    if bad and skip_bad_images:
        click.echo(f"Warning: {len(bad)} of {info['verified_images']} images under {data.root} cannot be "
                   "decoded; they will be skipped (--skip-bad-images)", err=True)
    elif bad:
        raise DatasetError(f"{len(bad)} of {info['verified_images']} images under {data.root} cannot be "
                           "decoded; replace or delete them, or pass --skip-bad-images")


@click.command("synth")
@click.option("--layout", type=DatasetChoice(synthesizable_names), default="sysu", show_default=True,
              help="Write a SYSU-MM01 or a RegDB tree.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Output folder; it must be empty or absent unless --force.")
@click.option("--ids", type=int, default=None, help="Number of identities [default: 24 for sysu, 20 for regdb].")
@click.option("--images-per-camera", type=int, default=None,
              help="Images per (camera, id) for sysu, per (modality, id) for regdb [default: 4 / 10].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed; the same seed writes byte-identical files.")
@click.option("--size", default=None, help="Image size HxW [default: 96x48 for sysu, 64x32 for regdb].")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out, replacing its cam1..cam6/exp (sysu) or Visible/Thermal/idx "
                   "(regdb) folders; other files are left alone.")
def synth(layout, out, ids, images_per_camera, seed, size, force):
    """Write a synthetic dataset of drawn pedestrians in the real layout.

    Visible images are coloured with a per-camera cast; infrared images are grey, their intensity
    set by per-garment materials rather than colours, so identities keep their shape nuances
    (sleeves, trousers, bag, glasses, build) across modalities. Use the tree with
    `mpanet-tf dataset-info`, training and evaluation exactly like the real dataset.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; choose another folder")
    check_output_folder(out, "--out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} is not empty; choose an empty folder or pass --force")
    spec = get_dataset(layout)
    root = spec.synthesize(out, seed=seed, overwrite=force, ids=ids, images=images_per_camera,
                           size=parse_image_size(size) if size is not None else None)
    click.echo(f"wrote a synthetic {spec.title} tree to {root}")
    _echo_table(spec.load(root).counts())


def register(group: click.Group) -> None:
    """Add ``dataset-info`` and ``synth`` to the ``mpanet-tf`` group."""
    group.add_command(dataset_info)
    group.add_command(synth)
