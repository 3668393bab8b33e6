"""Backbone initialisation of a new model: ``--backbone-weights imagenet | none | PATH``.

The authors start the ResNet-50 from torchvision's ImageNet file ``resnet50-19c8e357.pth``,
loaded non-strictly: ``fc.*`` is absent from the model (design.md §1.1). Every backbone tensor is
overwritten; MAM, PAM, the BN neck and the classifiers keep their own initialisation (design.md
§1.1-1.4). The file is read without torch (:mod:`mpanet_tf.interop.torch_state`) and mapped by
the torchvision key names (:func:`mpanet_tf.interop.convert.resnet_torch_mapping`), keys without
the ``backbone.`` prefix.

Resolution (finding or downloading the file, :func:`resolve_backbone`) and loading
(:func:`initialize_backbone`) are separate, so that the trainer can resolve first and fail before
it writes anything to the run folder. The trainer (:mod:`mpanet_tf.training`) imports this module;
it imports nothing above :mod:`mpanet_tf.interop`'s readers.
"""

from __future__ import annotations

from pathlib import Path

from mpanet_tf.interop.convert import apply_state_dict, resnet_torch_mapping
from mpanet_tf.interop.imagenet import resolve_backbone_weights
from mpanet_tf.interop.torch_state import load_state_dict


def resolve_backbone(spec: str, *, progress: bool = True) -> tuple[Path | None, str | None]:
    """``"imagenet"`` | ``"none"`` | path -> (weights file or None, its SHA-256 or None).

    Raises:
        WeightsUnavailableError: ImageNet weights neither cached nor downloadable (one line).
        CheckpointError: ``spec`` is a path that does not exist.
    """
    return resolve_backbone_weights(str(spec), progress=progress)


def initialize_backbone(model, spec: str, *, resolved=None, progress: bool = True) -> dict:
    """Load torchvision-layout ResNet-50 weights into ``model.backbone``.

    Args:
        model: an :class:`~mpanet_tf.model.MPANet` (its ``backbone``, an
            :class:`~mpanet_tf.backbone.MPANetBackbone`, names layers
            ``conv1``, ``bn1``, ``layer{s}_{i}_conv{k}``, ``layer{s}_{i}_bn{k}``,
            ``layer{s}_0_downsample_{0,1}``).
        spec: ``"imagenet"``, ``"none"`` or the path of a ``.pth`` state dict with torchvision's
            keys (``conv1.weight``, ``layer1.0.conv1.weight``, ...; ``fc.*`` is ignored).
        resolved: the ``(path, sha256)`` :func:`resolve_backbone` already returned, to skip a
            second look-up.

    Returns:
        ``{"spec": spec, "path": str or None, "sha256": str or None, "loaded": n, "ignored": [...]}``
        for ``run.json``.

    Raises:
        CheckpointError: the file does not match the ResNet-50 (missing, unexpected or misshapen
            keys; one line listing the first few).
    """
    path, digest = resolved if resolved is not None else resolve_backbone(spec, progress=progress)
    info = {"spec": str(spec), "path": None if path is None else str(path), "sha256": digest,
            "loaded": 0, "ignored": []}
    if path is None:
        return info
    mapping = resnet_torch_mapping(model.backbone.get_layer)
    report = apply_state_dict(load_state_dict(path), mapping, strict=True, source=str(path))
    info["loaded"] = len(report.loaded)
    info["ignored"] = list(report.ignored)
    return info
