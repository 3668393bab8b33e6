"""``mpanet-tf index build|add|info``: a gallery embedded once, searched with ``search --index``."""

from __future__ import annotations

import click

from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.index import add_to_index, build_index
from mpanet_tf.index.ann import prepare_ann
from mpanet_tf.index.describe import describe_index

_MODEL_HELP = ("Run folder written by `mpanet-tf train`, a .keras file, an exported SavedModel folder or an "
               ".onnx file. The index keeps its fingerprint and refuses any other model.")


def _source_options(function):
    for option in reversed([
        click.option("--images", type=click.Path(file_okay=False), default=None,
                     help="A folder of images (searched recursively for .jpg/.jpeg/.png/.bmp)."),
        click.option("--dataset", type=DatasetChoice(), default=None,
                     help="Instead of --images: a dataset split, with --data-root (keeps identity, camera, "
                          "modality)."),
        click.option("--data-root", default=None, help="Dataset folder for --dataset."),
        click.option("--split", type=click.Choice(["gallery", "query", "train", "all"]), default="gallery",
                     show_default=True, help="Which images of --dataset: the gallery or query side of its test "
                                             "protocol (SYSU: visible test pool / infrared test images), its training "
                                             "images, or all."),
        click.option("--trial", type=click.IntRange(1, 10), default=1, show_default=True,
                     help="RegDB trial of --split."),
        click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Images per forward pass and per commit (an interruption loses at most one batch)."),
        click.option("--skip-bad-images", is_flag=True,
                     help="Leave undecodable images out (listed by `index info`) instead of stopping."),
    ]):
        function = option(function)
    return function


@click.group("index")
def index_group():
    """Build, grow and describe a gallery index (embed once, search many times)."""


@index_group.command("build")
@click.option("--model", "model_path", required=True, type=click.Path(), help=_MODEL_HELP)
@_source_options
@click.option("--output", required=True, type=click.Path(), help="The index folder to write, e.g. gallery.mpidx.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage of the L2-normalised embeddings (float16 halves the size).")
@click.option("--ann", is_flag=True, help="Also train the FAISS IVF-PQ index of `search --ann` (needs faiss-cpu).")
def build_command(model_path, images, dataset, data_root, split, trial, batch_size, skip_bad_images, output,
                  dtype, ann):
    """Embed every image of --images or --dataset into a new index at --output.

    Interrupted (Ctrl-C, kill), the same command continues where it stopped.
    """
    index = build_index(model_path, output, images=images, dataset=dataset, data_root=data_root, split=split,
                        trial=trial, dtype=dtype, batch_size=batch_size, skip_bad_images=skip_bad_images)
    _report(index, ann)


@index_group.command("add")
@click.option("--index", "index_path", required=True, type=click.Path(), help="An index written by `index build`.")
@click.option("--model", "model_path", required=True, type=click.Path(), help=_MODEL_HELP)
@_source_options
@click.option("--ann", is_flag=True, help="Also bring the FAISS index of `search --ann` up to date.")
def add_command(index_path, model_path, images, dataset, data_root, split, trial, batch_size, skip_bad_images, ann):
    """Append the images of --images or --dataset that the index does not hold yet."""
    index = add_to_index(index_path, model_path, images=images, dataset=dataset, data_root=data_root, split=split,
                         trial=trial, batch_size=batch_size, skip_bad_images=skip_bad_images)
    _report(index, ann)


def _report(index, ann: bool) -> None:
    click.echo(f"index: {index.path}  ({index.count} images, {index.dim}-d {index.dtype})")
    if ann:
        _, settings = prepare_ann(index)
        click.echo(f"ann: IVF-PQ nlist={settings['nlist']} m={settings['m']} nbits={settings['nbits']} "
                   f"over {settings['rows']} rows")


@index_group.command("info")
@click.option("--index", "index_path", required=True, type=click.Path(), help="An index written by `index build`.")
def info_command(index_path):
    """Describe an index: count, dim, dtype, model fingerprint, size on disk, dates, sources."""
    for line in describe_index(index_path):
        click.echo(line)


def register(group) -> None:
    group.add_command(index_group)
