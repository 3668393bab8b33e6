"""One configuration tree with the paper's names and the authors' defaults.

The defaults reproduce the authors' released configuration (configs/SYSU.yml and configs/RegDB.yml
of DoubtedSteam/MPANet, see ``shared/docs/mpanet-facts.md``); presets ``"sysu"`` and ``"regdb"``
differ only where those two files differ (image size, batch layout, LR milestones); each dataset's
preset is declared with its reader (:mod:`mpanet_tf.data.registry`). Ablation
switches of the paper's Tables 3 and 4 live in :data:`ABLATIONS`.

The resolved config is written as JSON next to every checkpoint (:meth:`MPANetConfig.to_json`) and
read back by :meth:`MPANetConfig.from_dict`.

Every field is declared once, here: its default, its allowed values (``metadata["choices"]``,
checked by :meth:`MPANetConfig.validate`) and, for the fields ``mpanet-tf train`` has an option for,
the option's name and help (``metadata["cli"]``, ``metadata["help"]``); the CLI derives its options
from them (:func:`cli_fields`). Any field can also be set as ``--set section.field=value``
(:func:`parse_assignment`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

from mpanet_tf.data.registry import dataset_names, get_dataset
from mpanet_tf.errors import ConfigError

MAM_VARIANTS = ("mam", "in", "se")
KL_GRAD_SIDES = ("specific", "paper")
PAD_FILLS = ("grey", "red")
ERASE_ASPECTS = ("uniform", "log-uniform")
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
MIXED_PRECISIONS = ("", "bf16", "fp16")


def _field(default, help: str = "", *, cli: str | None = None, choices=None, default_help: str | None = None):
    """A config field with its description: ``help`` (the CLI option's help), ``cli`` (the option's
    declaration, e.g. ``"--lr"`` or ``"--jit/--no-jit"``; None = only ``--set``), ``choices`` (the
    allowed values) and ``default_help`` (how the help states the default, when not the value)."""
    metadata = {"help": help}
    if cli is not None:
        metadata["cli"] = cli
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if default_help is not None:
        metadata["default_help"] = default_help
    return field(default=default, metadata=metadata)

#: The loss terms of the train step in logging order, with their legend labels (facts §2). They
#: name the step's metrics, the progress bar, every ``history.json`` entry, TensorBoard and the
#: curves picture; ``sid`` is CE_vis + CE_ir unweighted.
LOSS_TERMS = {"id": "L_id (shared CE)", "cc": "L_cc (center cluster)", "sep": "L_sep (pattern separation)",
              "sid": "L_sid (CE_vis + CE_ir)", "kl": "L_KL (mutual mean)"}
#: The key of the weighted total (Eq. 14 with the code's weights) in logs and history entries.
TOTAL_LOSS = "loss"
#: Every loss key of a history entry: the total, then :data:`LOSS_TERMS`.
LOGGED_LOSSES = (TOTAL_LOSS, *LOSS_TERMS)


@dataclass
class ModelConfig:
    """Network shape (facts §1).

    Attributes:
        num_parts: PAM pattern maps p (6).
        reduction: MAM squeeze ratio r (16).
        last_stride: stride of layer4's first block (1 = "drop last stride", output stride 16).
        modality_attention: number of MAMs: 2 = after layer3 and layer4 (authors), 1 = layer4 only,
            0 = none.
        mam_variant: ``"mam"`` (SE gate mixing x and IN(x)), ``"in"`` (plain instance norm, Table 4)
            or ``"se"`` (plain SE gate m*x, Table 4).
        use_pam: PAM on (parts + global, 14336-d) or off (global only, 2048-d).
        image_height, image_width: the network input size, H x W.
        backbone_weights: ``"imagenet"`` (torchvision resnet50-19c8e357.pth), ``"none"`` or a path
            to a torchvision-layout state dict.
    """

    num_parts: int = 6
    reduction: int = 16
    last_stride: int = 1
    modality_attention: int = 2
    mam_variant: str = _field("mam", choices=MAM_VARIANTS)
    use_pam: bool = True
    image_height: int = 384
    image_width: int = 128
    backbone_weights: str = _field(
        "imagenet", "ResNet-50 init: imagenet (torchvision resnet50-19c8e357.pth, cached or downloaded), none "
        "(random) or the path of a torchvision-layout .pth", cli="--backbone-weights")

    @property
    def feature_dim(self) -> int:
        """Length of the embedding: 2048 * (num_parts + 1) with PAM, 2048 without."""
        return 2048 * (self.num_parts + 1) if self.use_pam else 2048


@dataclass
class LossConfig:
    """Loss weights and the authors' quirks (facts §2), each quirk a named switch.

    Attributes:
        weight_sep: weight of the separation loss L_sep (0.5).
        margin: centre-cluster push margin rho (0.7).
        weight_sid: weight of each modality-specific CE (0.5, counted twice by the code).
        weight_kl: weight of the mutual-mean KL (2.5).
        update_rate: EMA rate r of the mean classifiers (0.2).
        ema_decay_epoch: from this epoch on r = update_rate * min(1, ema_decay_epoch / (epoch + 1)).
        use_cc: centre-cluster loss on (Table 3 "+CC").
        use_ml: mutual mean learning on: modality CE, KL and EMA heads (Table 3 "+ML").
        double_modality_ce: the code adds CE_vis and CE_ir twice (GitHub issue #6), so their
            effective weight is 2 * weight_sid; False gives the paper's single weight.
        kl_grad_side: ``"specific"`` (code: gradients flow through the modality-specific softmax P,
            the mean-classifier side Q is detached) or ``"paper"`` (the usual distillation
            direction KL(Q_mean || P_specific) with Q detached as target).
        normalize_sep: False (code: raw dot products of the sigmoid maps); True L2-normalizes
            every map first (cosine similarity, the paper's form).
        ema_before_step: True (code: EMA from the pre-step weights, before the optimizer step);
            False updates after the step.
    """

    weight_sep: float = _field(0.5, "Weight of the separation loss", cli="--weight-sep")
    margin: float = _field(0.7, "Centre-cluster push margin rho", cli="--margin")
    weight_sid: float = _field(0.5, "Weight of each modality-specific CE, counted twice as in the authors' code",
                               cli="--weight-sid")
    weight_kl: float = _field(2.5, "Weight of the mutual-mean KL loss", cli="--weight-kl")
    update_rate: float = _field(0.2, "EMA rate of the mean classifiers", cli="--update-rate")
    ema_decay_epoch: int = 100
    use_cc: bool = True
    use_ml: bool = True
    double_modality_ce: bool = True
    kl_grad_side: str = _field("specific", choices=KL_GRAD_SIDES)
    normalize_sep: bool = False
    ema_before_step: bool = True


@dataclass
class DataConfig:
    """Data and augmentation (facts §3.2-3.3).

    Attributes:
        dataset: a registered dataset (``"sysu"``, ``"regdb"``; :mod:`mpanet_tf.data.registry`).
        data_root: dataset folder (``datasets/SYSU-MM01`` or ``datasets/RegDB`` by default).
        trial: RegDB trial 1..10.
        batch_ids: P identities per batch.
        images_per_id: K images per identity (K/2 infrared + K/2 visible).
        flip_prob: horizontal flip probability.
        pad: padding before the random crop, pixels on every side.
        pad_fill: ``"grey"`` (127,127,127) or ``"red"`` (127,0,0) as the torchvision-0.4 run saw.
        erase_prob: random-erasing probability (torchvision defaults otherwise).
        erase_aspect: ``"uniform"`` (torchvision 0.4) or ``"log-uniform"`` (newer torchvision).
        cache: folder of decoded, resized images, or empty for none.
        skip_bad_images: skip undecodable images instead of stopping.
    """

    dataset: str = "sysu"
    data_root: str = _field("", "Dataset folder", cli="--data-root")
    trial: int = _field(1, "RegDB trial 1..10 (train and test split)", cli="--trial")
    batch_ids: int = _field(16, "P identities per batch", cli="--batch-ids")
    images_per_id: int = _field(8, "K images per identity, half infrared", cli="--images-per-id")
    flip_prob: float = 0.5
    pad: int = 10
    pad_fill: str = _field("grey", "Pad colour before the random crop: grey (127,127,127) or red (127,0,0), what "
                           "the authors' torchvision 0.4 produced", cli="--pad-fill", choices=PAD_FILLS)
    erase_prob: float = 0.5
    erase_aspect: str = _field("uniform", choices=ERASE_ASPECTS)
    cache: str = _field("", "Image cache folder written by `mpanet-tf prepare`", cli="--cache",
                        default_help="none")
    skip_bad_images: bool = _field(False, "Leave undecodable training images out instead of stopping",
                                   cli="--skip-bad-images")

    @property
    def batch_size(self) -> int:
        return self.batch_ids * self.images_per_id


@dataclass
class TrainConfig:
    """Optimisation and run control (facts §3.1, §3.4).

    Attributes:
        epochs: 140.
        lr: Adam learning rate 3.5e-4 (betas 0.9/0.999, eps 1e-8).
        weight_decay: coupled L2 5e-4 added to the gradients of trainable weights.
        milestones: epochs after which the LR is multiplied by ``gamma``.
        gamma: 0.1.
        seed: 1, as the authors.
        steps_per_epoch: cap on iterations per epoch (0 = a full sampler pass, the authors' epoch).
        eval_every: evaluate on the test split every N epochs (0 = only at the end).
        save_every_steps: also checkpoint every N steps (0 = only at epoch ends).
        strategy: ``"auto"``, ``"one-device"``, ``"mirrored"`` or ``"multi-worker"``.
        mixed_precision: ``""`` (float32), ``"bf16"`` or ``"fp16"``.
        jit: compile the train step with XLA.
        sync_bn_neck: synchronise the BN-neck statistics across replicas.
    """

    epochs: int = _field(140, "Epochs", cli="--epochs")
    lr: float = _field(3.5e-4, "Adam learning rate", cli="--lr")
    weight_decay: float = _field(5e-4, "Coupled L2 weight decay, as PyTorch Adam's (added to the gradients)",
                                 cli="--weight-decay")
    milestones: tuple = (80, 120)
    gamma: float = _field(0.1, "LR factor at each milestone", cli="--gamma")
    seed: int = _field(1, "Seed of the sampler and the augmentation", cli="--seed")
    steps_per_epoch: int = _field(0, "Cap on iterations per epoch", cli="--steps-per-epoch",
                                  default_help="0 = one full pass of the regenerated sampler")
    eval_every: int = _field(0, "Evaluate on the test split every N epochs", cli="--eval-every",
                             default_help="0 = only the last epoch's model")
    save_every_steps: int = _field(0, "Also checkpoint every N steps", cli="--save-every-steps",
                                   default_help="0 = at epoch ends only")
    strategy: str = _field("auto", "Distribution: auto = mirrored over all GPUs when >1, else one device; "
                           "multi-worker reads TF_CONFIG", cli="--strategy", choices=STRATEGIES)
    mixed_precision: str = _field("", choices=MIXED_PRECISIONS)
    jit: bool = _field(False, "Compile the train step with XLA", cli="--jit/--no-jit", default_help="off")
    sync_bn_neck: bool = _field(False, "Synchronise the BN-neck batch statistics across replicas",
                                cli="--sync-bn-neck/--no-sync-bn-neck", default_help="off")


@dataclass
class MPANetConfig:
    """The whole configuration: ``model``, ``loss``, ``data`` and ``train`` sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str) -> "MPANetConfig":
        """The authors' configuration for ``"sysu"`` or ``"regdb"`` (any registered dataset)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict(PRESETS[name])

    def with_ablation(self, name: str) -> "MPANetConfig":
        """A copy with one of the paper's ablation settings (see :data:`ABLATIONS`)."""
        if name not in ABLATIONS:
            raise ConfigError(f"unknown ablation {name!r}; choose one of {sorted(ABLATIONS)}")
        data = self.to_dict()
        for section, values in ABLATIONS[name].items():
            data[section].update(values)
        return MPANetConfig.from_dict(data)

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["train"]["milestones"] = list(self.train.milestones)
        return data

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "MPANetConfig":
        data = data or {}
        sections = SECTIONS
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config sections {sorted(unknown)}; expected {sorted(sections)}")
        built = {}
        for key, klass in sections.items():
            values = dict(data.get(key) or {})
            names = {f.name for f in dataclasses.fields(klass)}
            bad = set(values) - names
            if bad:
                raise ConfigError(f"unknown {key} config fields {sorted(bad)}")
            if "milestones" in values:
                values["milestones"] = tuple(int(m) for m in values["milestones"])
            built[key] = klass(**values)
        config = cls(**built)
        config.validate()
        return config

    @classmethod
    def from_json_file(cls, path) -> "MPANetConfig":
        try:
            with open(path, encoding="utf-8") as handle:
                return cls.from_dict(json.load(handle))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path} is not valid JSON ({error})") from None

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid value.

        Every numeric field is checked for its type, for being finite and for its range before
        anything is built or written, so a run never starts with a value that would fail (or
        silently do nothing) later.
        """
        m, lo, d, t = self.model, self.loss, self.data, self.train
        _check_numbers(self)
        checks = [
            (m.num_parts >= 1, f"model.num_parts must be >= 1, got {m.num_parts}"),
            (m.reduction >= 1, f"model.reduction must be >= 1, got {m.reduction}"),
            (m.last_stride in (1, 2), f"model.last_stride must be 1 or 2, got {m.last_stride}"),
            (m.modality_attention in (0, 1, 2),
             f"model.modality_attention must be 0, 1 or 2, got {m.modality_attention}"),
            (MIN_IMAGE_SIDE <= m.image_height <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= m.image_width <= MAX_IMAGE_SIDE,
             f"image size must be between {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} and {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}, "
             f"got {m.image_height}x{m.image_width}"),
            (0.0 <= lo.update_rate <= 1.0, f"loss.update_rate must be in [0, 1], got {lo.update_rate}"),
            (d.dataset in PRESETS, f"data.dataset must be {_quoted_choices(PRESETS)}, got {d.dataset!r}"),
            (1 <= d.trial <= 10, f"data.trial must be in 1..10, got {d.trial}"),
            (d.batch_ids >= 2, f"data.batch_ids must be >= 2, got {d.batch_ids}"),
            (d.images_per_id >= 2 and d.images_per_id % 2 == 0,
             f"data.images_per_id must be even and >= 2, got {d.images_per_id}"),
            (d.batch_size <= MAX_BATCH_SIZE,
             f"the batch of {d.batch_ids} x {d.images_per_id} = {d.batch_size} images is larger than "
             f"{MAX_BATCH_SIZE}; lower --batch-ids or --images-per-id"),
            (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
            (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
            (all(m_ >= 1 for m_ in t.milestones), f"train.milestones must be epochs >= 1, got {list(t.milestones)}"),
        ]
        for section, config_field in config_fields():
            choices = config_field.metadata.get("choices")
            value = getattr(getattr(self, section), config_field.name)
            if choices is not None and value not in choices:
                checks.append((False, f"{section}.{config_field.name} must be one of "
                                      f"{', '.join(map(repr, choices))}, got {value!r}"))
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


#: The smallest and largest input side the model accepts (SYSU trains at 384x128).
MIN_IMAGE_SIDE = 32
MAX_IMAGE_SIDE = 2048
#: The largest global batch (P x K) a run accepts; the authors train with 128.
MAX_BATCH_SIZE = 4096

# (section, field) -> (kind, low, high, option): the numeric fields, their type ("int" or
# "float"), their inclusive range (None: unbounded) and the command-line option that sets them.
_NUMBER_RULES = {
    ("model", "num_parts"): ("int", 1, 64, "--set model.num_parts"),
    ("model", "reduction"): ("int", 1, 2048, "--set model.reduction"),
    ("model", "last_stride"): ("int", 1, 2, "--set model.last_stride"),
    ("model", "modality_attention"): ("int", 0, 2, "--set model.modality_attention"),
    ("model", "image_height"): ("int", MIN_IMAGE_SIDE, MAX_IMAGE_SIDE, "--image-size"),
    ("model", "image_width"): ("int", MIN_IMAGE_SIDE, MAX_IMAGE_SIDE, "--image-size"),
    ("loss", "weight_sep"): ("float", 0.0, None, "--weight-sep"),
    ("loss", "margin"): ("float", 0.0, None, "--margin"),
    ("loss", "weight_sid"): ("float", 0.0, None, "--weight-sid"),
    ("loss", "weight_kl"): ("float", 0.0, None, "--weight-kl"),
    ("loss", "update_rate"): ("float", 0.0, 1.0, "--update-rate"),
    ("loss", "ema_decay_epoch"): ("int", 0, None, "--set loss.ema_decay_epoch"),
    ("data", "trial"): ("int", 1, 10, "--trial"),
    ("data", "batch_ids"): ("int", 2, MAX_BATCH_SIZE, "--batch-ids"),
    ("data", "images_per_id"): ("int", 2, MAX_BATCH_SIZE, "--images-per-id"),
    ("data", "flip_prob"): ("float", 0.0, 1.0, "--set data.flip_prob"),
    ("data", "pad"): ("int", 0, 512, "--set data.pad"),
    ("data", "erase_prob"): ("float", 0.0, 1.0, "--set data.erase_prob"),
    ("train", "epochs"): ("int", 1, 100_000, "--epochs"),
    ("train", "lr"): ("float", 0.0, 1e3, "--lr"),
    ("train", "weight_decay"): ("float", 0.0, 1e3, "--weight-decay"),
    ("train", "gamma"): ("float", 0.0, 1e3, "--gamma"),
    ("train", "seed"): ("int", 0, 2**32 - 1, "--seed"),
    ("train", "steps_per_epoch"): ("int", 0, None, "--steps-per-epoch"),
    ("train", "eval_every"): ("int", 0, None, "--eval-every"),
    ("train", "save_every_steps"): ("int", 0, None, "--save-every-steps"),
}
#: Fields whose value must be strictly above the low end of its range.
_EXCLUSIVE_LOW = {("train", "lr"), ("train", "gamma")}


def _check_numbers(config: "MPANetConfig") -> None:
    """:class:`ConfigError` for a numeric field of the wrong type, non-finite or out of range."""
    import math
    import numbers

    for (section, name), (kind, low, high, option) in _NUMBER_RULES.items():
        value = getattr(getattr(config, section), name)
        where = f"{option} ({section}.{name})"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if kind == "int" and (not float(value).is_integer() if math.isfinite(value) else True):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        exclusive = (section, name) in _EXCLUSIVE_LOW
        if low is not None and (value <= low if exclusive else value < low):
            bound = f"> {low}" if exclusive else f">= {low}"
            raise ConfigError(f"{where} must be {bound}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{where} must be <= {high}, got {value!r}")
    for milestone in config.train.milestones:
        if isinstance(milestone, bool) or not isinstance(milestone, numbers.Integral) or milestone < 1:
            raise ConfigError(f"--milestones (train.milestones) must be epochs >= 1, got {list(config.train.milestones)}")


class _Presets(Mapping):
    """dataset name -> config overrides of its preset, read live from the dataset registry
    (:class:`mpanet_tf.data.registry.DatasetSpec.preset`, defined next to each reader)."""

    def __getitem__(self, name):
        if name not in dataset_names():
            raise KeyError(name)
        return get_dataset(name).config_overrides()

    def __iter__(self):
        return iter(dataset_names())

    def __len__(self):
        return len(dataset_names())


#: The authors' configurations of each registered dataset (configs/SYSU.yml, configs/RegDB.yml).
PRESETS: Mapping[str, dict] = _Presets()

#: The ablation rows of the paper's Tables 3 and 4, as config overrides.
ABLATIONS: dict[str, dict] = {
    "baseline": {"model": {"modality_attention": 0, "use_pam": False}, "loss": {"use_cc": False, "use_ml": False}},
    "+cc": {"model": {"modality_attention": 0, "use_pam": False}, "loss": {"use_cc": True, "use_ml": False}},
    "+ml": {"model": {"modality_attention": 0, "use_pam": False}, "loss": {"use_cc": True, "use_ml": True}},
    "+pam": {"model": {"modality_attention": 0, "use_pam": True}, "loss": {"use_cc": True, "use_ml": True}},
    "+mam": {"model": {"modality_attention": 2, "use_pam": True, "mam_variant": "mam"}},
    "mam-as-in": {"model": {"modality_attention": 2, "mam_variant": "in"}},
    "mam-as-se": {"model": {"modality_attention": 2, "mam_variant": "se"}},
}


def _quoted_choices(names) -> str:
    """``"'sysu' or 'regdb'"``, ``"'sysu', 'regdb' or 'llcm'"``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"384x128"``) into ``(H, W)``; :class:`ConfigError` otherwise."""
    parts = str(text).lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"image size must be HxW such as 384x128, got {text!r}")
    height, width = (int(p) for p in parts)
    if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
        raise ConfigError(f"image size must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, got {text!r}")
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        raise ConfigError(f"image size must be at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}, got {text!r}")
    return height, width


# ------------------------------------------------------------- fields, options and --set
#: The sections of :class:`MPANetConfig`, in order, with their dataclasses.
SECTIONS = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "train": TrainConfig}


def config_fields() -> list[tuple[str, dataclasses.Field]]:
    """Every (section, field) of the config, in declaration order."""
    return [(section, item) for section, klass in SECTIONS.items() for item in dataclasses.fields(klass)]


def cli_fields() -> list[tuple[str, dataclasses.Field]]:
    """The (section, field) pairs that ``mpanet-tf train`` has an option for (``metadata["cli"]``)."""
    return [(section, item) for section, item in config_fields() if "cli" in item.metadata]


def show_value(value) -> str:
    """A config value as the CLI help shows it: ``3.5e-4`` rather than ``0.00035``, ``80,120``."""
    if isinstance(value, float) and value and abs(value) < 1e-3:
        mantissa, exponent = f"{value:e}".split("e")
        return f"{float(mantissa):g}e{int(exponent)}"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def preset_values(section: str, name: str) -> dict[str, Any]:
    """{preset: value} of a field that some preset sets (empty when none does)."""
    values = {preset: data[section][name] for preset, data in PRESETS.items() if name in data.get(section, {})}
    if values and len(values) < len(PRESETS):
        default = getattr(SECTIONS[section](), name)
        values = {preset: PRESETS[preset].get(section, {}).get(name, default) for preset in PRESETS}
    return values


def default_help(section: str, item: dataclasses.Field) -> str:
    """How the CLI help states a field's default: ``metadata["default_help"]``, the presets'
    values when they differ (``16 sysu, 12 regdb``), else the dataclass default."""
    if "default_help" in item.metadata:
        return item.metadata["default_help"]
    values = preset_values(section, item.name)
    if values and len({show_value(v) for v in values.values()}) > 1:
        return "the preset's: " + ", ".join(f"{show_value(v)} {preset}" for preset, v in values.items())
    if values:
        return show_value(next(iter(values.values())))
    return show_value(item.default)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_field_value(section: str, name: str, text: str):
    """``text`` parsed with the type of config field ``section.name`` (bool: true/false, yes/no,
    on/off, 1/0; tuple: comma-separated integers).

    Raises:
        ConfigError: unknown field, or ``text`` is not a value of the field's type.
    """
    klass = SECTIONS.get(section)
    names = [item.name for item in dataclasses.fields(klass)] if klass is not None else []
    if klass is None:
        raise ConfigError(f"--set {section}.{name}: unknown config section {section!r}; choose one of "
                          f"{', '.join(SECTIONS)}")
    if name not in names:
        raise ConfigError(f"--set {section}.{name}: unknown config field; {section} has {', '.join(names)}")
    default = getattr(klass(), name)
    kind = type(default)
    value = str(text).strip()
    try:
        if kind is bool:
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError
            return value.lower() in _TRUE
        if kind is tuple:
            return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
        return kind(value)
    except ValueError:
        expected = {bool: "true or false", tuple: "comma-separated integers such as 80,120"}.get(
            kind, f"a {kind.__name__}")
        raise ConfigError(f"--set {section}.{name}={text}: {section}.{name} takes {expected}, got {text!r}") from None


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``"section.field=value"`` -> (section, field, value parsed with the field's type).

    Raises:
        ConfigError: not of the form ``section.field=value``, unknown field or bad value.
    """
    key, sep, value = str(text).partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"--set takes section.field=value such as train.lr=0.001, got {text!r}")
    return section, name, parse_field_value(section, name, value)


def apply_assignments(config: "MPANetConfig", assignments) -> "MPANetConfig":
    """A copy of ``config`` with every ``"section.field=value"`` of ``assignments`` applied (later
    ones win), validated.

    Raises:
        ConfigError: a bad assignment (see :func:`parse_assignment`) or an invalid result.
    """
    data = config.to_dict()
    for text in assignments:
        section, name, value = parse_assignment(text)
        data[section][name] = list(value) if isinstance(value, tuple) else value
    return MPANetConfig.from_dict(data)
