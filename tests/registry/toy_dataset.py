"""A toy dataset's reader and tree writer, defined entirely under tests/.

Layout::

    TOY/{train,test}/<person id>/{vis,ir}_<n>.png

Visible images are camera 1, infrared images camera 3 (the project's cam-3/6 infrared rule).
Train labels are 0..N-1 over the sorted train ids. Its protocol and its
:class:`~mpanet_tf.data.registry.DatasetSpec` (``TOY``) live in :mod:`tests.registry.toy_protocol`,
as a built-in dataset's do in its ``eval/<name>_protocol.py``.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image

from mpanet_tf.data.records import ImageRecord, is_image_name, make_record, resolve_root
from mpanet_tf.errors import DatasetError

VISIBLE_CAMERA, INFRARED_CAMERA = 1, 3
SIZE = (64, 32)


class ToyDataset:
    """The toy layout, validated when constructed (one split)."""

    def __init__(self, root):
        self.root = resolve_root(root, "TOY", "write one with tests.registry.toy_dataset.write_toy_tree")
        self._split = {name: self._scan(name) for name in ("train", "test")}
        self.train_ids = sorted({r.person_id for r in self._split["train"]})
        self.test_ids = sorted({r.person_id for r in self._split["test"]})
        labels = {pid: index for index, pid in enumerate(self.train_ids)}
        self._split["train"] = [make_record(self.root, r.relpath, r.person_id, r.camera, labels[r.person_id])
                                for r in self._split["train"]]

    def _scan(self, split: str) -> list[ImageRecord]:
        folder = self.root / split
        if not folder.is_dir():
            raise DatasetError(f"TOY folder {folder} is missing; write the tree with write_toy_tree")
        records = []
        for person in sorted(os.listdir(folder), key=lambda name: int(name)):
            for name in sorted(os.listdir(folder / person)):
                if is_image_name(name):
                    camera = INFRARED_CAMERA if name.startswith("ir_") else VISIBLE_CAMERA
                    records.append(make_record(self.root, f"{split}/{person}/{name}", int(person), camera))
        return records

    def train_records(self) -> list[ImageRecord]:
        return list(self._split["train"])

    def test_records(self, infrared: bool) -> list[ImageRecord]:
        return [r for r in self._split["test"] if r.infrared == infrared]

    def all_records(self) -> list[ImageRecord]:
        return self.train_records() + list(self._split["test"])

    def counts(self) -> dict:
        return {"train_ids": len(self.train_ids), "train_images": len(self._split["train"]),
                "test_ids": len(self.test_ids), "test_visible": len(self.test_records(False)),
                "test_infrared": len(self.test_records(True))}


def write_toy_tree(out, train_ids=(1, 2, 3, 4), test_ids=(7, 8, 9), per_modality: int = 2, seed: int = 0):
    """Write a toy tree: per identity one colour (visible) and one grey level (infrared), plus noise."""
    rng = np.random.default_rng(seed)
    out = pathlib.Path(out)
    for split, ids in (("train", train_ids), ("test", test_ids)):
        for pid in ids:
            colour = rng.integers(0, 256, size=3)
            folder = out / split / str(pid)
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_modality):
                noise = rng.integers(-20, 21, size=(*SIZE, 3))
                visible = np.clip(colour + noise, 0, 255).astype(np.uint8)
                infrared = np.repeat(visible.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
                Image.fromarray(visible).save(folder / f"vis_{n}.png")
                Image.fromarray(infrared).save(folder / f"ir_{n}.png")
    return out.absolute()


def synthesize_toy(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout toy``: :func:`write_toy_tree` with ``images`` images per modality."""
    return write_toy_tree(out, per_modality=images or 2, seed=seed)
