"""``mpanet-tf import-torch``: turn the authors' trained MPANet ``.pth`` into a run folder."""

from __future__ import annotations

import click

from mpanet_tf import run_folder
from mpanet_tf.cli.datasets import DatasetChoice
from mpanet_tf.io.output_checks import check_output_folder


@click.command("import-torch")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(),
              help="Run folder to write, e.g. runs/mpanet-authors (created; must be empty unless "
                   "--force).")
@click.option("--dataset", type=DatasetChoice(), default="sysu", show_default=True,
              help="Preset written to config.json: image size, batch layout and LR milestones of "
                   "the dataset the checkpoint was trained on.")
@click.option("--image-size", default=None,
              help="Input size HxW stored in the config [default: the preset's, 384x128 for sysu, "
                   "256x128 for regdb]. The weights do not depend on it.")
@click.option("--force", is_flag=True, help="Replace an existing non-empty output folder.")
def import_torch(checkpoint, output, dataset, image_size, force):
    """Import an authors' MPANet checkpoint (DoubtedSteam/MPANet) into a run folder.

    CHECKPOINT is the whole model's state dict (.pth, torch >= 1.6 zip or the older format),
    bare or under a key such as `state_dict` or `model`; it is read without torch and without
    running any code from the file. All 334 tensors must match (the BN-neck bias must be 0);
    num_classes comes from classifier.weight. The run folder then works with `eval`, `export`
    and `train --resume`.
    """
    from mpanet_tf.interop.import_mpanet import import_mpanet_checkpoint  # deferred: TensorFlow; --help stays fast

    check_output_folder(output, "--output")
    path = import_mpanet_checkpoint(checkpoint, output, dataset=dataset, force=force,
                                    image_size=image_size)
    meta = run_folder.read_json(path / run_folder.RUN_FILE)
    click.echo(f"imported {checkpoint} (sha256 {meta['backbone_weights_sha256'][:12]}): "
               f"{meta['backbone_init']['loaded']} tensors, {meta['num_classes']} classes -> {path}")
    click.echo(f"evaluate with: mpanet-tf eval --model {path}; fine-tune with: "
               f"mpanet-tf train --output {path} --resume")


def register(group: click.Group) -> None:
    """Add ``import-torch`` to the ``mpanet-tf`` group."""
    group.add_command(import_torch)
