"""``mpanet-tf visualize ranks|patterns|tsne|curves``: the pictures users judge a model by.

Each subcommand writes one PNG (needs the ``viz`` extra: matplotlib, and scikit-learn for tsne).
The drawing lives in :mod:`mpanet_tf.viz`; this module only parses options.
"""

from __future__ import annotations

import pathlib

import click

from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.viz.curves import visualize_curves
from mpanet_tf.viz.ranks import visualize_ranks
from mpanet_tf.viz.tsne import visualize_tsne

_MODEL_HELP = "Run folder written by `mpanet-tf train` (or a .keras model file)."
_EMBED_HELP = ("Run folder written by `mpanet-tf train`, a .keras file, an exported SavedModel folder "
               "or an .onnx file.")
_OUTPUT = click.Path(dir_okay=False, path_type=pathlib.Path)


def _size_options(function):
    function = click.option("--height", type=int, default=None,
                            help="Picture height in pixels [default: fitted to the layout].")(function)
    return click.option("--width", type=int, default=None,
                        help="Picture width in pixels [default: fitted to the layout].")(function)


@click.group("visualize")
def visualize():
    """Draw a picture of a model or a run: ranked lists, pattern maps, t-SNE or training curves."""


@visualize.command("ranks")
@click.option("--model", "model_path", required=True, help=_EMBED_HELP)
@click.option("--dataset", type=DatasetChoice(), default=None,
              help="Rank a protocol's test queries against its gallery (with --data-root).")
@click.option("--data-root", default=None, help="Dataset folder for --dataset.")
@click.option("--query-folder", default=None, type=click.Path(file_okay=False),
              help="Instead of --dataset: a folder of query images (searched recursively).")
@click.option("--gallery", "gallery_folder", default=None, type=click.Path(file_okay=False),
              help="With --query-folder: a folder of gallery images (searched recursively).")
@click.option("--queries", type=int, default=4, show_default=True, help="Number of queries (rows).")
@click.option("--top-k", type=int, default=5, show_default=True, help="Gallery images shown per query.")
@click.option("--mode", type=click.Choice(["all", "indoor"]), default="all", show_default=True,
              help="SYSU-MM01 gallery cameras: all (1,2,4,5) or indoor (1,2).")
@click.option("--trial", type=int, default=1, show_default=True, help="RegDB trial 1..10.")
@click.option("--direction", type=click.Choice(["i2v", "v2i"]), default="i2v", show_default=True,
              help="RegDB: thermal queries against visible gallery (i2v) or the reverse (v2i).")
@click.option("--seed", type=int, default=None,
              help="Pick random queries with this seed [default: evenly spaced over the query list].")
@click.option("--output", required=True, type=_OUTPUT, help="PNG file to write.")
@_size_options
def ranks(model_path, dataset, data_root, query_folder, gallery_folder, queries, top_k, mode, trial,
          direction, seed, output, width, height):
    """Queries and their top-k gallery images; green border = right identity, red = wrong.

    SYSU-MM01 uses the first trial of the official single-shot gallery (the whole pool when
    exp/rand_perm_cam.mat is absent) and the same-location camera rule; RegDB one trial's test split.
    """
    rows = visualize_ranks(model_path, output, dataset=dataset, data_root=data_root, query_folder=query_folder,
                           gallery_folder=gallery_folder, queries=queries, top_k=top_k, mode=mode, trial=trial,
                           direction=direction, seed=seed, width=width, height=height)
    right = sum(1 for row in rows if row.correct and row.correct[0])
    click.echo(f"wrote {output} ({len(rows)} queries, rank-1 right for {right})")


@visualize.command("patterns")
@click.option("--model", "model_path", required=True, help=_MODEL_HELP)
@click.option("--image", "image_path", required=True, type=click.Path(dir_okay=False),
              help="The image whose pattern maps to draw.")
@click.option("--scale", type=click.Choice(["per-map", "shared"]), default="per-map", show_default=True,
              help="Colour each map on its own range (per-map) or all on the sigmoid range [0, 1] (shared).")
@click.option("--output", required=True, type=_OUTPUT, help="PNG file to write.")
@_size_options
def patterns(model_path, image_path, scale, output, width, height):
    """The image with each PAM pattern map overlaid as a heat map, one panel per map (paper Fig. 3)."""
    from mpanet_tf.viz.patterns import visualize_patterns  # deferred: TensorFlow; --help stays fast

    visualize_patterns(model_path, image_path, output, width=width, height=height, scale=scale)
    click.echo(f"wrote {output}")


@visualize.command("tsne")
@click.option("--model", "model_path", required=True, help=_EMBED_HELP)
@click.option("--dataset", type=DatasetChoice(), required=True, help="Which test split to embed.")
@click.option("--data-root", required=True, help="Dataset folder.")
@click.option("--ids", type=click.IntRange(min=1), default=8, show_default=True,
              help="Number of test identities, drawn at random with --seed among those with both modalities.")
@click.option("--id", "person_ids", type=int, multiple=True,
              help="Use this identity (repeatable) instead of a random draw.")
@click.option("--per-id", type=click.IntRange(min=1), default=10, show_default=True,
              help="At most this many images per identity and modality.")
@click.option("--trial", type=int, default=1, show_default=True, help="RegDB trial 1..10.")
@click.option("--perplexity", type=click.FloatRange(min=0, min_open=True, max=1e6), default=30.0, show_default=True,
              help="t-SNE perplexity (clipped to the number of images - 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the identity draw and of t-SNE.")
@click.option("--output", required=True, type=_OUTPUT, help="PNG file to write.")
@_size_options
def tsne(model_path, dataset, data_root, ids, person_ids, per_id, trial, perplexity, seed, output, width, height):
    """t-SNE of M identities' features: a colour per identity, circles visible, triangles infrared (Fig. 4)."""
    result = visualize_tsne(model_path, dataset, data_root, output, ids=ids, per_modality=per_id,
                            person_ids=list(person_ids) or None, trial=trial, perplexity=perplexity, seed=seed,
                            width=width, height=height)
    click.echo(f"wrote {output} ({len(set(result['person_ids'].tolist()))} identities, "
               f"{len(result['points'])} images)")


@visualize.command("curves")
@click.option("--model", "run", required=True, type=click.Path(exists=False),
              help="Run folder written by `mpanet-tf train` (or its history.json).")
@click.option("--output", required=True, type=_OUTPUT, help="PNG file to write.")
@_size_options
def curves(run, output, width, height):
    """Every loss term, the evaluation metrics and the learning rate per epoch, from history.json."""
    visualize_curves(run, output, width=width, height=height)
    click.echo(f"wrote {output}")


def register(group) -> None:
    """Add the ``visualize`` group to the ``mpanet-tf`` command group."""
    group.add_command(visualize)
