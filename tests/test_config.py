"""MPANetConfig: the authors' defaults, presets, ablations, JSON round trip, validation."""

import json
import re

import pytest

from mpanet_tf.config import ABLATIONS, MPANetConfig, parse_image_size
from mpanet_tf.errors import ConfigError


def test_defaults_are_the_authors():
    c = MPANetConfig()
    assert (c.model.num_parts, c.model.reduction, c.model.last_stride, c.model.modality_attention) == (6, 16, 1, 2)
    assert (c.loss.weight_sep, c.loss.margin, c.loss.weight_sid, c.loss.weight_kl, c.loss.update_rate) == (0.5, 0.7, 0.5, 2.5, 0.2)
    assert c.loss.double_modality_ce and c.loss.kl_grad_side == "specific" and not c.loss.normalize_sep
    assert (c.train.lr, c.train.weight_decay, c.train.epochs, tuple(c.train.milestones)) == (3.5e-4, 5e-4, 140, (80, 120))
    assert c.model.feature_dim == 14336


def test_presets():
    sysu, regdb = MPANetConfig.preset("sysu"), MPANetConfig.preset("regdb")
    assert (sysu.model.image_height, sysu.model.image_width, sysu.data.batch_size) == (384, 128, 128)
    assert (regdb.model.image_height, regdb.model.image_width, regdb.data.batch_size) == (256, 128, 120)
    assert tuple(regdb.train.milestones) == (110,)
    with pytest.raises(ConfigError, match="unknown preset"):
        MPANetConfig.preset("market")


def test_json_round_trip():
    c = MPANetConfig.preset("regdb").with_ablation("+cc")
    again = MPANetConfig.from_dict(json.loads(c.to_json()))
    assert again == c


def test_ablations_switch_modules():
    base = MPANetConfig().with_ablation("baseline")
    assert base.model.modality_attention == 0 and not base.model.use_pam
    assert not base.loss.use_cc and not base.loss.use_ml and base.model.feature_dim == 2048
    assert MPANetConfig().with_ablation("mam-as-in").model.mam_variant == "in"
    assert set(ABLATIONS) >= {"baseline", "+cc", "+ml", "+pam", "+mam"}


@pytest.mark.parametrize("section,field,value", [
    ("data", "trial", 11), ("data", "images_per_id", 3), ("model", "last_stride", 3),
    ("train", "strategy", "tpu"), ("loss", "kl_grad_side", "both"),
])
def test_validation_names_the_value(section, field, value):
    data = MPANetConfig().to_dict()
    data[section][field] = value
    with pytest.raises(ConfigError, match=str(value)):
        MPANetConfig.from_dict(data)


def test_unknown_fields_rejected():
    with pytest.raises(ConfigError, match="bogus"):
        MPANetConfig.from_dict({"model": {"bogus": 1}})


@pytest.mark.parametrize("text,expected", [("384x128", (384, 128)), ("256X128", (256, 128))])
def test_parse_image_size(text, expected):
    assert parse_image_size(text) == expected


@pytest.mark.parametrize("text", ["384", "axb", "384x128x3", "16x16"])
def test_parse_image_size_rejects(text):
    with pytest.raises(ConfigError):
        parse_image_size(text)


def test_set_parses_values_with_the_field_type():
    from mpanet_tf.config import apply_assignments, parse_assignment

    assert parse_assignment("train.lr=0.001") == ("train", "lr", 0.001)
    assert parse_assignment("data.trial = 3") == ("data", "trial", 3)
    assert parse_assignment("loss.normalize_sep=TRUE") == ("loss", "normalize_sep", True)
    assert parse_assignment("train.jit=off") == ("train", "jit", False)
    assert parse_assignment("train.milestones=40,60") == ("train", "milestones", (40, 60))
    assert parse_assignment("data.cache=") == ("data", "cache", "")
    config = apply_assignments(MPANetConfig.preset("regdb"), ["train.epochs=3", "loss.margin=0.3", "train.epochs=5"])
    assert (config.train.epochs, config.loss.margin, config.data.batch_ids) == (5, 0.3, 12)  # later ones win
    assert MPANetConfig.preset("regdb").train.epochs == 140


@pytest.mark.parametrize("text,named", [
    ("train.lr=fast", "fast"), ("data.trial=1.5", "1.5"), ("loss.use_cc=maybe", "maybe"),
    ("train.bogus=1", "bogus"), ("optim.lr=1", "optim"), ("lr=1", "lr=1"), ("train.lr", "train.lr"),
    ("train.milestones=a,b", "a,b"), ("train.strategy=tpu", "tpu"), ("data.trial=11", "11"),
])
def test_set_refuses_unknown_fields_and_bad_values(text, named):
    from mpanet_tf.config import apply_assignments

    with pytest.raises(ConfigError, match=named):
        apply_assignments(MPANetConfig(), [text])


def test_every_choice_field_is_validated_from_its_declaration():
    from mpanet_tf.config import config_fields

    choice_fields = [(section, item) for section, item in config_fields() if "choices" in item.metadata]
    assert {f"{section}.{item.name}" for section, item in choice_fields} >= {
        "model.mam_variant", "loss.kl_grad_side", "data.pad_fill", "data.erase_aspect", "train.strategy",
        "train.mixed_precision"}
    for section, item in choice_fields:
        assert getattr(getattr(MPANetConfig(), section), item.name) in item.metadata["choices"]
        data = MPANetConfig().to_dict()
        data[section][item.name] = "no-such-choice"
        with pytest.raises(ConfigError, match=f"{section}.{item.name} must be one of .*no-such-choice"):
            MPANetConfig.from_dict(data)


def test_cli_defaults_are_stated_from_the_dataclasses_and_presets():
    from mpanet_tf.config import cli_fields, default_help, show_value

    helps = {f"{section}.{item.name}": default_help(section, item) for section, item in cli_fields()}
    assert helps["train.lr"] == "3.5e-4" and helps["train.weight_decay"] == "5e-4"
    assert helps["data.batch_ids"] == "the preset's: 16 sysu, 12 regdb, 16 llcm, 16 manifest"
    assert helps["train.epochs"] == "140"  # the same in both presets
    assert show_value((80, 120)) == "80,120" and show_value(0.1) == "0.1"


def test_every_number_declares_its_range_once_and_it_is_enforced():
    """Ranges live in the field metadata only: every int/float field has one, and the bounds hold
    (one line naming the option that sets the field)."""
    from mpanet_tf.config import config_fields, option_name

    numbers = [(s, f) for s, f in config_fields() if type(f.default) in (int, float)]
    assert {f"{s}.{f.name}" for s, f in numbers if "range" not in f.metadata} == set()
    declared = {f"{s}.{f.name}": f.metadata["range"] for s, f in numbers}
    # A few bounds stated independently of the declarations.
    assert declared["model.last_stride"] == (1, 2, False) and declared["loss.update_rate"] == (0.0, 1.0, False)
    assert declared["train.lr"] == (0.0, 1e3, True) and declared["data.trial"] == (1, None, False)
    for section, item in numbers:
        low, high, above = item.metadata["range"]
        option = option_name(section, item)
        below = [] if low is None else [low] if above else [low - 1]
        for bad in below + ([high + 1] if high is not None else []):
            data = MPANetConfig().to_dict()
            data[section][item.name] = type(item.default)(bad)
            with pytest.raises(ConfigError, match=f"^{option} \\({section}.{item.name}\\) must be"):
                MPANetConfig.from_dict(data)
    assert option_name("model", dict((f.name, f) for s, f in numbers)["image_width"]) == "--image-size"


def _train_config(*args):
    from mpanet_tf.cli.main import cli
    from mpanet_tf.cli.train_command import resolve_config

    ctx = cli.commands["train"].make_context("train", ["--dataset", "regdb", "--output", "unused", *args])
    return resolve_config(ctx, ctx.params)


def test_the_options_that_were_written_by_hand_are_generated_from_the_fields():
    from mpanet_tf.cli.train_command import FIELD_OPTIONS

    assert {"image_size", "milestones", "mixed_precision", "single_modality_ce"} <= set(FIELD_OPTIONS)
    preset = _train_config()
    assert (preset.model.image_height, preset.model.image_width, preset.train.milestones) == (256, 128, (110,))
    assert (preset.train.mixed_precision, preset.loss.double_modality_ce) == ("", True)
    config = _train_config("--image-size", "288x144", "--milestones", "40, 60", "--mixed-precision", "bf16",
                           "--single-modality-ce")
    assert (config.model.image_height, config.model.image_width, config.train.milestones) == (288, 144, (40, 60))
    assert (config.train.mixed_precision, config.loss.double_modality_ce) == ("bf16", False)
    assert _train_config("--mixed-precision", "none").train.mixed_precision == ""
    for args, message in ((["--milestones", "a,b"], "--milestones must be comma-separated epochs such as 80,120, "
                                                    "got 'a,b'"),
                          (["--milestones", "0,5"], "--milestones must be positive epochs, got '0,5'"),
                          (["--image-size", "384"], "image size must be HxW such as 384x128, got '384'")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            _train_config(*args)


def test_trial_range_is_the_datasets():
    assert MPANetConfig.from_dict({"data": {"dataset": "regdb", "trial": 10}}).data.trial == 10
    with pytest.raises(ConfigError, match=r"--trial \(data.trial\) must be one of RegDB's splits 1\.\.10, got 11"):
        MPANetConfig.from_dict({"data": {"dataset": "regdb", "trial": 11}})
    with pytest.raises(ConfigError, match="SYSU-MM01 has one train/test split"):
        MPANetConfig.from_dict({"data": {"dataset": "sysu", "trial": 2}})
