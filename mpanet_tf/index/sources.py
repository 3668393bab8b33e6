"""What a gallery index is built from: a folder of images, or a split of a dataset.

Each image becomes one entry ``{"path", "person_id", "camera", "modality"}`` with an absolute
path. A plain folder says nothing about who is in an image: identity, camera and modality are
null. A dataset split carries its reader's labels (:mod:`mpanet_tf.data.records`): the raw person
id, the camera, and the record's modality (``"infrared"`` or ``"visible"``); the dataset's
protocol says which records a split holds.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.data.image_files import find_images
from mpanet_tf.errors import ConfigError

#: Dataset splits ``index build --split`` accepts.
SPLITS = ("gallery", "query", "train", "all")


def folder_entries(folder) -> tuple[list[dict], dict]:
    """(entries, source description) of every image under ``folder`` (sorted, as ``search --gallery``)."""
    paths = find_images(folder, "image")
    entries = [{"path": os.path.abspath(p), "person_id": None, "camera": None, "modality": None} for p in paths]
    return entries, {"kind": "folder", "path": os.path.abspath(os.path.expanduser(os.fspath(folder)))}


def dataset_entries(dataset, data_root, split: str = "gallery", trial: int = 1,
                    options: dict | None = None) -> tuple[list[dict], dict]:
    """(entries, source description) of a dataset split.

    Args:
        dataset: the dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`.
        split: ``gallery`` / ``query`` (the sides of its protocol's test split), ``train`` or ``all``
            (:meth:`~mpanet_tf.eval.protocol.EvalProtocol.index_records`).
        trial: the split of a dataset that ships several (kept in the source description).
        options: ``{dest: value}`` of the protocol's ``index_options`` (missing ones: defaults;
            kept in the source description when there are any).
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown --split {split!r}; choose one of {', '.join(SPLITS)}")
    protocol = dataset.get_protocol()
    options = {**protocol.option_defaults("index_options"), **(options or {})}
    reader = dataset.load(data_root, trial=dataset.check_split(trial))
    entries = [{"path": os.path.abspath(r.path), "person_id": int(r.person_id), "camera": int(r.camera),
                "modality": "infrared" if r.infrared else "visible"}
               for r in protocol.index_records(reader, split, options)]
    source = {"kind": "dataset", "name": dataset.name, "root": os.fspath(Path(reader.root).absolute()), "split": split}
    if dataset.splits:
        source["trial"] = int(trial)
    if options:
        source["options"] = dict(options)
    return entries, source


def resolve_entries(images=None, dataset=None, data_root=None, split: str = "gallery", trial: int = 1,
                    options: dict | None = None) -> tuple[list[dict], dict]:
    """Entries of exactly one source: ``images`` (a folder) or ``dataset`` (a
    :class:`~mpanet_tf.data.registry.DatasetSpec`) with ``data_root``."""
    if (images is None) == (dataset is None):
        raise ConfigError("pass exactly one image source: --images DIR, or --dataset NAME with --data-root ROOT")
    if images is not None:
        return folder_entries(images)
    if data_root is None:
        raise ConfigError(f"--dataset {dataset.name} needs --data-root, the dataset folder")
    return dataset_entries(dataset, data_root, split, trial, options)
