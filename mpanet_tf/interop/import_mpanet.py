"""Import the authors' trained MPANet (a DoubtedSteam/MPANet ``.pth``) into a run folder.

The checkpoint is the whole model's state dict (design.md §9 decision 2, §10): 334 tensors for SYSU,
read without torch by :func:`mpanet_tf.interop.torch_state.load_state_dict` (bare, or nested under
a common key such as ``state_dict`` or ``model``; a ``module.`` prefix is stripped). Every one of
the 279 tensors our model holds is assigned through :func:`mpanet_torch_mapping` (backbone, both
MAMs, PAM, BN neck with its running statistics, the shared, modality-specific and mean
classifiers); the other 55 are the 54 ``num_batches_tracked`` counters and ``bn_neck.bias``, which
the authors freeze at 0 and our BN neck lacks, so it must be zero. Loading is strict: a missing,
unexpected or mis-shaped tensor refuses the whole file with one line.

The run folder (:mod:`mpanet_tf.run_folder`) holds ``config.json`` (the dataset preset, with
``model.backbone_weights`` naming the imported file), ``run.json`` (``num_classes`` read from
``classifier.weight``; ``backbone_init`` with the file, its SHA-256 and the loaded and ignored
keys), ``model.keras`` and a step-0 training checkpoint in the trainer's format
(:mod:`mpanet_tf.training.checkpoints`, with a fresh Adam). ``eval``, ``export`` and
``load_model`` read it like a finished run; ``train --resume`` fine-tunes it from epoch 1. It is
written into a temporary folder beside the output and renamed into place, so a failed import
leaves nothing behind. The output folder is locked while the import runs
(:func:`mpanet_tf.io.locks.folder_lock`): a second import (or a ``train``) into it is refused.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np

from mpanet_tf import run_folder
from mpanet_tf.config import MPANetConfig, parse_image_size
from mpanet_tf.errors import CheckpointError, ConfigError
from mpanet_tf.interop.convert import apply_state_dict
from mpanet_tf.interop.imagenet import sha256_of
from mpanet_tf.interop.mpanet_keys import check_frozen_bn_neck_bias, mpanet_torch_mapping
from mpanet_tf.interop.torch_state import load_state_dict
from mpanet_tf.io import atomic, locks
from mpanet_tf.io.staging import replace_folder, staging_folder
from mpanet_tf.model import build_model
from mpanet_tf.training.checkpoints import CheckpointManager
from mpanet_tf.training.progress import RunProgress
from mpanet_tf.training.setup import make_optimizer

#: Keys of the authors' checkpoint with no Keras variable: BN batch counters and the zero bias.
IGNORED_KEYS = (r"num_batches_tracked$", r"^bn_neck\.bias$")
CLASSIFIER_KEY = "classifier.weight"


def read_authors_state(checkpoint) -> tuple[dict[str, np.ndarray], int]:
    """Read an authors' MPANet checkpoint -> (state dict in torch layout, num_classes).

    ``num_classes`` is the row count of ``classifier.weight`` (num_classes, 14336).

    Raises:
        CheckpointError: unreadable, unsafe or not a state dict (see ``load_state_dict``), no
            2-D ``classifier.weight``, or a non-zero ``bn_neck.bias``.
    """
    source = os.fspath(checkpoint)
    state = load_state_dict(checkpoint)
    classifier = state.get(CLASSIFIER_KEY)
    if classifier is None or classifier.ndim != 2 or classifier.shape[0] < 1:
        found = "no such key" if classifier is None else f"shape {tuple(classifier.shape)}"
        raise CheckpointError(f"{source} has no usable {CLASSIFIER_KEY} (num_classes, 14336) "
                              f"({found}); pass a whole-model MPANet checkpoint, not a backbone")
    check_frozen_bn_neck_bias(state, source)
    for key, value in state.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"{source}: {key} holds NaN or inf values; this checkpoint is "
                                  "broken, use one saved before training diverged")
    return state, int(classifier.shape[0])


def _problems(report, limit: int = 3) -> str:
    """The missing, unexpected and mis-shaped keys of a LoadReport, first ``limit`` of each."""
    parts = []
    for label, keys in (("missing", report.missing), ("unexpected", report.unexpected)):
        if keys:
            more = ", ..." if len(keys) > limit else ""
            parts.append(f"{len(keys)} {label}: " + ", ".join(keys[:limit]) + more)
    if report.mismatched:
        shown = ", ".join(f"{key} {tuple(got)} vs model {tuple(want)}"
                          for key, got, want in report.mismatched[:limit])
        parts.append(f"{len(report.mismatched)} of the wrong shape (Keras layout): {shown}"
                     + (", ..." if len(report.mismatched) > limit else ""))
    return "; ".join(parts)


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} exists and is not a folder; choose another --output")
    if output.is_dir() and any(p.name != locks.LOCK_FILE for p in output.iterdir()) \
            and not force:
        raise ConfigError(f"output folder {output} is not empty; choose another --output or pass "
                          "--force to replace it")


def _resolve_config(dataset, image_size) -> MPANetConfig:
    config = MPANetConfig.preset(dataset)
    if image_size is not None:
        height, width = parse_image_size(image_size) if isinstance(image_size, str) \
            else (int(image_size[0]), int(image_size[1]))
        config.model.image_height, config.model.image_width = height, width
        config.validate()
    return config


def _write_start_checkpoint(model, config: MPANetConfig, run_dir: Path) -> None:
    """A step-0 training checkpoint in the trainer's format, so ``train --resume`` fine-tunes the
    imported weights from epoch 1 with a fresh Adam (the optimizer the trainer builds)."""
    model.compile(optimizer=make_optimizer(config), jit_compile=bool(config.train.jit))
    model.optimizer.build(model.trainable_variables)
    CheckpointManager(run_dir).save(model, RunProgress().state())


def import_mpanet_checkpoint(checkpoint, output_dir, dataset="sysu", force: bool = False,
                             image_size=None) -> Path:
    """Build the full MPANet from an authors' checkpoint and write it as a run folder.

    Args:
        checkpoint: ``.pth`` file (zip or legacy format) of the authors' model.
        output_dir: the run folder to create, e.g. ``runs/mpanet-authors``.
        dataset: the :class:`~mpanet_tf.data.registry.DatasetSpec` (or registered name, ``"sysu"``)
            whose preset is written to ``config.json``.
        force: replace an existing non-empty ``output_dir``.
        image_size: optional ``(H, W)`` or ``"HxW"`` replacing the preset's input size (only
            ``model.image_height``/``image_width`` change; the weights do not depend on it).

    Returns:
        The absolute run folder.

    Raises:
        ConfigError: ``output_dir`` is a file, or not empty without ``force``; bad dataset or size;
            another process holds its lock (``FolderInUseError``).
        CheckpointError: the file is unreadable, unsafe, not a state dict, or does not match the
            model (missing, unexpected or mis-shaped tensors, non-zero ``bn_neck.bias``).
    """
    checkpoint = Path(checkpoint).expanduser().absolute()
    output = Path(output_dir).expanduser().absolute()
    _check_output(output, force)
    config = _resolve_config(dataset, image_size)
    with locks.folder_lock(output, "import-torch output folder"):
        _check_output(output, force)  # again, now that no other process can write it
        return _import(checkpoint, output, config)


def _import(checkpoint: Path, output: Path, config: MPANetConfig) -> Path:
    """The import itself, under the output folder's lock."""
    state, num_classes = read_authors_state(checkpoint)
    digest = sha256_of(checkpoint)
    config.model.backbone_weights = str(checkpoint)

    model = build_model(config, num_classes)
    report = apply_state_dict(state, mpanet_torch_mapping(model), ignore=IGNORED_KEYS,
                              strict=False, source=str(checkpoint))
    if not report.complete:
        raise CheckpointError(f"{checkpoint} is not the authors' MPANet layout ({_problems(report)}); "
                              "pass the whole-model state dict of DoubtedSteam/MPANet (334 tensors: "
                              "backbone.*, spatial_attention.*, bn_neck.*, five classifiers)")
    init = {"spec": "import-torch", "path": str(checkpoint), "sha256": digest,
            "loaded": len(report.loaded), "ignored": list(report.ignored)}
    meta = {
        "num_classes": num_classes,
        "dataset": config.data.dataset,
        "status": "imported",
        "backbone_init": init,
        "backbone_weights": str(checkpoint),
        "backbone_weights_sha256": digest,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with staging_folder(output) as staging:
        atomic.atomic_write_json(staging / run_folder.CONFIG_FILE, config.to_dict())
        atomic.atomic_write_json(staging / run_folder.RUN_FILE, meta)
        model.save(staging / run_folder.FINAL_MODEL)
        _write_start_checkpoint(model, config, staging)
        replace_folder(staging, output)
    return output
