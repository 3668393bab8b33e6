"""`mpanet-tf train` start-up: options, refusals and errors that leave the run folder untouched."""

from __future__ import annotations

import json
import urllib.error

import click
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import MPANetConfig
from mpanet_tf.errors import ConfigError
from mpanet_tf.training.setup import merge_resume_config
from mpanet_tf.training.strategy import check_replica_layout, is_chief, make_strategy
from tests.training.support import train_args


def run(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_every_option_has_help():
    command = cli.commands["train"]
    options = [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]
    missing = [p.name for p in options if not (p.help or "").strip()]
    assert not missing
    names = {p.name for p in options}
    for wanted in ("dataset", "data_root", "trial", "output", "epochs", "image_size", "batch_ids", "images_per_id",
                   "lr", "weight_decay", "milestones", "seed", "steps_per_epoch", "backbone_weights", "strategy",
                   "mixed_precision", "jit", "save_every_steps", "eval_every", "resume", "force", "repeat",
                   "skip_bad_images", "cache", "ablation", "pad_fill", "weight_sep", "weight_sid", "weight_kl",
                   "margin", "update_rate", "single_modality_ce", "verbose", "quiet"):
        assert wanted in names, wanted
    assert "--resume" in run(["train", "--help"]).output


def test_refuses_a_non_empty_output(sysu_root, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    result = run(train_args(sysu_root, output))
    assert result.exit_code == 2
    assert "--resume" in one_error_line(result) and "--force" in result.output
    assert sorted(p.name for p in output.iterdir()) == ["notes.txt"]
    # --force clears only what a run writes; a foreign file makes it refuse too.
    result = run(train_args(sysu_root, output, "--force"))
    assert result.exit_code == 2 and "notes.txt" in one_error_line(result)


def test_offline_imagenet_weights_fail_before_anything_is_written(sysu_root, tmp_path, monkeypatch):
    from mpanet_tf.interop import imagenet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MPANET_TF_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(imagenet, "_download", offline)
    output = tmp_path / "run"
    args = train_args(sysu_root, output)
    args[args.index("--backbone-weights") + 1] = "imagenet"
    result = run(args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "resnet50-19c8e357.pth" in line and "name resolution" in line
    assert not output.exists()


def test_resume_refuses_a_changed_hyperparameter(sysu_root, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    config = MPANetConfig.preset("sysu")
    config.data.data_root = str(sysu_root)
    (output / "config.json").write_text(config.to_json())
    before = sorted(p.name for p in output.iterdir())
    result = run(["train", "--output", str(output), "--resume", "--lr", "0.001"])
    assert result.exit_code == 2
    assert "train.lr" in one_error_line(result)
    assert sorted(p.name for p in output.iterdir()) == before
    result = run(["train", "--output", str(output), "--resume", "--force"])
    assert result.exit_code == 2 and "exclude" in one_error_line(result)


def test_merge_resume_config_takes_run_control_fields_only():
    saved = MPANetConfig.preset("sysu")
    wanted = MPANetConfig.from_dict(saved.to_dict())
    wanted.train.epochs, wanted.train.eval_every, wanted.data.data_root = 150, 5, "/elsewhere"
    merged = merge_resume_config(saved, wanted)
    assert (merged.train.epochs, merged.train.eval_every, merged.data.data_root) == (150, 5, "/elsewhere")
    wanted.loss.margin = 0.3
    with pytest.raises(ConfigError, match="loss.margin"):
        merge_resume_config(saved, wanted)


def test_new_run_needs_a_dataset(tmp_path):
    result = run(["train", "--output", str(tmp_path / "run")])
    assert result.exit_code == 2 and "--dataset" in one_error_line(result)


def test_batch_must_split_into_whole_identity_blocks_per_replica():
    check_replica_layout(16, 8, 2)
    with pytest.raises(ConfigError, match="--batch-ids 3 is not a multiple of the 2 replicas"):
        check_replica_layout(3, 4, 2)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multi-worker")


@pytest.mark.parametrize("cluster, task, chief", [
    ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 0}, True),
    ({"worker": ["a:1", "b:2"]}, {"type": "worker", "index": 1}, False),
    ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "worker", "index": 0}, False),
    ({"chief": ["c:0"], "worker": ["a:1"]}, {"type": "chief", "index": 0}, True),
])
def test_only_the_chief_writes(monkeypatch, cluster, task, chief):
    class Extended:
        @staticmethod
        def _in_multi_worker_mode():
            return True

    class FakeMultiWorker:
        extended = Extended()

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    assert is_chief(FakeMultiWorker()) is chief
    assert is_chief(None) is True  # not multi-worker: the only process writes


def test_set_reaches_the_config_and_bad_fields_are_one_line(sysu_root, tmp_path):
    output = tmp_path / "run"
    # data.data_root from --set is the folder the run reads (the preset's would be datasets/SYSU-MM01).
    result = run(["train", "--dataset", "sysu", "--output", str(output), "--backbone-weights", "none",
                  "--set", f"data.data_root={tmp_path / 'nowhere'}", "--set", "loss.normalize_sep=true"])
    assert result.exit_code == 2 and str(tmp_path / "nowhere") in one_error_line(result)
    for bad, named in (("train.bogus=1", "train.bogus"), ("train.lr=fast", "fast"), ("lr=0.1", "lr=0.1"),
                       ("model.last_stride=3", "3")):
        result = run(["train", "--dataset", "sysu", "--output", str(output), "--set", bad])
        assert result.exit_code == 2 and named in one_error_line(result), bad
    assert not output.exists()


def test_derived_options_carry_the_fields_choices_and_defaults():
    from mpanet_tf.config import ABLATIONS, PAD_FILLS, STRATEGIES, cli_fields

    params = {p.name: p for p in cli.commands["train"].params}
    assert list(params["strategy"].type.choices) == list(STRATEGIES)
    assert list(params["pad_fill"].type.choices) == list(PAD_FILLS)
    assert list(params["ablation"].type.choices) == list(ABLATIONS)
    for section, item in cli_fields():
        option = params[item.metadata["cli"].split("/")[0].lstrip("-").replace("-", "_")]
        assert item.metadata["help"] in option.help
        if not isinstance(item.default, bool):
            assert option.default is None, option.name  # None = the preset's value
    assert "[default: 3.5e-4]" in params["lr"].help and "16 sysu, 12 regdb" in params["batch_ids"].help


def test_seed_folders_are_found_in_one_place(tmp_path):
    from mpanet_tf import run_folder

    for name in ("seed-10", "seed-2", "seed-x", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "seed-3").write_text("a file")
    assert [p.name for p in run_folder.seed_folders(tmp_path)] == ["seed-2", "seed-10"]
    assert run_folder.seed_folder(tmp_path, 7) == tmp_path / "seed-7"
    assert run_folder.seed_of(tmp_path / "seed-7") == 7 and run_folder.seed_of(tmp_path / "seed-x") is None
    assert run_folder.seed_folders(tmp_path / "absent") == []


def test_workarounds_vectorise_multi_worker_logs_only():
    import numpy as np

    from mpanet_tf.training import keras_workarounds

    class Extended:
        def __init__(self, multi):
            self._in_multi_worker_mode = lambda: multi

    class Strategy:
        def __init__(self, multi):
            self.extended = Extended(multi)

    class Model:
        def train_step(self, data):
            return {"loss": np.float32(data), "id": np.float32(2 * data)}

    assert not keras_workarounds.in_multi_worker_mode(None)
    single, multi = Model(), Model()
    keras_workarounds.prepare_for_fit(single, Strategy(False))
    keras_workarounds.prepare_for_fit(multi, Strategy(True))
    assert np.shape(single.train_step(1.5)["loss"]) == ()
    logs = multi.train_step(1.5)
    assert {k: np.asarray(v).tolist() for k, v in logs.items()} == {"loss": [1.5], "id": [3.0]}
    assert single._maybe_symbolic_build(iterator=object()) is None


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_resume_keeps_no_final_eval(sysu_root, tmp_path):
    """Issue 14 class 7: --resume of a run started with --no-final-eval does not evaluate at the end."""
    import json

    from click.testing import CliRunner

    from mpanet_tf.cli.main import cli
    from tests.training.support import train_args

    output = tmp_path / "run"
    first = CliRunner().invoke(cli, train_args(sysu_root, output, "--epochs", "1", "--steps-per-epoch", "1",
                                               "--no-final-eval"))
    assert first.exit_code == 0, first.output
    assert json.loads((output / "run.json").read_text())["final_eval"] is False
    resumed = CliRunner().invoke(cli, ["train", "--output", str(output), "--resume", "--epochs", "2", "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    history = json.loads((output / "history.json").read_text())["epochs"]
    assert [entry["epoch"] for entry in history] == [1, 2]
    assert all("eval" not in entry for entry in history)
