"""One configuration tree with the paper's names and the authors' defaults.

The defaults reproduce the authors' released configuration (configs/SYSU.yml and configs/RegDB.yml
of DoubtedSteam/MPANet, see ``shared/docs/mpanet-facts.md``); presets ``"sysu"`` and ``"regdb"``
differ only where those two files differ (image size, batch layout, LR milestones). Ablation
switches of the paper's Tables 3 and 4 live in :data:`ABLATIONS`.

The resolved config is written as JSON next to every checkpoint (:meth:`MPANetConfig.to_json`) and
read back by :meth:`MPANetConfig.from_dict`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from mpanet_tf.errors import ConfigError

MAM_VARIANTS = ("mam", "in", "se")

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
    mam_variant: str = "mam"
    use_pam: bool = True
    image_height: int = 384
    image_width: int = 128
    backbone_weights: str = "imagenet"

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

    weight_sep: float = 0.5
    margin: float = 0.7
    weight_sid: float = 0.5
    weight_kl: float = 2.5
    update_rate: float = 0.2
    ema_decay_epoch: int = 100
    use_cc: bool = True
    use_ml: bool = True
    double_modality_ce: bool = True
    kl_grad_side: str = "specific"
    normalize_sep: bool = False
    ema_before_step: bool = True


@dataclass
class DataConfig:
    """Data and augmentation (facts §3.2-3.3).

    Attributes:
        dataset: ``"sysu"`` or ``"regdb"``.
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
    data_root: str = ""
    trial: int = 1
    batch_ids: int = 16
    images_per_id: int = 8
    flip_prob: float = 0.5
    pad: int = 10
    pad_fill: str = "grey"
    erase_prob: float = 0.5
    erase_aspect: str = "uniform"
    cache: str = ""
    skip_bad_images: bool = False

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

    epochs: int = 140
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    milestones: tuple = (80, 120)
    gamma: float = 0.1
    seed: int = 1
    steps_per_epoch: int = 0
    eval_every: int = 0
    save_every_steps: int = 0
    strategy: str = "auto"
    mixed_precision: str = ""
    jit: bool = False
    sync_bn_neck: bool = False


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
        """The authors' configuration for ``"sysu"`` or ``"regdb"``."""
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
        sections = {"model": ModelConfig, "loss": LossConfig, "data": DataConfig, "train": TrainConfig}
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
        """Raise :class:`ConfigError` naming the first invalid value."""
        m, lo, d, t = self.model, self.loss, self.data, self.train
        checks = [
            (m.num_parts >= 1, f"model.num_parts must be >= 1, got {m.num_parts}"),
            (m.reduction >= 1, f"model.reduction must be >= 1, got {m.reduction}"),
            (m.last_stride in (1, 2), f"model.last_stride must be 1 or 2, got {m.last_stride}"),
            (m.modality_attention in (0, 1, 2),
             f"model.modality_attention must be 0, 1 or 2, got {m.modality_attention}"),
            (m.mam_variant in MAM_VARIANTS,
             f"model.mam_variant must be one of {MAM_VARIANTS}, got {m.mam_variant!r}"),
            (m.image_height >= 32 and m.image_width >= 32,
             f"image size must be at least 32x32, got {m.image_height}x{m.image_width}"),
            (lo.kl_grad_side in ("specific", "paper"),
             f"loss.kl_grad_side must be 'specific' or 'paper', got {lo.kl_grad_side!r}"),
            (0.0 <= lo.update_rate <= 1.0, f"loss.update_rate must be in [0, 1], got {lo.update_rate}"),
            (d.dataset in ("sysu", "regdb"), f"data.dataset must be 'sysu' or 'regdb', got {d.dataset!r}"),
            (1 <= d.trial <= 10, f"data.trial must be in 1..10, got {d.trial}"),
            (d.batch_ids >= 2, f"data.batch_ids must be >= 2, got {d.batch_ids}"),
            (d.images_per_id >= 2 and d.images_per_id % 2 == 0,
             f"data.images_per_id must be even and >= 2, got {d.images_per_id}"),
            (d.pad_fill in ("grey", "red"), f"data.pad_fill must be 'grey' or 'red', got {d.pad_fill!r}"),
            (d.erase_aspect in ("uniform", "log-uniform"),
             f"data.erase_aspect must be 'uniform' or 'log-uniform', got {d.erase_aspect!r}"),
            (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
            (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
            (t.strategy in ("auto", "one-device", "mirrored", "multi-worker"),
             f"train.strategy must be auto, one-device, mirrored or multi-worker, got {t.strategy!r}"),
            (t.mixed_precision in ("", "bf16", "fp16"),
             f"train.mixed_precision must be '', 'bf16' or 'fp16', got {t.mixed_precision!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


PRESETS: dict[str, dict] = {
    "sysu": {
        "model": {"image_height": 384, "image_width": 128},
        "data": {"dataset": "sysu", "data_root": "datasets/SYSU-MM01", "batch_ids": 16, "images_per_id": 8},
        "train": {"milestones": [80, 120], "epochs": 140},
    },
    "regdb": {
        "model": {"image_height": 256, "image_width": 128},
        "data": {"dataset": "regdb", "data_root": "datasets/RegDB", "batch_ids": 12, "images_per_id": 10},
        "train": {"milestones": [110], "epochs": 140},
    },
}

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


def parse_image_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"384x128"``) into ``(H, W)``; :class:`ConfigError` otherwise."""
    parts = str(text).lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"image size must be HxW such as 384x128, got {text!r}")
    height, width = (int(p) for p in parts)
    if height < 32 or width < 32:
        raise ConfigError(f"image size must be at least 32x32, got {text!r}")
    return height, width
