"""``mpanet-tf prepare``: decode and resize a dataset's training images once into an on-disk cache."""

from __future__ import annotations

import click

from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.config import parse_image_size
from mpanet_tf.data.cache import default_cache_dir, prepare_cache
from mpanet_tf.data.registry import get_dataset
from mpanet_tf.io.output_checks import check_output_folder


@click.command("prepare")
@click.option("--dataset", type=DatasetChoice(), default="sysu", show_default=True,
              help="Which dataset layout to read.")
@click.option("--data-root", default=None,
              help="Dataset folder [default: datasets/SYSU-MM01 or datasets/RegDB, per --dataset].")
@click.option("--trial", type=int, default=1, show_default=True,
              help="RegDB trial whose idx lists are read. The RegDB cache holds every image of the "
                   "dataset (train and test ids of a trial cover all ids), so it serves all 10 trials.")
@click.option("--image-size", default=None,
              help="Network input size HxW [default: 384x128 for sysu, 256x128 for regdb].")
@click.option("--cache-dir", default=None,
              help="Output folder [default: <data-root>/.mpanet_cache/<H>x<W>]; replaced if it exists.")
@click.option("--skip-bad-images", is_flag=True,
              help="Leave undecodable images out of the cache (and list them) instead of stopping.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def prepare(dataset, data_root, trial, image_size, cache_dir, skip_bad_images, no_progress):
    """Write decoded, resized uint8 training images to one images.npy + index.json.

    `mpanet-tf train --cache DIR` then reads rows from the memory-mapped file instead of
    decoding JPEGs every epoch, with the same pixels and the same augmentation. A cache whose
    source files changed is refused; rerun this command.
    """
    import json

    spec = get_dataset(dataset)
    size = parse_image_size(image_size) if image_size else spec.image_size
    if cache_dir:
        check_output_folder(cache_dir, "--cache-dir")
    data = spec.load(data_root or spec.data_root, trial=trial)
    records = data.all_records() if spec.cache_all_records else data.train_records()
    target = cache_dir or default_cache_dir(data.root, size)
    path = prepare_cache(records, size, target, progress=not no_progress, skip_bad_images=skip_bad_images)
    index = json.loads((path / "index.json").read_text(encoding="utf-8"))
    for relpath in index["bad"]:
        click.echo(f"skipped undecodable image {relpath}", err=True)
    click.echo(f"cached {len(index['entries'])} images of {size[0]}x{size[1]} in {path}")


def register(group: click.Group) -> None:
    """Add ``prepare`` to the ``mpanet-tf`` group."""
    group.add_command(prepare)
