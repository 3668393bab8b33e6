"""MPANet as a Keras 3 model: forward pass, test-time embedding, loss terms, train step, EMA heads.

Architecture (facts §1): torchvision ResNet-50 with last stride 1 and a MAM after layer3 and after
layer4 -> PAM (6 pattern maps, [parts, global] = 14336-d) -> BN neck (bias frozen at 0, i.e. no
bias) -> bias-free classifiers: shared C, modality-specific C_v and C_r, and their EMA "mean"
copies (non-trainable, updated inside the step, before the optimizer, from the pre-step weights).

Inputs everywhere are float32 RGB images in [0, 255], NHWC at the model's input size; ImageNet
normalisation happens inside (:func:`mpanet_tf.data.images.normalize_images`). The test-time
embedding is the BN-neck output in inference mode (B, 14336), with no flip-averaging and no L2
normalisation (facts §1.5).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import ops

from mpanet_tf import run_folder
from mpanet_tf.config import MPANetConfig
from mpanet_tf.loss_terms import LOSS_TERMS as LOGGED_TERMS
from mpanet_tf.loss_terms import TOTAL_LOSS
from mpanet_tf.data.images import normalize_images
from mpanet_tf.errors import CheckpointError
from mpanet_tf.layers.batch_norm import TorchBatchNorm
from mpanet_tf.layers.initializers import torch_default_uniform
from mpanet_tf.layers.modality_alleviation import ModalityAlleviation
from mpanet_tf.layers.pattern_alignment import PatternAlignment
from mpanet_tf.layers.resnet import build_resnet50
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


def ema_rate_for_epoch(epoch: int, update_rate: float = 0.2, decay_epoch: int = 100) -> float:
    """The authors' EMA-rate schedule (facts §2.4): r = rate * min(1, decay_epoch / (epoch + 1)).

    ``epoch`` is 1-based, as in the authors' ``epoch_started_callback``.
    """
    return float(update_rate) * min(1.0, float(decay_epoch) / (int(epoch) + 1))


def embedding_head(stage4, pam, bn_neck, training=False):
    """The network after the backbone: PAM (facts §1.3; global average pooling without it), then
    the BN neck (§1.5). Shared by :meth:`MPANet.forward` and the BN-folded inference graph
    (:func:`mpanet_tf.inference.fold_batch_norms`, which passes copies of the two layers).

    Args:
        stage4: layer4 output after MAM4, (B, h, w, 2048).
        pam: a :class:`PatternAlignment` or None.
        bn_neck: the neck's ``keras.layers.BatchNormalization``.

    Returns:
        (features (B, D) pre-BN, bn_features (B, D), masks (B, h, w, p) or None).
    """
    if pam is not None:
        features, masks = pam(stage4)
    else:
        features, masks = ops.mean(stage4, axis=(1, 2)), None
    return features, bn_neck(features, training=training), masks


@keras.saving.register_keras_serializable(package="mpanet_tf")
class MPANet(keras.Model):
    """The MPANet network with its losses and train step.

    Args:
        config: an :class:`MPANetConfig` or its ``to_dict()``.
        num_classes: training identities (395 for SYSU-MM01, 206 for RegDB).

    Call: images (B, H, W, 3) float in [0, 255] -> embeddings (B, D) float32, D = 14336 by default
    (the BN-neck output; in inference mode this is the test-time feature).
    """

    def __init__(self, config=None, num_classes=395, **kwargs):
        super().__init__(**kwargs)
        if config is None:
            config = MPANetConfig()
        elif isinstance(config, dict):
            config = MPANetConfig.from_dict(config)
        config.validate()
        self.config = config
        self.num_classes = int(num_classes)
        m, loss = config.model, config.loss
        dim = m.feature_dim

        mam3 = mam4 = None
        if m.modality_attention >= 2:
            mam3 = ModalityAlleviation(m.reduction, m.mam_variant, name="MAM3")
        if m.modality_attention >= 1:
            mam4 = ModalityAlleviation(m.reduction, m.mam_variant, name="MAM4")
        self.backbone = build_resnet50(m.last_stride, after_layer3=mam3, after_layer4=mam4)
        self.pam = PatternAlignment(m.num_parts, name="pam") if m.use_pam else None
        if self.pam is not None:
            self.pam.build((None, None, None, 2048))
        self.bn_neck = TorchBatchNorm(
            epsilon=1e-5, momentum=0.9, center=False, synchronized=config.train.sync_bn_neck,
            name="bn_neck",
        )
        self.bn_neck.build((None, dim))
        self.classifier = self._head("classifier", dim)
        self.visible_classifier = self.infrared_classifier = None
        self.visible_classifier_mean = self.infrared_classifier_mean = None
        if loss.use_ml:
            self.visible_classifier = self._head("visible_classifier", dim)
            self.infrared_classifier = self._head("infrared_classifier", dim)
            # The mean (EMA) heads start as copies of the trainable ones (facts §1.4).
            self.visible_classifier_mean = self._mean_head("visible_classifier_mean", self.visible_classifier)
            self.infrared_classifier_mean = self._mean_head("infrared_classifier_mean", self.infrared_classifier)
        self.ema_rate = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(loss.update_rate), trainable=False,
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

    # ------------------------------------------------------------------ forward
    def forward(self, images, training=False):
        """images (B, H, W, 3) in [0, 255] -> dict of

        ``features`` (B, D) pre-BN, ``bn_features`` (B, D) BN-neck output and ``masks``
        (B, h, w, p) PAM maps (None without PAM).
        """
        x = normalize_images(ops.cast(images, self.compute_dtype))
        _, stage4 = self.backbone(x, training=training)
        features, bn_features, masks = embedding_head(stage4, self.pam, self.bn_neck, training=training)
        return {"features": features, "bn_features": bn_features, "masks": masks}

    def call(self, images, training=False):
        return ops.cast(self.forward(images, training=training)["bn_features"], "float32")

    def embed(self, images):
        """Test-time embeddings: images (B, H, W, 3) float32 RGB in [0, 255] -> (B, D) numpy float32.

        Runs :func:`mpanet_tf.inference.embedding_function` (unfolded, any input size: it follows
        later weight changes), traced once per model.
        """
        images = np.asarray(images, dtype="float32")
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"embed expects (B, H, W, 3) images, got shape {images.shape}")
        embedding = getattr(self, "_embedding", None)
        if embedding is None:
            from mpanet_tf.inference import embedding_function

            embedding = self._embedding = embedding_function(self, folded=False, any_size=True)
        return embedding(images)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.model.image_height, self.config.model.image_width

    @property
    def embedding_dim(self) -> int:
        return self.config.model.feature_dim

    # ------------------------------------------------------------------- losses
    def mean_classifier_targets(self):
        """The EMA heads after one update from the current (pre-step) weights (facts §2.4):
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
        """The loss terms exactly as the authors' ``train_forward`` computes them (facts §2).

        No side effects: the KL uses the mean heads as updated from the current weights, as the
        authors' forward does, but the update itself is assigned by :meth:`train_step`.

        Args:
            images: (B, H, W, 3) float in [0, 255], laid out as the sampler lays it out
                (identity-contiguous blocks of ``k_size`` images).
            labels: (B,) int training labels.
            infrared: (B,) bool, True for infrared images.
            training: BN in training mode (batch statistics) as in the authors' training.
            k_size: images per identity block for the centre-cluster anchors (default
                ``config.data.images_per_id``).

        Returns:
            dict of float32 scalars ``id``, ``cc``, ``sep``, ``sid`` (CE_vis + CE_ir, unweighted),
            ``kl`` and ``total`` (weighted, Eq. 14 with the code's effective weights).
        """
        return self._loss_terms_and_ema_targets(images, labels, infrared, training, k_size)[0]

    def _loss_terms_and_ema_targets(self, images, labels, infrared, training=True, k_size=None):
        """(:meth:`loss_terms`, the (visible, infrared) mean-head targets the KL used, or None
        without mutual mean learning)."""
        cfg = self.config.loss
        labels = ops.cast(ops.reshape(labels, (-1,)), "int32")
        infrared = ops.cast(ops.reshape(infrared, (-1,)), "bool")
        out = self.forward(images, training=training)
        features = ops.cast(out["features"], "float32")
        bn_features = out["bn_features"]
        zero = ops.zeros((), "float32")
        terms = {"id": identity_loss(ops.cast(self.classifier(bn_features), "float32"), labels)}
        if cfg.use_cc:
            k = int(k_size or self.config.data.images_per_id)
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
        (its gradient is wd * w, facts §3.1 and §8.9)."""
        decay = self.config.train.weight_decay
        if not decay:
            return ops.zeros((), "float32")
        squares = [ops.sum(ops.square(ops.cast(v, "float32"))) for v in self.trainable_variables]
        return 0.5 * decay * ops.sum(ops.stack(squares))

    def train_step(self, data):
        """One optimisation step on a batch ``(images, labels, infrared)``.

        Runs unchanged under tf.distribute: the loss (with the coupled L2 term) is divided by the
        replica count because gradients are summed across replicas (keras3-traps.md), passed
        through ``optimizer.scale_loss`` for fp16 loss scaling, and no Python-side state is read.
        """
        import tensorflow as tf

        images, labels, infrared = data[0], data[1], data[2]
        cfg = self.config.loss
        with tf.GradientTape() as tape:
            terms, ema_targets = self._loss_terms_and_ema_targets(images, labels, infrared, training=True)
            objective = terms["total"] + self.l2_penalty()
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(objective / replicas)
        gradients = tape.gradient(scaled, self.trainable_variables)
        if ema_targets is not None and cfg.ema_before_step:
            # The authors' order: the EMA from the pre-step weights (the targets the KL used),
            # then the optimizer step (facts §2.4).
            self.update_mean_classifiers(ema_targets)
        self.optimizer.apply(gradients, self.trainable_variables)
        if ema_targets is not None and not cfg.ema_before_step:
            self.update_mean_classifiers()
        for name, tracker in self.loss_trackers.items():
            tracker.update_state(terms[name])
        return {tracker.name: tracker.result() for tracker in self.metrics}

    # ----------------------------------------------------------- serialisation
    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict(), "num_classes": self.num_classes}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def summary_line(self) -> str:
        return (f"MPANet: {self.count_params():,} parameters "
                f"({sum(int(np.prod(v.shape)) for v in self.trainable_variables):,} trainable), "
                f"embedding {self.embedding_dim}-d, input {self.image_size[0]}x{self.image_size[1]}")


def build_model(config=None, num_classes=395) -> MPANet:
    """Build MPANet with random initialisation (backbone weights are loaded by the trainer, see
    :func:`mpanet_tf.weights.initialize_backbone`, so this never touches the network).

    Args:
        config: :class:`MPANetConfig`, its dict, or None for the SYSU defaults.
        num_classes: number of training identities.
    """
    return MPANet(config, num_classes=num_classes)


def load_keras_file(path) -> MPANet:
    """An MPANet from a ``.keras`` file; :class:`CheckpointError` (one line naming the file) for an
    empty, truncated or foreign file instead of Keras' traceback.

    Keras reads the file's config and builds whatever it names, so only a file whose top-level
    class is this project's ``MPANet`` is loaded (a foreign model is refused before its weights
    are read).
    """
    import json
    import zipfile

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
