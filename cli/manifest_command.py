"""``mpanet-tf manifest``: write a dataset manifest (CSV) from a folder tree of a user's own cameras."""

from __future__ import annotations

import pathlib

import click

from mpanet_tf.data.manifest import ManifestDataset
from mpanet_tf.data.manifest_folders import write_manifest_from_folders


@click.command("manifest")
@click.option("--from-folders", "folder", required=True,
              type=click.Path(file_okay=False, path_type=pathlib.Path),
              help="Tree DIR/{visible,infrared}/<person>/<camera>_<anything>.<ext>.")
@click.option("--output", required=True, type=click.Path(dir_okay=False, path_type=pathlib.Path),
              help="The CSV manifest to write (image paths in it are relative to its folder).")
@click.option("--test-fraction", type=float, default=0.3, show_default=True,
              help="Share of the persons (with images of both modalities) held out as query/gallery persons.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the identity-disjoint split.")
@click.option("--query-modality", type=click.Choice(["infrared", "visible"]), default="infrared",
              show_default=True, help="Modality of the test persons' query images; the other is the gallery.")
@click.option("--force", is_flag=True, help="Replace an existing --output file.")
def manifest(folder, output, test_fraction, seed, query_modality, force):
    """Write a manifest: one row per image with path, person, camera, modality and split.

    The person is the folder name, the camera the file name up to its first '_'. Persons with
    images of both modalities are split (seeded, identity-disjoint) into training and test
    persons; test persons' --query-modality images become queries and their other images the
    gallery. Persons with gallery-modality images only join the gallery as distractors. Use the
    file with `--dataset manifest --data-root FILE` in dataset-info, train and eval.
    """
    summary = write_manifest_from_folders(folder, output, test_fraction=test_fraction, seed=seed,
                                          query_modality=query_modality, overwrite=force)
    counts = ManifestDataset(summary["output"]).counts()
    click.echo(f"wrote {summary['rows']} rows to {summary['output']}")
    click.echo(f"persons: {summary['train_persons']} train, {summary['test_persons']} test, "
               f"{summary['distractor_persons']} gallery distractors, {summary['left_out_persons']} left out "
               "(query-modality images only)")
    click.echo(f"images: {summary['train']} train ({counts['train_visible']} visible, "
               f"{counts['train_infrared']} infrared), {summary['query']} query, {summary['gallery']} gallery")


def register(group: click.Group) -> None:
    """Add ``manifest`` to the ``mpanet-tf`` group."""
    group.add_command(manifest)
