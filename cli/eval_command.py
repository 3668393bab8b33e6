"""``mpanet-tf eval``: evaluate a trained model (or saved features) with the field's protocols."""

from __future__ import annotations

import sys

import click


@click.command("eval")
@click.option("--dataset", type=click.Choice(["sysu", "regdb"]), required=True, help="Dataset to evaluate on.")
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
@click.option("--mode", type=click.Choice(["all", "indoor"]), default="all", show_default=True,
              help="SYSU gallery cameras: all = 1,2,4,5; indoor = 1,2.")
@click.option("--shots", type=click.Choice(["1", "10"]), default="1", show_default=True,
              help="SYSU gallery images per identity and camera: 1 single-shot, 10 multi-shot.")
@click.option("--trials", type=int, default=10, show_default=True, help="SYSU gallery samplings to average.")
@click.option("--sampling", type=click.Choice(["official", "seed"]), default="official", show_default=True,
              help="SYSU gallery sampling: official rand_perm_cam.mat (comparable with the paper) or seed "
                   "(AGW's random.seed(trial), single-shot only).")
@click.option("--rand-perm", default=None,
              help="SYSU rand_perm_cam.mat [default: DATA_ROOT/exp/rand_perm_cam.mat].")
@click.option("--regdb-mode", type=click.Choice(["i2v", "v2i"]), default="i2v", show_default=True,
              help="RegDB direction: i2v = thermal query, visible gallery; v2i = the reverse.")
@click.option("--trial", default="1", show_default=True,
              help="RegDB trial: 1..10, a list such as 1,2,3, or 'all' (one model per trial via {trial} in --model).")
@click.option("--normalize/--no-normalize", default=None,
              help="RegDB: L2-normalise the features before the distance [default: off, as the authors; "
                   "SYSU always normalises].")
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
    from mpanet_tf.eval.evaluate import EvalOptions, parse_trials, run_evaluation
    from mpanet_tf.eval.report import format_table
    from mpanet_tf.run_folder import atomic_write_json

    options = EvalOptions(
        dataset=params["dataset"], data_root=params["data_root"], mode=params["mode"], shots=int(params["shots"]),
        trials=params["trials"], sampling=params["sampling"], regdb_mode=params["regdb_mode"],
        regdb_trials=parse_trials(params["trial"]),
        normalize=params["normalize"], rerank=params["rerank"], all_settings=params["all_settings"],
        batch_size=params["batch_size"], skip_bad_images=params["skip_bad_images"], rand_perm=params["rand_perm"],
        progress=not params["quiet"],
    )
    from mpanet_tf.run_folder import check_output_file

    for option in ("output", "save_features"):
        if params[option]:   # checked before any feature is extracted: nothing is lost at the end
            template = params[option].replace("{trial}", "1").replace("{seed}", "1")
            check_output_file(template, "--" + option.replace("_", "-"))
    log = (lambda message: None) if params["quiet"] else (lambda message: click.echo(message, err=True))
    results = run_evaluation(options, model=params["model"], features=params["features_path"],
                             save_features=params["save_features"], log=log)
    click.echo(format_table(results))
    if params["output"]:
        payload = results if len(results) > 1 or params["all_settings"] else results[0]
        atomic_write_json(params["output"], payload)
        log(f"results written to {params['output']}")
    sys.stdout.flush()


def register(group) -> None:
    group.add_command(eval_command)
