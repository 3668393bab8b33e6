"""``mpanet-tf import-torch``: an authors' 334-key checkpoint becomes a working run folder.

Checkpoints are built here with random values in the authors' layout (design.md §10) and written by
our torch-free writer in the zip and the legacy format; expectations are the state dict's own
arrays in Keras layout (conv (O, I, kh, kw) -> (kh, kw, I, O), linear (out, in) -> (in, out)), the
file's SHA-256 computed with hashlib, and counts read off the synthetic SYSU tree on disk.
Bad checkpoints must fail with exit code 2, exactly one line on stderr, and leave no output.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import MPANetConfig
from mpanet_tf.errors import CheckpointError
from mpanet_tf.interop.import_mpanet import import_mpanet_checkpoint, read_authors_state
from mpanet_tf.model import load_model
from tests.interop.test_parity_numpy import authors_state_dict
from tests.interop.torch_writer import save_state_dict

NUM_CLASSES = 5
SIZE = "64x32"


def import_cli(*args):
    return CliRunner().invoke(cli, ["import-torch", *map(str, args)])


@pytest.fixture(scope="module")
def state():
    return authors_state_dict(num_classes=NUM_CLASSES, seed=3)


@pytest.fixture(scope="module")
def bare_file(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("ckpt") / "authors.pth"
    save_state_dict(path, state)
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, bare_file):
    out = tmp_path_factory.mktemp("runs") / "imported"
    result = import_cli(bare_file, "--output", out, "--image-size", SIZE)
    assert result.exit_code == 0, result.output
    assert f"279 tensors, {NUM_CLASSES} classes" in result.stdout and str(out) in result.stdout
    return out


@pytest.fixture(scope="module")
def model(run_dir):
    return load_model(run_dir)


# ------------------------------------------------------------------ good checkpoints
def test_run_folder_records_config_classes_and_source(run_dir, bare_file):
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.json", "model.keras", "run.json"]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["num_classes"] == NUM_CLASSES and meta["dataset"] == "sysu"
    digest = hashlib.sha256(bare_file.read_bytes()).hexdigest()
    assert meta["backbone_weights_sha256"] == digest and meta["backbone_init"]["sha256"] == digest
    assert meta["backbone_init"]["loaded"] == 279
    ignored = meta["backbone_init"]["ignored"]  # the 54 BN counters and the zero bn_neck.bias
    assert len(ignored) == 55 and "bn_neck.bias" in ignored
    assert all(k.endswith("num_batches_tracked") for k in ignored if k != "bn_neck.bias")
    config = MPANetConfig.from_json_file(run_dir / "config.json").to_dict()
    expected = MPANetConfig.preset("sysu").to_dict()
    expected["model"].update(image_height=64, image_width=32, backbone_weights=str(bare_file))
    assert config == expected
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left
    from mpanet_tf.training.checkpoints import CheckpointManager

    start = CheckpointManager(run_dir).latest()  # the trainer's reader finds the step-0 checkpoint
    assert (start["global_step"], start["epoch"], start["step_in_epoch"]) == (0, 1, 0)


def test_loaded_model_holds_every_tensor_in_keras_layout(model, state):
    assert model.num_classes == NUM_CLASSES and model.image_size == (64, 32)
    backbone = model.backbone
    for key, layer in (("conv1", "conv1"), ("layer3.0.conv2", "layer3_0_conv2"),
                       ("layer4.0.downsample.0", "layer4_0_downsample_0")):
        np.testing.assert_array_equal(backbone.get_layer(layer).kernel.numpy(),
                                      state[f"backbone.{key}.weight"].transpose(2, 3, 1, 0))
    bn = backbone.get_layer("layer2_1_bn3")
    for torch_name, keras_name in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                                   ("running_var", "moving_variance")):
        np.testing.assert_array_equal(getattr(bn, keras_name).numpy(), state[f"backbone.layer2.1.bn3.{torch_name}"])
    mam4 = backbone.get_layer("MAM4")
    np.testing.assert_array_equal(mam4.squeeze.kernel.numpy(),
                                  state["backbone.MAM4.channel_attention.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.pam.mask_conv.bias.numpy(), state["spatial_attention.bias"])
    np.testing.assert_array_equal(model.visible_classifier_mean.numpy(), state["visible_classifier_.weight"].T)
    np.testing.assert_array_equal(model.infrared_classifier.kernel.numpy(), state["infrared_classifier.weight"].T)
    embedding = model.embed(np.full((1, 64, 32, 3), 128.0, "float32"))
    assert embedding.shape == (1, 14336) and np.isfinite(embedding).all()


@pytest.mark.parametrize("variant", ["state_dict", "model", "module_prefix", "legacy"])
def test_wrapped_prefixed_and_legacy_files_read_the_same_tensors(tmp_path, state, variant):
    path = tmp_path / "wrapped.pth"
    tensors = {f"module.{k}": v for k, v in state.items()} if variant == "module_prefix" else state
    wrap = variant if variant in ("state_dict", "model") else None
    save_state_dict(path, tensors, legacy=variant == "legacy", wrap_key=wrap, extra={"epoch": 140})
    read, num_classes = read_authors_state(path)
    assert num_classes == NUM_CLASSES and list(read) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(read[key], value)


def test_legacy_wrapped_import_with_regdb_preset_replaces_a_folder_with_force(tmp_path, state, model):
    path = tmp_path / "legacy.pth"
    save_state_dict(path, {f"module.{k}": v for k, v in state.items()}, legacy=True, wrap_key="model",
                    extra={"epoch": 140})
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    refused = import_cli(path, "--output", out, "--dataset", "regdb")
    assert refused.exit_code == 2 and "--force" in refused.stderr
    assert (out / "old.txt").exists()
    run = import_mpanet_checkpoint(path, out, dataset="regdb", force=True)
    assert run == out and not (out / "old.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    config = MPANetConfig.from_json_file(out / "config.json")
    assert config.to_dict() == {**MPANetConfig.preset("regdb").to_dict(),
                                "model": {**MPANetConfig.preset("regdb").to_dict()["model"],
                                          "backbone_weights": str(path)}}
    reloaded = load_model(out)
    assert reloaded.image_size == (256, 128)  # the RegDB preset's; the weights are size-free
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 32, 3)).astype("float32")
    np.testing.assert_array_equal(reloaded.embed(images), model.embed(images))


def test_evaluating_the_imported_run_works_end_to_end(tmp_path, run_dir):
    from mpanet_tf.data.synthetic import generate_sysu

    root = generate_sysu(tmp_path / "SYSU-MM01", ids=6, images_per_camera=2, size=(64, 32))
    test_ids = [int(i) for i in (root / "exp" / "test_id.txt").read_text().strip().split(",")]
    queries = sum(len(list((root / f"cam{c}" / f"{pid:04d}").glob("*.jpg"))) for c in (3, 6) for pid in test_ids)
    output = tmp_path / "results.json"
    result = CliRunner().invoke(cli, ["eval", "--dataset", "sysu", "--data-root", str(root), "--model", str(run_dir),
                                      "--trials", "1", "--output", str(output), "-q"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(output.read_text())
    assert (outcome["mode"], outcome["shots"], outcome["trials"]) == ("all", 1, 1)
    assert outcome["per_trial"][0]["valid_queries"] == queries
    ranks = [outcome[k] for k in ("rank1", "rank5", "rank10", "rank20")]
    assert all(0.0 <= r <= 100.0 for r in ranks) and ranks == sorted(ranks)
    assert 0.0 < outcome["mAP"] <= 100.0


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_train_resume_fine_tunes_the_imported_weights(tmp_path, run_dir, state):
    """``train --resume`` on an imported run starts at epoch 1, step 0 from the imported weights.

    The copy's config.json is shrunk to one 8-image step (2 ids x 4 images) so the test is cheap;
    the weights and the step-0 checkpoint are the import's. After one Adam step (lr 3.5e-4) every
    weight is within about one learning rate of the imported value.
    """
    import shutil

    from mpanet_tf.data.synthetic import generate_sysu
    from mpanet_tf.training.checkpoints import CheckpointManager

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    config = json.loads((run / "config.json").read_text())
    config["data"].update(batch_ids=2, images_per_id=4)
    config["train"].update(epochs=1, steps_per_epoch=1)
    (run / "config.json").write_text(json.dumps(config))
    root = generate_sysu(tmp_path / "SYSU-MM01", ids=7, images_per_camera=2, size=(64, 32))
    train_ids = sum(len((root / "exp" / n).read_text().strip().split(",")) for n in ("train_id.txt", "val_id.txt"))
    assert train_ids == NUM_CLASSES

    result = CliRunner().invoke(cli, ["train", "--output", str(run), "--resume", "--data-root", str(root),
                                      "--no-final-eval"])
    assert result.exit_code == 0, result.output
    assert "from global step 0 (epoch 1, step 0)" in result.stdout
    latest = CheckpointManager(run).latest()
    assert latest["global_step"] == 1 and latest["epoch"] == 1
    trained = load_model(run)  # the finished run's model.keras
    kernel = trained.backbone.get_layer("layer3_0_conv2").kernel.numpy()
    imported = state["backbone.layer3.0.conv2.weight"].transpose(2, 3, 1, 0)
    change = np.abs(kernel - imported)
    assert 0 < change.max() <= 2 * 3.5e-4
    head = np.abs(trained.classifier.kernel.numpy() - state["classifier.weight"].T)
    assert 0 < head.max() <= 2 * 3.5e-4


# ------------------------------------------------------------------- bad checkpoints
def _zip(path, records):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in records.items():
            archive.writestr(name, data)


class _Shell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _bad_file(kind, folder, state):
    path = folder / f"{kind}.pth"
    tensors = dict(state)
    if kind == "missing_key":
        del tensors["backbone.layer2.1.bn2.running_var"]
    elif kind == "unexpected_key":
        tensors["backbone.layer5.0.conv1.weight"] = np.zeros((4, 4, 1, 1), "float32")
    elif kind == "wrong_shape":
        tensors["visible_classifier.weight"] = np.zeros((NUM_CLASSES, 2048), "float32")
    elif kind == "no_classifier":
        del tensors["classifier.weight"]
    elif kind == "nan_weight":
        tensors["backbone.layer1.0.conv1.weight"] = state["backbone.layer1.0.conv1.weight"].copy()
        tensors["backbone.layer1.0.conv1.weight"][0, 0, 0, 0] = np.nan
    elif kind == "nonzero_bn_neck_bias":
        tensors["bn_neck.bias"] = np.full(14336, 0.1, "float32")
    elif kind == "pickled_list":
        _zip(path, {"archive/data.pkl": pickle.dumps([1, 2, 3], protocol=2), "archive/version": b"3\n"})
        return path
    elif kind == "zip_without_data_pkl":
        _zip(path, {"archive/readme.txt": b"hello"})
        return path
    elif kind == "text_file":
        path.write_text("this is not a checkpoint\n")
        return path
    elif kind in ("os_system_pickle", "os_system_zip"):
        payload = pickle.dumps(_Shell(folder / f"{kind}.executed"), protocol=2)
        if kind == "os_system_pickle":
            path.write_bytes(payload)
        else:
            _zip(path, {"archive/data.pkl": payload, "archive/version": b"3\n"})
        return path
    save_state_dict(path, tensors)
    return path


BAD = {
    "missing_key": "backbone.layer2.1.bn2.running_var",
    "unexpected_key": "backbone.layer5.0.conv1.weight",
    "wrong_shape": "visible_classifier.weight",
    "no_classifier": "classifier.weight",
    "nonzero_bn_neck_bias": "bn_neck.bias",
    "nan_weight": "backbone.layer1.0.conv1.weight",
    "pickled_list": "not a state dict",
    "zip_without_data_pkl": "without data.pkl",
    "text_file": "not a PyTorch checkpoint",
    "os_system_pickle": "system",
    "os_system_zip": "system",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_checkpoint_fails_with_one_line_and_exit_2(tmp_path, state, kind):
    path = _bad_file(kind, tmp_path, state)
    out = tmp_path / "out" / "run"
    result = import_cli(path, "--output", out, "--image-size", SIZE)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0]
    assert BAD[kind] in lines[0]
    assert result.stdout == ""
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
    assert not (tmp_path / f"{kind}.executed").exists()


def test_missing_checkpoint_file_is_one_line(tmp_path):
    result = import_cli(tmp_path / "nope.pth", "--output", tmp_path / "run")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "nope.pth" in result.stderr and not (tmp_path / "run").exists()


def test_output_that_is_a_file_is_refused_even_with_force(tmp_path, bare_file):
    target = tmp_path / "run"
    target.write_text("not a folder")
    result = import_cli(bare_file, "--output", target, "--force")
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1 and str(target) in result.stderr
    assert target.read_text() == "not a folder"


def test_library_raises_checkpoint_error(tmp_path, state):
    path = _bad_file("nonzero_bn_neck_bias", tmp_path, state)
    with pytest.raises(CheckpointError, match="bn_neck.bias"):
        import_mpanet_checkpoint(path, tmp_path / "run")


def test_pickle_payload_really_runs_when_unpickled_unsafely(tmp_path, state):
    """The os.system payload above is live: plain pickle executes it (so the refusal is meaningful)."""
    path = _bad_file("os_system_pickle", tmp_path, state)
    pickle.load(io.BytesIO(path.read_bytes()))
    assert (tmp_path / "os_system_pickle.executed").exists()
