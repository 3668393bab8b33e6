"""Ctrl-C, SIGKILL (even in the middle of a checkpoint write) and --resume; --repeat; the history.

One chain on one run folder, 2 epochs x 3 steps, checkpoints every 2 steps and at epoch ends:

1. Ctrl-C after step 1 -> checkpoint of step 1, one line saying how to resume, exit code 130;
2. --resume (continues mid-epoch 1), SIGKILL while the weights of step 4 are being written ->
   only complete checkpoints are visible (step 3 is the newest), ``load_model`` reads the folder;
3. --resume (continues at epoch 2, step 0) to the end.

Meanwhile ``--repeat 2`` trains the same configuration uninterrupted into seed-1/ and seed-2/;
seed-1 is the reference the resumed run must match: same total step count, same history.
"""

from __future__ import annotations

import json
import signal

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf import run_folder
from mpanet_tf.cli.main import cli
from tests.training.support import start_worker, tail, train_args

RUN_ARGS = ("--epochs", "2", "--steps-per-epoch", "3", "--milestones", "1", "--save-every-steps", "2")
TIMEOUT_S = 420


def history(run_dir):
    return json.loads((run_dir / "history.json").read_text())["epochs"]


def checkpoint_names(run_dir):
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_interrupt_kill_resume_and_repeat(sysu_root, tmp_path):
    repeat_dir, run_dir = tmp_path / "repeat", tmp_path / "run"
    repeat = start_worker("cli", "{}", *train_args(sysu_root, repeat_dir, *RUN_ARGS, "--repeat", "2"),
                          log=tmp_path / "repeat.log")
    try:
        # 1. Ctrl-C after the first step.
        log1 = tmp_path / "sigint.log"
        first = start_worker("cli", json.dumps({"signal": "SIGINT", "at_step": 1}),
                             *train_args(sysu_root, run_dir, *RUN_ARGS), log=log1)
        assert first.wait(timeout=TIMEOUT_S) == 130, tail(log1)
        message = [line for line in log1.read_text().splitlines() if "resume with" in line]
        assert len(message) == 1, tail(log1)
        assert message[0].endswith(f"resume with: mpanet-tf train --output {run_dir} --resume")
        assert "epoch 1, step 1 (global step 1)" in message[0]
        assert checkpoint_names(run_dir) == ["ckpt-000000001.state.json", "ckpt-000000001.weights.h5"]
        assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"

        # 2. Resume; SIGKILL half-way through writing step 4's weights.
        log2 = tmp_path / "kill.log"
        second = start_worker("cli", json.dumps({"kill_during_save": 4}), "train", "--output", run_dir,
                              "--resume", "--quiet", log=log2)
        assert second.wait(timeout=TIMEOUT_S) == -signal.SIGKILL, tail(log2)
        names = checkpoint_names(run_dir)
        assert not [n for n in names if n.startswith("ckpt-000000004")], names
        partial = [n for n in names if n.startswith(".tmp-") and "ckpt-000000004" in n]
        assert len(partial) == 1, names          # the half-written file exists, under a temporary name
        complete = run_folder.latest_checkpoint(run_dir)
        assert complete[0].name == "ckpt-000000003.weights.h5"
        state = json.loads(complete[1].read_text())
        assert (state["epoch"], state["step_in_epoch"], state["epoch_complete"]) == (1, 3, True)
        assert [e["epoch"] for e in history(run_dir)] == [1]
        # A run folder with checkpoints but no model.keras loads from the newest complete checkpoint.
        from mpanet_tf.model import load_model

        model = load_model(run_dir)
        with h5py.File(complete[0], "r") as weights:
            np.testing.assert_array_equal(model.classifier.kernel.numpy(), weights["classifier/vars/0"][()])
        assert not (run_dir / "model.keras").exists()

        # 3. Resume to the end (in this process), asking for the final evaluation (the run was
        #    started with --no-final-eval, which a resumed run otherwise keeps).
        result = CliRunner().invoke(cli, ["train", "--output", str(run_dir), "--resume", "--final-eval", "--quiet"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert not [n for n in checkpoint_names(run_dir) if n.startswith(".tmp-")]
        assert repeat.wait(timeout=TIMEOUT_S) == 0, tail(tmp_path / "repeat.log")
    finally:
        if repeat.poll() is None:
            repeat.kill()

    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "finished" and meta["global_step"] == 6
    assert (run_dir / "model.keras").is_file()
    resumed, reference = history(run_dir), history(repeat_dir / "seed-1")
    assert [e["epoch"] for e in resumed] == [1, 2]
    for got, want in zip(resumed, reference):
        for key in ("epoch", "global_step", "iterations", "lr", "ema_rate"):
            assert got[key] == want[key], key
        for key in ("loss", "id", "cc", "sep", "sid", "kl"):   # CPU runs repeat exactly
            assert got[key] == pytest.approx(want[key], rel=1e-5), (got["epoch"], key)
    # The schedules as history records them: LR x0.1 after milestone 1, EMA rate 0.2 before epoch 100.
    assert [e["lr"] for e in resumed] == pytest.approx([3.5e-4, 3.5e-5])
    assert [e["ema_rate"] for e in resumed] == [0.2, 0.2]
    keys = {"epoch", "global_step", "iterations", "lr", "ema_rate", "loss", "id", "cc", "sep", "sid", "kl", "seconds"}
    assert set(resumed[0]) == keys and set(resumed[1]) == keys | {"eval"}
    # The last run evaluated the last epoch's model (no --no-final-eval): SYSU all-search single-shot.
    evaluation = resumed[1]["eval"]
    assert evaluation["settings"][0] == "SYSU all-search single-shot"
    assert all(0.0 <= evaluation[k] <= 100.0 for k in ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP"))
    assert [r["mode"] for r in meta["evaluation"]] == ["all", "all", "indoor", "indoor"]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    # --repeat 2: two complete runs whose configs differ in the seed only.
    configs = [json.loads((repeat_dir / f"seed-{s}" / "config.json").read_text()) for s in (1, 2)]
    assert [c["train"]["seed"] for c in configs] == [1, 2]
    configs[1]["train"]["seed"] = 1
    assert configs[0] == configs[1]
    for seed in (1, 2):
        assert json.loads((repeat_dir / f"seed-{seed}" / "run.json").read_text())["global_step"] == 6
    assert sorted(p.name for p in repeat_dir.iterdir()) == ["seed-1", "seed-2"]
