"""One configuration tree with the paper's names and the authors' defaults.

The defaults reproduce the authors' released configuration (configs/SYSU.yml and configs/RegDB.yml
of DoubtedSteam/MPANet, see ``docs/design.md``); presets ``"sysu"`` and ``"regdb"``
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
import math
import numbers
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import numpy as np

from mpanet_tf import schemas
from mpanet_tf.data.registry import DatasetSpec, dataset_names, get_dataset
from mpanet_tf.errors import ConfigError

MAM_VARIANTS = ("mam", "in", "se")
KL_GRAD_SIDES = ("specific", "paper")
PAD_FILLS = ("grey", "red")
ERASE_ASPECTS = ("uniform", "log-uniform")
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
MIXED_PRECISIONS = ("", "bf16", "fp16")


#: The smallest and largest input side the model accepts (SYSU trains at 384x128).
MIN_IMAGE_SIDE = 32
MAX_IMAGE_SIDE = 2048
#: The largest global batch (P x K) a run accepts; the authors train with 128.
MAX_BATCH_SIZE = 4096
#: The largest seed (the sampler and augmentation seeds are 32-bit); ``--repeat N`` uses seed..seed+N-1.
MAX_SEED = 2**32 - 1


def _field(default, help: str = "", *, cli: str | None = None, choices=None, default_help=None,
           low=None, high=None, above: bool = False, parse=None, cli_choices=None, sets=None):
    """A config field with everything said about it, once.

    Args:
        default: the authors' value.
        help: the description (the ``train`` option's help, without the default).
        cli: the ``mpanet-tf train`` option's declaration, e.g. ``"--lr"`` or ``"--jit/--no-jit"``
            (None: only ``--set``). A flag without ``/`` on a True field sets it False.
        choices: the allowed values.
        default_help: how the help states the default when not the value (a string, or a
            function of nothing returning one).
        low, high: the inclusive range of a number (None: unbounded); ``above``: strictly above
            ``low``. Every int and float field has a range (:func:`check_numbers`).
        parse: the option's text -> the value (a tuple of values with ``sets``); raises
            :class:`ConfigError` naming the option.
        cli_choices: the choices the option offers when they are not the values (``parse`` maps them).
        sets: the fields of the section one option sets (``--image-size``: height and width).
    """
    given = {"cli": cli, "default_help": default_help, "parse": parse, "sets": sets}
    metadata = {"help": help, **{key: value for key, value in given.items() if value is not None}}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if cli_choices is not None:
        metadata["cli_choices"] = tuple(cli_choices)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        metadata["range"] = (low, high, above)
    return field(default=default, metadata=metadata)


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


def parse_milestones(text: str) -> tuple:
    """``"80,120"`` -> (80, 120); :class:`ConfigError` naming ``--milestones`` otherwise."""
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"--milestones must be comma-separated epochs such as 80,120, got {text!r}") from None
    if any(v < 1 for v in values):
        raise ConfigError(f"--milestones must be positive epochs, got {text!r}")
    return values


def parse_mixed_precision(text: str) -> str:
    """``--mixed-precision none|bf16|fp16`` -> ``""``, ``"bf16"`` or ``"fp16"``."""
    return "" if text == "none" else text


def _image_size_default() -> str:
    """``the preset's: 384x128 sysu, 256x128 regdb``: the presets' input sizes."""
    heights, widths = preset_values("model", "image_height"), preset_values("model", "image_width")
    return "the preset's: " + ", ".join(f"{heights[preset]}x{widths[preset]} {preset}" for preset in heights)


@dataclass
class ModelConfig:
    """Network shape (design.md §1).

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

    num_parts: int = _field(6, low=1, high=64)
    reduction: int = _field(16, low=1, high=2048)
    last_stride: int = _field(1, low=1, high=2)
    modality_attention: int = _field(2, low=0, high=2)
    mam_variant: str = _field("mam", choices=MAM_VARIANTS)
    use_pam: bool = True
    image_height: int = _field(384, "Input size HxW", cli="--image-size", parse=parse_image_size,
                               sets=("image_height", "image_width"), default_help=_image_size_default,
                               low=MIN_IMAGE_SIDE, high=MAX_IMAGE_SIDE)
    image_width: int = _field(128, low=MIN_IMAGE_SIDE, high=MAX_IMAGE_SIDE)
    backbone_weights: str = _field(
        "imagenet", "ResNet-50 init: imagenet (torchvision resnet50-19c8e357.pth, cached or downloaded), none "
        "(random) or the path of a torchvision-layout .pth", cli="--backbone-weights")

    @property
    def feature_dim(self) -> int:
        """Length of the embedding: 2048 * (num_parts + 1) with PAM, 2048 without."""
        return 2048 * (self.num_parts + 1) if self.use_pam else 2048


@dataclass
class LossConfig:
    """Loss weights and the authors' quirks (design.md §2), each quirk a named switch.

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

    weight_sep: float = _field(0.5, "Weight of the separation loss", cli="--weight-sep", low=0.0)
    margin: float = _field(0.7, "Centre-cluster push margin rho", cli="--margin", low=0.0)
    weight_sid: float = _field(0.5, "Weight of each modality-specific CE, counted twice as in the authors' code",
                               cli="--weight-sid", low=0.0)
    weight_kl: float = _field(2.5, "Weight of the mutual-mean KL loss", cli="--weight-kl", low=0.0)
    update_rate: float = _field(0.2, "EMA rate of the mean classifiers", cli="--update-rate", low=0.0, high=1.0)
    ema_decay_epoch: int = _field(100, low=0)
    use_cc: bool = True
    use_ml: bool = True
    double_modality_ce: bool = _field(True, "Count each modality-specific CE once (the paper's Eq.) instead of twice "
                                      "(the code)", cli="--single-modality-ce")
    kl_grad_side: str = _field("specific", choices=KL_GRAD_SIDES)
    normalize_sep: bool = False
    ema_before_step: bool = True


@dataclass
class DataConfig:
    """Data and augmentation (design.md §3.2-3.3).

    Attributes:
        dataset: a registered dataset (``"sysu"``, ``"regdb"``; :mod:`mpanet_tf.data.registry`).
        data_root: dataset folder (``datasets/SYSU-MM01`` or ``datasets/RegDB`` by default).
        trial: the train/test split of a dataset that ships several (``DatasetSpec.splits``,
            RegDB's 1..10); 1 for the others.
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
    trial: int = _field(1, "The dataset's train/test split, for a dataset that ships several (its range: "
                        "mpanet-tf dataset-info --help)", cli="--trial", low=1)
    batch_ids: int = _field(16, "P identities per batch", cli="--batch-ids", low=2, high=MAX_BATCH_SIZE)
    images_per_id: int = _field(8, "K images per identity, half infrared", cli="--images-per-id", low=2,
                                high=MAX_BATCH_SIZE)
    flip_prob: float = _field(0.5, low=0.0, high=1.0)
    pad: int = _field(10, low=0, high=512)
    pad_fill: str = _field("grey", "Pad colour before the random crop: grey (127,127,127) or red (127,0,0), what "
                           "the authors' torchvision 0.4 produced", cli="--pad-fill", choices=PAD_FILLS)
    erase_prob: float = _field(0.5, low=0.0, high=1.0)
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
    """Optimisation and run control (design.md §3.1, §3.4).

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

    epochs: int = _field(140, "Epochs", cli="--epochs", low=1, high=100_000)
    lr: float = _field(3.5e-4, "Adam learning rate", cli="--lr", low=0.0, above=True, high=1e3)
    weight_decay: float = _field(5e-4, "Coupled L2 weight decay, as PyTorch Adam's (added to the gradients)",
                                 cli="--weight-decay", low=0.0, high=1e3)
    milestones: tuple = _field((80, 120), "Epochs after which the LR is multiplied by --gamma", cli="--milestones",
                               parse=parse_milestones)
    gamma: float = _field(0.1, "LR factor at each milestone", cli="--gamma", low=0.0, above=True, high=1e3)
    seed: int = _field(1, "Seed of the sampler and the augmentation", cli="--seed", low=0, high=MAX_SEED)
    steps_per_epoch: int = _field(0, "Cap on iterations per epoch", cli="--steps-per-epoch",
                                  default_help="0 = one full pass of the regenerated sampler", low=0)
    eval_every: int = _field(0, "Evaluate on the test split every N epochs", cli="--eval-every",
                             default_help="0 = only the last epoch's model", low=0)
    save_every_steps: int = _field(0, "Also checkpoint every N steps", cli="--save-every-steps",
                                   default_help="0 = at epoch ends only", low=0)
    strategy: str = _field("auto", "Distribution: auto = mirrored over all GPUs when >1, else one device; "
                           "multi-worker reads TF_CONFIG", cli="--strategy", choices=STRATEGIES)
    mixed_precision: str = _field("", "Mixed precision policy (losses stay float32; fp16 uses dynamic loss scaling)",
                                  cli="--mixed-precision", choices=MIXED_PRECISIONS,
                                  cli_choices=[p or "none" for p in MIXED_PRECISIONS], parse=parse_mixed_precision,
                                  default_help="none")
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
    def preset(cls, dataset) -> "MPANetConfig":
        """The authors' configuration for a dataset: its :class:`~mpanet_tf.data.registry.DatasetSpec`
        or registered name (``"sysu"``, ``"regdb"``, ...)."""
        if isinstance(dataset, DatasetSpec):
            return cls.from_dict(dataset.config_overrides())
        if dataset not in PRESETS:
            raise ConfigError(f"unknown preset {dataset!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict(PRESETS[dataset])

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
        """Read a ``config.json``: checked as a whole against :func:`config_schema`, then validated;
        every problem is one :class:`ConfigError` line naming the file and the field."""
        fix = "restore the run's config.json or write it with the train options"
        data = schemas.read_json_file(path, "config file", ConfigError, fix)
        schemas.check_document(data, config_schema(), f"config file {path}", ConfigError, fix)
        try:
            return cls.from_dict(data)
        except ConfigError as error:
            raise ConfigError(f"config file {path}: {error}") from None

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid value.

        Every numeric field is checked for its type, for being finite and for the range its field
        declares (:func:`check_numbers`) before anything is built or written, so a run never
        starts with a value that would fail (or silently do nothing) later.
        """
        d = self.data
        check_numbers(self)
        checks = [
            (d.dataset in PRESETS, f"data.dataset must be {_quoted_choices(PRESETS)}, got {d.dataset!r}"),
            (d.batch_ids >= 2, f"data.batch_ids must be >= 2, got {d.batch_ids}"),
            (d.images_per_id >= 2 and d.images_per_id % 2 == 0,
             f"data.images_per_id must be even and >= 2, got {d.images_per_id}"),
            (d.batch_size <= MAX_BATCH_SIZE,
             f"the batch of {d.batch_ids} x {d.images_per_id} = {d.batch_size} images is larger than "
             f"{MAX_BATCH_SIZE}; lower --batch-ids or --images-per-id"),
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
        get_dataset(d.dataset).check_split(d.trial, "--trial (data.trial)")


def option_name(section: str, item: dataclasses.Field) -> str:
    """The command-line option that sets a field, for messages: its ``train`` option (the one
    that sets it with others, e.g. ``--image-size``), else ``--set section.field``."""
    for other in dataclasses.fields(SECTIONS[section]):
        if "cli" in other.metadata and item.name in other.metadata.get("sets", (other.name,)):
            return other.metadata["cli"].split("/")[0]
    return f"--set {section}.{item.name}"


def check_numbers(config: "MPANetConfig") -> None:
    """:class:`ConfigError` for a numeric field of the wrong type, non-finite or outside the range
    its field declares (``metadata["range"]``); for milestones that are not epochs >= 1."""
    for section, item in config_fields():
        if "range" not in item.metadata:
            continue
        low, high, above = item.metadata["range"]
        value = getattr(getattr(config, section), item.name)
        where = f"{option_name(section, item)} ({section}.{item.name})"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if isinstance(item.default, int) and (not float(value).is_integer() if math.isfinite(value) else True):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        if low is not None and (value <= low if above else value < low):
            bound = f"> {low}" if above else f">= {low}"
            raise ConfigError(f"{where} must be {bound}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{where} must be <= {high}, got {value!r}")
    for milestone in config.train.milestones:
        if isinstance(milestone, bool) or not isinstance(milestone, numbers.Integral) or milestone < 1:
            raise ConfigError(f"--milestones (train.milestones) must be epochs >= 1, got {list(config.train.milestones)}")
    _check_schedule(config.train)


def _check_schedule(train: "TrainConfig") -> None:
    """:class:`ConfigError` when the MultiStep learning rate ``lr * gamma ** k`` leaves (0, high of
    ``lr``'s range] or float32 at any epoch of the run (``--gamma 1000`` with many milestones
    overflowed at epoch 2)."""
    passed = sum(1 for milestone in train.milestones if milestone < train.epochs)
    high = next(item for item in dataclasses.fields(TrainConfig) if item.name == "lr").metadata["range"][1]
    for k in range(passed + 1):
        try:
            value = float(train.lr) * float(train.gamma) ** k
        except OverflowError:
            value = float("inf")
        if not 0.0 < float(np.float32(value)) <= high:
            shown = ",".join(map(str, train.milestones[:6])) + (",..." if len(train.milestones) > 6 else "")
            raise ConfigError(f"--gamma {train.gamma} with --milestones {shown} "
                              f"takes the learning rate {train.lr} to {value:.3g} after {k} milestones, outside "
                              f"(0, {high:g}]; lower --gamma or use fewer milestones")


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


# ------------------------------------------------------------- fields, options and --set
#: The sections of :class:`MPANetConfig`, in order, with their dataclasses.
SECTIONS = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "train": TrainConfig}


def config_schema():
    """The schema (:mod:`mpanet_tf.schemas`) of a ``config.json``: an object of sections, each an
    object of its fields typed as their defaults (bool, number, string, list of integers); ranges
    and unknown names are checked afterwards by :meth:`MPANetConfig.from_dict`."""
    kinds = {bool: schemas.boolean(), int: schemas.number(), float: schemas.number(), str: schemas.string(),
             tuple: schemas.list_of(schemas.integer(), max_length=100_000)}
    sections = {}
    for section, klass in SECTIONS.items():
        fields = {item.name: kinds[type(item.default)] for item in dataclasses.fields(klass)}
        sections[section] = schemas.mapping({}, fields)
    return schemas.mapping({}, sections)


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
        stated = item.metadata["default_help"]
        return stated() if callable(stated) else stated
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
