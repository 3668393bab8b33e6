"""MPANet, the task model of the family: PAM, BN neck, classifiers, loss terms, train step.

Architecture (design.md §1): a :class:`~mpanet_tf.backbone.MPANetBackbone` (torchvision ResNet-50 with
last stride 1 and a MAM after layer3 and after layer4) -> PAM (6 pattern maps, [parts, global] =
14336-d) -> BN neck (bias frozen at 0, i.e. no bias) -> bias-free classifiers: shared C,
modality-specific C_v and C_r, and their EMA "mean" copies (non-trainable, updated inside the step,
before the optimizer, from the pre-step weights).

As in keras-hub, the backbone's ``get_config`` holds its architecture arguments and the task's
holds its own constructor arguments (the backbone, ``num_classes``, the head's shape, the input
size). A run's training settings (loss weights and switches, the identity-block size, weight
decay) are not part of the saved model: the run folder's ``config.json`` keeps them, and
:meth:`MPANet.configure_training` hands them to the train step (:func:`build_model` does it from
an :class:`~mpanet_tf.config.MPANetConfig`). A ``.keras`` file saved before this split (its config
held the whole training config) still loads (:meth:`MPANet.from_config`).

Inputs everywhere are float32 RGB images in [0, 255], NHWC at the model's input size; ImageNet
normalisation happens inside (:class:`~mpanet_tf.layers.image_normalization.ImageNormalization`).
The test-time embedding is the BN-neck output in inference mode (B, 14336), with no flip-averaging
and no L2 normalisation (design.md §1.5).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mpanet_tf import run_folder
from mpanet_tf.backbone import MPANetBackbone
from mpanet_tf.config import ModelConfig, MPANetConfig
from mpanet_tf.errors import CheckpointError
from mpanet_tf.layers.batch_norm import TorchBatchNorm
from mpanet_tf.layers.embedding_head import embedding_head
from mpanet_tf.layers.image_normalization import ImageNormalization
from mpanet_tf.layers.initializers import torch_default_uniform
from mpanet_tf.layers.pattern_alignment import PatternAlignment
from mpanet_tf.loss_terms import LOSS_TERMS as LOGGED_TERMS
from mpanet_tf.loss_terms import TOTAL_LOSS
from mpanet_tf.losses import (
    center_cluster_loss,
    identity_loss,
    modality_identity_losses,
    mutual_mean_kl,
    separation_loss,
    total_loss,
)

#: The keys of :meth:`MPANet.loss_terms`: the logged terms (:data:`mpanet_tf.loss_terms.LOSS_TERMS`) and
#: ``total``, the weighted sum, whose metric is named ``loss`` (:data:`mpanet_tf.loss_terms.TOTAL_LOSS`).
LOSS_TERMS = (*LOGGED_TERMS, "total")


class EmbeddingFunction:
    """The test-time embedding of one network, traced once.

    Attributes:
        network: the Keras network it runs (an :class:`MPANet`, or the BN-folded snapshot of
            :func:`mpanet_tf.inference.fold_batch_norms`).
        image_size: (H, W) of its input; None accepts any size.
        input_signature: ``[tf.TensorSpec((None, H, W, 3), float32, name="images")]``.
        traced: ``tf.function`` images float32 (N, H, W, 3) in [0, 255] -> (N, D) float32 tensor,
            with that fixed signature: it never retraces.

    Call: ``fn(images)`` (N, H, W, 3) float32 array-like -> (N, D) float32 numpy. Inside another
    traced function (serving signatures, conversions), use :meth:`tensor`.
    """

    def __init__(self, network, image_size, jit: bool = False):
        self.network = network
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        height, width = self.image_size or (None, None)
        self.input_signature = [tf.TensorSpec([None, height, width, 3], tf.float32, name="images")]
        self.traced = tf.function(self.tensor, input_signature=self.input_signature,
                                  jit_compile=bool(jit), autograph=False)

    def tensor(self, images):
        """images (N, H, W, 3) float32 tensor -> (N, D) float32 tensor, the BN-neck output."""
        return tf.cast(self.network(images, training=False), tf.float32)

    def __call__(self, images) -> np.ndarray:
        return self.traced(tf.convert_to_tensor(np.asarray(images, dtype=np.float32))).numpy()


@keras.saving.register_keras_serializable(package="mpanet_tf")
class MPANet(keras.Model):
    """The MPANet network with its losses and train step.

    Args:
        backbone: an :class:`~mpanet_tf.backbone.MPANetBackbone`.
        num_classes: training identities (395 for SYSU-MM01, 206 for RegDB); required.
        num_parts: PAM pattern maps p (6).
        use_pam: PAM on ([parts, global], (p + 1) * 2048-d) or off (global only, 2048-d).
        modality_classifiers: the modality-specific classifiers and their mean (EMA) copies of
            mutual mean learning (``loss.use_ml``; off for the ablations without it).
        image_size: (H, W) input size the model is trained and exported at (384x128 for SYSU).

    Call: images (B, H, W, 3) float in [0, 255] -> embeddings (B, D) float32, D = 14336 by default
    (the BN-neck output; in inference mode this is the test-time feature).

    Example:
        >>> model = MPANet(MPANetBackbone(), num_classes=3, image_size=(64, 32))
        >>> model.embed(np.zeros((2, 64, 32, 3), "float32")).shape
        (2, 14336)
    """

    def __init__(self, backbone, num_classes, num_parts=6, use_pam=True, modality_classifiers=True,
                 image_size=(384, 128), **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, MPANetBackbone):
            raise ValueError(f"backbone must be an MPANetBackbone, got {type(backbone).__name__}")
        if isinstance(num_classes, bool) or int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if int(num_parts) < 1:
            raise ValueError(f"num_parts must be >= 1, got {num_parts!r}")
        if len(tuple(image_size)) != 2 or min(int(s) for s in image_size) < 1:
            raise ValueError(f"image_size must be (H, W), got {image_size!r}")
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.num_parts = int(num_parts)
        self.use_pam = bool(use_pam)
        self.modality_classifiers = bool(modality_classifiers)
        self._image_size = tuple(int(s) for s in image_size)
        dim = self.embedding_dim

        # Creation order and attribute names fix the saved weight paths (tests/legacy_keras.py).
        self.normalize = ImageNormalization(name="normalize", dtype=self.dtype_policy)
        self.pam = PatternAlignment(self.num_parts, name="pam") if self.use_pam else None
        if self.pam is not None:
            self.pam.build((None, None, None, backbone.output_channels))
        self.bn_neck = TorchBatchNorm(epsilon=1e-5, momentum=0.9, center=False, name="bn_neck")
        self.bn_neck.build((None, dim))
        self.classifier = self._head("classifier", dim)
        self.visible_classifier = self.infrared_classifier = None
        self.visible_classifier_mean = self.infrared_classifier_mean = None
        if self.modality_classifiers:
            self.visible_classifier = self._head("visible_classifier", dim)
            self.infrared_classifier = self._head("infrared_classifier", dim)
            # The mean (EMA) heads start as copies of the trainable ones (design.md §1.4).
            self.visible_classifier_mean = self._mean_head("visible_classifier_mean", self.visible_classifier)
            self.infrared_classifier_mean = self._mean_head("infrared_classifier_mean", self.infrared_classifier)
        defaults = MPANetConfig()
        defaults.loss.use_ml = self.modality_classifiers
        self.configure_training(defaults)
        self.ema_rate = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(defaults.loss.update_rate), trainable=False,
            name="ema_rate", dtype="float32",
        )
        self.loss_trackers = {
            name: keras.metrics.Mean(name=TOTAL_LOSS if name == "total" else name) for name in LOSS_TERMS
        }
        self.built = True

    # ----------------------------------------------------------------- building
    def _head(self, name, dim):
        head = keras.layers.Dense(
            self.num_classes, use_bias=False, kernel_initializer=torch_default_uniform(), name=name
        )
        head.build((None, dim))
        return head

    def _mean_head(self, name, head):
        weight = self.add_weight(
            shape=tuple(head.kernel.shape), initializer="zeros", trainable=False, name=name,
            dtype="float32",
        )
        weight.assign(ops.cast(head.kernel, "float32"))
        return weight

    def configure_training(self, config: MPANetConfig) -> None:
        """Take a run's training settings, which the saved model does not keep (the run folder's
        ``config.json`` does): the loss weights and switches (``config.loss``), the identity-block
        size of the centre-cluster anchors (``data.images_per_id``), the coupled weight decay
        (``train.weight_decay``) and the BN neck's cross-replica statistics
        (``train.sync_bn_neck``). Call it before the train step is first traced.

        Raises:
            ValueError: ``loss.use_ml`` asks for mutual mean learning and the model was built
                without modality classifiers.
        """
        if config.loss.use_ml and not self.modality_classifiers:
            raise ValueError("loss.use_ml needs the modality classifiers; build the model with "
                             "modality_classifiers=True")
        self.loss_config = config.loss
        self.images_per_id = int(config.data.images_per_id)
        self.weight_decay = float(config.train.weight_decay)
        self.bn_neck.synchronized = bool(config.train.sync_bn_neck)

    # ------------------------------------------------------------------ forward
    def forward(self, images, training=False):
        """images (B, H, W, 3) in [0, 255] -> dict of

        ``features`` (B, D) pre-BN, ``bn_features`` (B, D) BN-neck output and ``masks``
        (B, h, w, p) PAM maps (None without PAM).
        """
        _, stage4 = self.backbone(self.normalize(images), training=training)
        features, bn_features, masks = embedding_head(stage4, self.pam, self.bn_neck, training=training)
        return {"features": features, "bn_features": bn_features, "masks": masks}

    def call(self, images, training=False):
        return ops.cast(self.forward(images, training=training)["bn_features"], "float32")

    def embed(self, images):
        """Test-time embeddings: images (B, H, W, 3) float32 RGB in [0, 255] -> (B, D) numpy float32.

        Runs an :class:`EmbeddingFunction` of the model itself (unfolded, any input size: it
        follows later weight changes), traced once per model.
        """
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"embed expects (B, H, W, 3) images, got shape {images.shape}")
        embedding = getattr(self, "_embedding", None)
        if embedding is None:
            embedding = self._embedding = EmbeddingFunction(self, None)
        return embedding(images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the model's input."""
        return self._image_size

    @property
    def embedding_dim(self) -> int:
        """Length D of the embedding: 2048 * (num_parts + 1) with PAM, 2048 without."""
        channels = self.backbone.output_channels
        return channels * (self.num_parts + 1) if self.use_pam else channels

    # ------------------------------------------------------------------- losses
    def mean_classifier_targets(self):
        """The EMA heads after one update from the current (pre-step) weights (design.md §2.4):
        W_mean <- (1 - r) W_mean + r W. Returns (visible, infrared) float32 (D, num_classes)."""
        rate = self.ema_rate
        visible = (1.0 - rate) * self.visible_classifier_mean + rate * ops.stop_gradient(
            ops.cast(self.visible_classifier.kernel, "float32"))
        infrared = (1.0 - rate) * self.infrared_classifier_mean + rate * ops.stop_gradient(
            ops.cast(self.infrared_classifier.kernel, "float32"))
        return visible, infrared

    def update_mean_classifiers(self, targets=None):
        """Assign one EMA update to the mean heads: ``targets`` (visible, infrared) from
        :meth:`mean_classifier_targets`, or computed now from the current classifier weights."""
        visible, infrared = targets if targets is not None else self.mean_classifier_targets()
        self.visible_classifier_mean.assign(visible)
        self.infrared_classifier_mean.assign(infrared)

    def loss_terms(self, images, labels, infrared, training=True, k_size=None):
        """The loss terms exactly as the authors' ``train_forward`` computes them (design.md §2).

        No side effects: the KL uses the mean heads as updated from the current weights, as the
        authors' forward does, but the update itself is assigned by :meth:`train_step`.

        Args:
            images: (B, H, W, 3) float in [0, 255], laid out as the sampler lays it out
                (identity-contiguous blocks of ``k_size`` images).
            labels: (B,) int training labels.
            infrared: (B,) bool, True for infrared images.
            training: BN in training mode (batch statistics) as in the authors' training.
            k_size: images per identity block for the centre-cluster anchors (default
                ``data.images_per_id`` of :meth:`configure_training`).

        Returns:
            dict of float32 scalars ``id``, ``cc``, ``sep``, ``sid`` (CE_vis + CE_ir, unweighted),
            ``kl`` and ``total`` (weighted, Eq. 14 with the code's effective weights).
        """
        return self._loss_terms_and_ema_targets(images, labels, infrared, training, k_size)[0]

    def _loss_terms_and_ema_targets(self, images, labels, infrared, training=True, k_size=None):
        """(:meth:`loss_terms`, the (visible, infrared) mean-head targets the KL used, or None
        without mutual mean learning)."""
        cfg = self.loss_config
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        infrared = ops.cast(ops.reshape(infrared, (-1,)), "bool")
        out = self.forward(images, training=training)
        features = ops.cast(out["features"], "float32")
        bn_features = out["bn_features"]
        zero = ops.zeros((), "float32")
        terms = {"id": identity_loss(ops.cast(self.classifier(bn_features), "float32"), labels)}
        if cfg.use_cc:
            k = int(k_size or self.images_per_id)
            terms["cc"] = center_cluster_loss(features, labels, k, cfg.margin)
        else:
            terms["cc"] = zero
        terms["sep"] = separation_loss(out["masks"], cfg.normalize_sep) if out["masks"] is not None else zero
        targets = None
        if cfg.use_ml:
            visible_logits = ops.cast(self.visible_classifier(bn_features), "float32")
            infrared_logits = ops.cast(self.infrared_classifier(bn_features), "float32")
            ce_vis, ce_ir = modality_identity_losses(visible_logits, infrared_logits, labels, infrared)
            targets = visible_mean, infrared_mean = self.mean_classifier_targets()
            detached = ops.stop_gradient(ops.cast(bn_features, "float32"))
            terms["kl"] = mutual_mean_kl(
                visible_logits, infrared_logits,
                ops.matmul(detached, visible_mean), ops.matmul(detached, infrared_mean),
                infrared, grad_side=cfg.kl_grad_side,
            )
            terms["ce_vis"], terms["ce_ir"] = ce_vis, ce_ir
            terms["sid"] = ce_vis + ce_ir
        else:
            terms["ce_vis"] = terms["ce_ir"] = terms["sid"] = terms["kl"] = zero
        terms["total"] = total_loss(terms, cfg)
        return {name: terms[name] for name in LOSS_TERMS}, targets

    # --------------------------------------------------------------- train step
    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    def l2_penalty(self):
        """(wd / 2) * sum ||w||^2 over trainable weights: PyTorch Adam's coupled weight decay
        (its gradient is wd * w, design.md §3.1 and §8.9)."""
        decay = self.weight_decay
        if not decay:
            return ops.zeros((), "float32")
        squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in self.trainable_variables]
        return 0.5 * decay * ops.sum(ops.stack(squares))

    def train_step(self, data):
        """One optimisation step on a batch ``(images, labels, infrared)``.

        Runs unchanged under tf.distribute: the loss (with the coupled L2 term) is divided by the
        replica count because gradients are summed across replicas (design.md §11), passed
        through ``optimizer.scale_loss`` for fp16 loss scaling, and no Python-side state is read.
        """
        images, labels, infrared = data[0], data[1], data[2]
        cfg = self.loss_config
        with tf.GradientTape() as tape:
            terms, ema_targets = self._loss_terms_and_ema_targets(images, labels, infrared, training=True)
            objective = terms["total"] + self.l2_penalty()
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(objective / replicas)
        gradients = tape.gradient(scaled, self.trainable_variables)
        if ema_targets is not None and cfg.ema_before_step:
            # The authors' order: the EMA from the pre-step weights (the targets the KL used),
            # then the optimizer step (design.md §2.4).
            self.update_mean_classifiers(ema_targets)
        self.optimizer.apply(gradients, self.trainable_variables)
        if ema_targets is not None and not cfg.ema_before_step:
            self.update_mean_classifiers()
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(terms[name])
        return {tracker.name: tracker.result() for tracker in self.metrics}

    # ----------------------------------------------------------- serialisation
    def get_config(self):
        """The constructor arguments, the backbone serialised with its own architecture arguments."""
        return {"name": self.name, "trainable": self.trainable,
                "backbone": keras.saving.serialize_keras_object(self.backbone),
                "num_classes": self.num_classes, "num_parts": self.num_parts, "use_pam": self.use_pam,
                "modality_classifiers": self.modality_classifiers, "image_size": list(self.image_size)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "config" in config:
            config = legacy_arguments(config)
        if isinstance(config.get("backbone"), dict):
            config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    def summary_line(self) -> str:
        return (f"MPANet: {self.count_params():,} parameters "
                f"({sum(int(np.prod(v.shape)) for v in self.trainable_variables):,} trainable), "
                f"embedding {self.embedding_dim}-d, input {self.image_size[0]}x{self.image_size[1]}")


def model_arguments(model: dict, use_ml: bool) -> dict:
    """The backbone and task arguments of a ``model`` config section (a dict of
    :class:`~mpanet_tf.config.ModelConfig` fields) and ``loss.use_ml``: {"backbone": ..., ...}."""
    backbone = MPANetBackbone(last_stride=int(model["last_stride"]), modality_attention=int(model["modality_attention"]),
                              reduction=int(model["reduction"]), mam_variant=model["mam_variant"])
    return {"backbone": backbone, "num_parts": int(model["num_parts"]), "use_pam": bool(model["use_pam"]),
            "modality_classifiers": bool(use_ml),
            "image_size": (int(model["image_height"]), int(model["image_width"]))}


def legacy_arguments(config: dict) -> dict:
    """The constructor arguments of a config saved before the backbone/task split,
    ``{"name", "config": <the whole MPANetConfig dict>, "num_classes"}``: only its ``model``
    section (over :class:`~mpanet_tf.config.ModelConfig`'s defaults) and ``loss.use_ml`` are
    architecture; the rest was the run's training config, which the run folder keeps."""
    saved = config.get("config") or {}
    model = {**dataclasses.asdict(ModelConfig()), **(saved.get("model") or {})}
    arguments = model_arguments(model, (saved.get("loss") or {}).get("use_ml", True))
    return {"name": config.get("name", "mpa_net"), "num_classes": config["num_classes"], **arguments}


def build_model(config, num_classes) -> MPANet:
    """MPANet of a run's config, with random initialisation (backbone weights are loaded by the
    trainer, :func:`mpanet_tf.interop.backbone_init.initialize_backbone`, so this never touches
    the network), configured for training with it (:meth:`MPANet.configure_training`).

    Args:
        config: :class:`MPANetConfig`, its dict, or None for the SYSU defaults.
        num_classes: number of training identities.
    """
    if config is None:
        config = MPANetConfig()
    elif isinstance(config, dict):
        config = MPANetConfig.from_dict(config)
    config.validate()
    model = MPANet(num_classes=num_classes, **model_arguments(dataclasses.asdict(config.model), config.loss.use_ml))
    model.configure_training(config)
    model.ema_rate.assign(config.loss.update_rate)
    return model


def load_keras_file(path) -> MPANet:
    """An MPANet from a ``.keras`` file; :class:`CheckpointError` (one line naming the file) for an
    empty, truncated or foreign file instead of Keras' traceback.

    Keras reads the file's config and builds whatever it names, so only a file whose top-level
    class is this project's ``MPANet`` is loaded (a foreign model is refused before its weights
    are read).
    """
    path = Path(path)
    fix = "pass a run folder written by `mpanet-tf train` or the model.keras file of one"
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as error:
        reason = "empty" if path.is_file() and path.stat().st_size == 0 else f"not a Keras model file ({type(error).__name__})"
        raise CheckpointError(f"model file {path} is {reason}; {fix}") from None
    name = config.get("class_name") if isinstance(config, dict) else None
    registered = config.get("registered_name") if isinstance(config, dict) else None
    if name != "MPANet" and registered != "mpanet_tf>MPANet":
        raise CheckpointError(f"model file {path} holds a {registered or name or 'foreign'} model, not an MPANet; {fix}")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types on a damaged archive or mismatched weights
        raise CheckpointError(f"model file {path} cannot be loaded ({type(error).__name__}: "
                              f"{' '.join(str(error).split())[:160]}); {fix}") from None
    if not isinstance(model, MPANet):
        raise CheckpointError(f"model file {path} holds a {type(model).__name__}, not an MPANet; {fix}")
    return model


def load_model(path) -> MPANet:
    """Load a model from a ``.keras`` file or a run folder (its final ``model.keras``, or the
    newest checkpoint with the run's ``config.json`` when that is newer or there is no final model;
    :func:`mpanet_tf.run_folder.locate_model`).

    Raises:
        CheckpointError: nothing loadable at ``path``.
    """
    found = run_folder.locate_model(path)
    if found.keras_file is not None:
        return load_keras_file(found.keras_file)
    config = MPANetConfig.from_json_file(found.config_file)
    try:
        num_classes = int(run_folder.read_json(found.run_file)["num_classes"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{found.run_file} is missing or has no num_classes ({type(error).__name__}); "
                              "restore the run folder's run.json") from None
    model = build_model(config, num_classes)
    try:
        model.load_weights(found.weights)
    except Exception as error:  # a damaged or foreign weights file
        raise CheckpointError(f"checkpoint {found.weights} cannot be loaded ({type(error).__name__}); "
                              "delete it (and its .state.json) to fall back to the previous one") from None
    return model
