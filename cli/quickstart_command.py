"""``mpanet-tf quickstart``: synthetic data -> training -> evaluation -> export, on the CPU."""

from __future__ import annotations

import click

from mpanet_tf.quickstart import QuickstartOptions, run_quickstart

_DEFAULTS = QuickstartOptions()


@click.command("quickstart")
@click.option("--data-root", default=_DEFAULTS.data_root, show_default=True,
              help="Where the synthetic SYSU-MM01-layout data is written (replaced if present).")
@click.option("--output", default=_DEFAULTS.output, show_default=True,
              help="Run folder of the training (replaced if present).")
@click.option("--export-dir", default=_DEFAULTS.export_dir, show_default=True,
              help="Export base folder; the SavedModel goes to EXPORT_DIR/1 (replaced if present).")
@click.option("--epochs", type=click.IntRange(min=1), default=_DEFAULTS.epochs, show_default=True,
              help="Training epochs.")
@click.option("--steps-per-epoch", type=click.IntRange(min=0), default=_DEFAULTS.steps_per_epoch,
              show_default=True, help="Cap on training steps per epoch (0 = one full sampler pass).")
@click.option("--ids", type=click.IntRange(min=8), default=_DEFAULTS.ids, show_default=True,
              help="Synthetic identities (about 70% train, 30% test).")
def quickstart(data_root, output, export_dir, epochs, steps_per_epoch, ids):
    """Run the whole pipeline on synthetic data in a few minutes on a CPU.

    Generates a small SYSU-MM01-layout dataset, trains MPANet briefly from random initialisation,
    evaluates it with the official SYSU all-search single-shot protocol (10 trials) next to the
    untrained model, and exports a TF Serving SavedModel.
    """
    options = QuickstartOptions(data_root=data_root, output=output, export_dir=export_dir, epochs=epochs,
                                steps_per_epoch=steps_per_epoch, ids=ids)
    run_quickstart(options, log=click.echo)


def register(group):
    group.add_command(quickstart)
