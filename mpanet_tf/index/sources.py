"""What a gallery index is built from: a folder of images, or a split of a dataset.

Each image becomes one entry ``{"path", "person_id", "camera", "modality"}`` with an absolute
path. A plain folder says nothing about who is in an image: identity, camera and modality are
null. A dataset split carries its readers' labels (:mod:`mpanet_tf.data.records`): the raw person
id, the camera, and ``"infrared"`` for cameras 3 and 6 (RegDB thermal) else ``"visible"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mpanet_tf.data.image_files import find_images
from mpanet_tf.data.registry import get_dataset, load_dataset
from mpanet_tf.errors import ConfigError

#: Dataset splits ``index build --split`` accepts.
SPLITS = ("gallery", "query", "train", "all")


def folder_entries(folder) -> tuple[list[dict], dict]:
    """(entries, source description) of every image under ``folder`` (sorted, as ``search --gallery``)."""
    paths = find_images(folder, "image")
    entries = [{"path": os.path.abspath(p), "person_id": None, "camera": None, "modality": None} for p in paths]
    return entries, {"kind": "folder", "path": os.path.abspath(os.path.expanduser(os.fspath(folder)))}


def _split_records(dataset, split: str, name: str):
    """``train``/``all`` records, or the query or gallery side of the dataset protocol's test split."""
    if split == "train":
        return dataset.train_records()
    if split == "all":
        return dataset.all_records()
    query, gallery = get_dataset(name).get_protocol().test_split(dataset)
    return query if split == "query" else gallery


def dataset_entries(name: str, data_root, split: str = "gallery", trial: int = 1) -> tuple[list[dict], dict]:
    """(entries, source description) of a dataset split.

    ``split``: ``gallery`` (SYSU: the visible all-search gallery pool of the test ids; RegDB: the
    visible test images of ``trial``), ``query`` (SYSU: infrared test images; RegDB: thermal test
    images), ``train`` or ``all``.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown --split {split!r}; choose one of {', '.join(SPLITS)}")
    key = str(name).lower()
    dataset = load_dataset(key, data_root, trial=trial)
    entries = [{"path": os.path.abspath(r.path), "person_id": int(r.person_id), "camera": int(r.camera),
                "modality": "infrared" if r.infrared else "visible"} for r in _split_records(dataset, split, key)]
    source = {"kind": "dataset", "name": key, "root": os.fspath(Path(dataset.root).absolute()), "split": split}
    if key == "regdb":
        source["trial"] = int(trial)
    return entries, source


def resolve_entries(images=None, dataset: str | None = None, data_root=None, split: str = "gallery",
                    trial: int = 1) -> tuple[list[dict], dict]:
    """Entries of exactly one source: ``images`` (a folder) or ``dataset`` with ``data_root``."""
    if (images is None) == (dataset is None):
        raise ConfigError("pass exactly one image source: --images DIR, or --dataset NAME with --data-root ROOT")
    if images is not None:
        return folder_entries(images)
    if data_root is None:
        raise ConfigError(f"--dataset {dataset} needs --data-root, the dataset folder")
    return dataset_entries(dataset, data_root, split, trial)
