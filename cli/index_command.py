"""``mpanet-tf index build|add|info|migrate``: a gallery embedded once, searched with ``search --index``."""

from __future__ import annotations

import click

from mpanet_tf.cli.datasets import DatasetChoice, ProtocolOptionsCommand, chosen_protocol_options, split_option
from mpanet_tf.index import add_to_index, build_index
from mpanet_tf.index.ann import prepare_ann
from mpanet_tf.index.describe import describe_index
from mpanet_tf.index.migrate import migrate
from mpanet_tf.index.milvus_store import index_parameters, is_milvus_location

_LOCATION = ("an .mpidx folder, milvus:PATH.db (Milvus Lite) or milvus://HOST:PORT/COLLECTION (a Milvus server; "
             "token from $MPANET_MILVUS_TOKEN)")
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
                                             "protocol, its training images, or all."),
        split_option("With --dataset: its train/test split"),
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


@index_group.command("build", cls=ProtocolOptionsCommand, after="trial", attribute="index_options")
@click.option("--model", "model_path", required=True, type=click.Path(), help=_MODEL_HELP)
@_source_options
@click.option("--output", required=True, type=click.Path(),
              help=f"The index to write: {_LOCATION}, e.g. gallery.mpidx or milvus:gallery.db.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32", show_default=True,
              help="Storage of the L2-normalised embeddings (float16 halves an .mpidx; Milvus keeps float16-rounded "
                   "values in float32 vectors).")
@click.option("--ann", is_flag=True, help="Also train the FAISS IVF-PQ index of `search --ann` (.mpidx; needs faiss-cpu).")
@click.option("--milvus-index", type=click.Choice(["FLAT", "IVF_FLAT", "HNSW"], case_sensitive=False), default=None,
              help="Milvus only: the collection's vector index [default: FLAT, exact]. IVF_FLAT serves exact and "
                   "--ann searches; HNSW --ann only.")
@click.option("--nlist", type=click.IntRange(min=1), default=None, help="With --milvus-index IVF_FLAT: cells [128].")
@click.option("--hnsw-m", type=click.IntRange(min=2), default=None, help="With --milvus-index HNSW: links per node [16].")
@click.option("--ef-construction", type=click.IntRange(min=1), default=None,
              help="With --milvus-index HNSW: candidate list while building [200].")
def build_command(model_path, images, dataset, data_root, split, trial, batch_size, skip_bad_images, output,
                  dtype, ann, milvus_index, nlist, hnsw_m, ef_construction, **dataset_options):
    """Embed every image of --images or --dataset into a new index at --output.

    The options after --trial are the datasets' own (they choose among --dataset's images).
    Interrupted (Ctrl-C, kill), the same command continues where it stopped.
    """
    milvus = is_milvus_location(output)
    if (milvus_index or nlist or hnsw_m or ef_construction) and not milvus:
        raise click.UsageError("--milvus-index, --nlist, --hnsw-m, --ef-construction apply to a milvus: --output")
    if ann and milvus:
        raise click.UsageError("--ann trains the FAISS index of an .mpidx; a Milvus collection's approximate "
                               "index is chosen with --milvus-index")
    settings = index_parameters(milvus_index or "FLAT", nlist, hnsw_m, ef_construction) if milvus else None
    dataset_options = chosen_protocol_options(dataset, dataset_options, "index_options")
    index = build_index(model_path, output, images=images, dataset=dataset, data_root=data_root, split=split,
                        trial=trial, dtype=dtype, batch_size=batch_size, skip_bad_images=skip_bad_images,
                        milvus_index=settings, dataset_options=dataset_options)
    _report(index, ann)


@index_group.command("add", cls=ProtocolOptionsCommand, after="trial", attribute="index_options")
@click.option("--index", "index_path", required=True, type=click.Path(),
              help=f"An index written by `index build`: {_LOCATION}.")
@click.option("--model", "model_path", required=True, type=click.Path(), help=_MODEL_HELP)
@_source_options
@click.option("--ann", is_flag=True, help="Also bring the FAISS index of `search --ann` up to date (.mpidx).")
def add_command(index_path, model_path, images, dataset, data_root, split, trial, batch_size, skip_bad_images, ann,
                **dataset_options):
    """Append the images of --images or --dataset that the index does not hold yet."""
    if ann and is_milvus_location(index_path):
        raise click.UsageError("--ann applies to an .mpidx index; Milvus keeps its own vector index up to date")
    dataset_options = chosen_protocol_options(dataset, dataset_options, "index_options")
    index = add_to_index(index_path, model_path, images=images, dataset=dataset, data_root=data_root, split=split,
                         trial=trial, batch_size=batch_size, skip_bad_images=skip_bad_images,
                         dataset_options=dataset_options)
    _report(index, ann)


def _report(index, ann: bool) -> None:
    if hasattr(index, "location"):  # a Milvus gallery
        click.echo(f"index: {index.location}  ({index.count()} images, {index.dim}-d {index.dtype}, "
                   f"{index.meta['index']['type']})")
        index.close()
        return
    click.echo(f"index: {index.path}  ({index.count} images, {index.dim}-d {index.dtype})")
    if ann:
        _, settings = prepare_ann(index)
        click.echo(f"ann: IVF-PQ nlist={settings['nlist']} m={settings['m']} nbits={settings['nbits']} "
                   f"over {settings['rows']} rows")


@index_group.command("info")
@click.option("--index", "index_path", required=True, type=click.Path(),
              help=f"An index written by `index build`: {_LOCATION}.")
def info_command(index_path):
    """Describe an index: count, dim, dtype, model fingerprint, size on disk, dates, sources."""
    for line in describe_index(index_path):
        click.echo(line)


@index_group.command("migrate")
@click.argument("source")
@click.argument("destination")
@click.option("--batch-rows", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Entries copied per durable step (an interruption loses at most one).")
def migrate_command(source, destination, batch_rows):
    """Copy the gallery SOURCE to DESTINATION, one an .mpidx folder, the other milvus:PATH.db or
    milvus://HOST:PORT/COLLECTION, without re-embedding.

    Interrupted, the same command continues; the copy is verified by count and model fingerprint.
    """
    count, fingerprint = migrate(source, destination, batch_rows=batch_rows)
    click.echo(f"migrated: {count} entries  {source} -> {destination}  (model {fingerprint[:19]}...)")


def register(group) -> None:
    group.add_command(index_group)
