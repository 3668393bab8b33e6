"""``mpanet-tf eval``: evaluate a trained model (or saved features) with the field's protocols.

The options every dataset shares are declared here; each dataset's protocol declares its own
(SYSU's --mode, --shots, --trials, --sampling, --rand-perm; RegDB's --regdb-mode, --trial,
--normalize) as :class:`mpanet_tf.eval.protocol.CliOption`, added by :mod:`mpanet_tf.cli.datasets`.
"""

from __future__ import annotations

import sys

import click

from mpanet_tf.cli.datasets import DatasetChoice, ProtocolOptionsCommand
from mpanet_tf.data.registry import get_dataset
from mpanet_tf.eval.artifacts import EvalOptions, evaluate_artifacts
from mpanet_tf.eval.report import format_table
from mpanet_tf.io.atomic import atomic_write_json
from mpanet_tf.io.output_checks import check_output_file


@click.command("eval", cls=ProtocolOptionsCommand, after="save_features")
@click.option("--dataset", type=DatasetChoice(), required=True, help="Dataset to evaluate on.")
@click.option("--data-root", default=None,
              help="Dataset folder [default: datasets/SYSU-MM01 or datasets/RegDB]. With --features it is only "
                   "read for SYSU's exp/rand_perm_cam.mat.")
@click.option("--model", default=None,
              help="Run folder, .keras file, exported SavedModel folder or .onnx file. A folder of seed-K runs "
                   "(train --repeat) is evaluated per seed (mean ± std). For RegDB, {trial} in the path names "
                   "each trial's model, e.g. runs/regdb-t{trial}.")
@click.option("--features", "features_path", default=None,
              help="Evaluate a feature file written by --save-features instead of a model ({trial} allowed for RegDB).")
@click.option("--save-features", default=None,
              help="Also write the extracted features to this .npz ({trial}/{seed} when there are several models).")
@click.option("--rerank", is_flag=True, help="Apply k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).")
@click.option("--all-settings", is_flag=True,
              help="SYSU: all/indoor x single/multi-shot; RegDB: both directions. The JSON is then a list.")
@click.option("--output", default=None, help="Write the results as JSON to this file.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Images per embedding batch.")
@click.option("--skip-bad-images", is_flag=True, help="Leave undecodable images out instead of stopping.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or log lines; only the table.")
def eval_command(**params):
    """Evaluate MPANet: SYSU-MM01 (official or AGW protocol) or RegDB (I->V, V->I).

    Prints rank-1/10/20, mAP and mINP (mean ± std over trials or seeds) and optionally writes JSON.

    Example: mpanet-tf eval --dataset sysu --data-root datasets/SYSU-MM01 --model runs/sysu --all-settings
    """
    protocol = get_dataset(params["dataset"]).get_protocol()
    options = EvalOptions(
        dataset=params["dataset"], data_root=params["data_root"], protocol=protocol.options_from_cli(params),
        rerank=params["rerank"], all_settings=params["all_settings"], batch_size=params["batch_size"],
        skip_bad_images=params["skip_bad_images"], progress=not params["quiet"],
    )

    for option in ("output", "save_features"):
        if params[option]:   # checked before any feature is extracted: nothing is lost at the end
            template = params[option].replace("{trial}", "1").replace("{seed}", "1")
            check_output_file(template, "--" + option.replace("_", "-"))
    log = (lambda message: None) if params["quiet"] else (lambda message: click.echo(message, err=True))
    results = evaluate_artifacts(options, model=params["model"], features=params["features_path"],
                                 save_features=params["save_features"], log=log)
    click.echo(format_table(results))
    if params["output"]:
        payload = results if len(results) > 1 or params["all_settings"] else results[0]
        atomic_write_json(params["output"], payload)
        log(f"results written to {params['output']}")
    sys.stdout.flush()


def register(group) -> None:
    group.add_command(eval_command)
