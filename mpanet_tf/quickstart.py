"""The quickstart: the whole product, end to end, on a 2-core CPU in a few minutes.

1. ``synth``: a small synthetic SYSU-MM01-layout tree (JPEGs, split files, an official-structure
   ``rand_perm_cam.mat``) under ``datasets/quickstart-sysu``;
2. ``train``: a short CPU run from random initialisation (ImageNet weights are not reachable on an
   offline machine) at a small image size, the authors' losses and sampler otherwise;
3. ``eval``: the official SYSU all-search single-shot protocol, 10 trials, with the untrained
   model's numbers beside it, so the table shows what training bought;
4. ``export``: a TF Serving SavedModel under ``saved_models/quickstart/1``.

Every step is a library call shared with the CLI commands, so the quickstart exercises exactly
what a user runs on the real data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mpanet_tf import build_model, load_model
from mpanet_tf.config import MPANetConfig
from mpanet_tf.data.synthetic import generate_sysu
from mpanet_tf.data.sysu import SYSUDataset
from mpanet_tf.eval.report import format_table
from mpanet_tf.training.live_eval import evaluate_live_model


@dataclass
class QuickstartOptions:
    """Sizes of the quickstart; the defaults finish in a few minutes on 2 CPU cores."""

    data_root: str = "datasets/quickstart-sysu"
    output: str = "runs/quickstart"
    export_dir: str = "saved_models/quickstart"
    ids: int = 40
    images_per_camera: int = 4
    image_height: int = 96
    image_width: int = 48
    epochs: int = 12
    steps_per_epoch: int = 0
    batch_ids: int = 4
    images_per_id: int = 4
    lr: float = 1e-3
    seed: int = 1


def quickstart_config(options: QuickstartOptions) -> MPANetConfig:
    """The SYSU preset shrunk to the quickstart's sizes.

    From random initialisation and with a few hundred steps, a constant learning rate of 1e-3
    (no milestones) learns faster than the authors' 3.5e-4 schedule, which assumes ImageNet
    weights and 140 epochs.
    """
    config = MPANetConfig.preset("sysu")
    config.model.image_height, config.model.image_width = options.image_height, options.image_width
    config.model.backbone_weights = "none"
    config.data.data_root = options.data_root
    config.data.batch_ids, config.data.images_per_id = options.batch_ids, options.images_per_id
    config.train.epochs = options.epochs
    config.train.steps_per_epoch = options.steps_per_epoch
    config.train.lr = options.lr
    config.train.milestones = ()
    config.train.seed = options.seed
    config.validate()
    return config


def run_quickstart(options: QuickstartOptions | None = None, log=print) -> dict:
    """Run the four steps; returns {"untrained": result, "trained": result, "export": path}."""
    import keras

    from mpanet_tf.export import export_model  # deferred: TensorFlow; the CLI reads QuickstartOptions without it
    from mpanet_tf.training.trainer import train  # deferred: TensorFlow, as above

    options = options or QuickstartOptions()
    started = time.time()
    config = quickstart_config(options)

    log(f"[1/4] synthetic SYSU-MM01-layout data ({options.ids} identities) -> {options.data_root}")
    generate_sysu(options.data_root, ids=options.ids, images_per_camera=options.images_per_camera,
                  seed=0, size=(options.image_height * 2, options.image_width * 2), overwrite=True)

    dataset = SYSUDataset(options.data_root)
    log("[2/4] training from random initialisation on the CPU "
        f"({options.epochs} epochs, batch "
        f"{options.batch_ids}x{options.images_per_id}, {options.image_height}x{options.image_width})")
    # The trainer seeds its initialisation the same way: the untrained model is the run's start.
    keras.utils.set_random_seed(options.seed)
    untrained = build_model(config, num_classes=len(dataset.train_ids))
    before = evaluate_live_model(untrained, dataset, config, log=log)["results"][0]
    train(config, options.output, force=True, verbose=1, final_eval=False)

    log(f"[3/4] SYSU-MM01 official protocol, all-search single-shot, 10 trials: {options.output}")
    after = evaluate_live_model(load_model(options.output), dataset, config, log=log)["results"][0]

    log(f"[4/4] SavedModel for TF Serving -> {options.export_dir}/1")
    written = export_model(options.output, options.export_dir, formats=("savedmodel",), version=1, force=True)

    log("")
    log("untrained model (the run's initial weights):")
    log(format_table(before))
    log(f"after {options.epochs} epochs of training:")
    log(format_table(after))
    log(f"done in {time.time() - started:.0f} s. Next: `mpanet-tf eval --dataset sysu --data-root "
        f"{options.data_root} --model {options.output} --all-settings`, `mpanet-tf visualize curves "
        f"--model {options.output} --output curves.png`, and the README for the real datasets.")
    return {"untrained": before, "trained": after, "export": written["savedmodel"]}

