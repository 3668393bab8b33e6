"""``manifest --from-folders``: a manifest (:mod:`mpanet_tf.data.manifest`) from a folder tree.

Input tree::

    DIR/visible/<person>/<camera>_<anything>.<ext>
    DIR/infrared/<person>/<camera>_<anything>.<ext>

The person is the folder name, the camera the file name up to its first ``_`` (so ``gate_0001.jpg``
and ``gate_night_2.png`` are both camera ``gate``; a camera name is shared by both modalities when
one camera films both). Only image files count (``.jpg .jpeg .png .bmp``; hidden files skipped).

Split (deterministic for a given set of person names and seed):

1. Persons with images of both modalities are sorted in natural order
   (:func:`~mpanet_tf.data.manifest.natural_key`), shuffled by ``random.Random(seed)``, and the first
   ``round(test_fraction * n)`` become test persons (at least one when ``test_fraction > 0``, and at
   least one training person is kept when ``test_fraction < 1``); the rest are training persons.
2. Test persons' images of ``query_modality`` become ``query`` rows, their other images ``gallery`` rows.
3. Persons with images of one modality only cannot be trained on (the sampler needs both) nor
   matched across modalities: those with gallery-modality images only become gallery
   *distractors*; those with query-modality images only are left out. The summary counts both.

Rows are written sorted by (modality, person, file name) with paths relative to the manifest's
folder, to a temporary file that is renamed into place (never half a manifest).
"""

from __future__ import annotations

import csv
import os
import pathlib
import random

from mpanet_tf.data.manifest import COLUMNS, MODALITIES, natural_key
from mpanet_tf.data.records import is_image_name
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.io.atomic import atomic_open


def scan_folders(folder) -> dict[str, dict[str, list[tuple[str, pathlib.Path]]]]:
    """{modality: {person: [(camera, image path), ...] sorted by file name}} of a folder tree.

    Raises:
        DatasetError: the tree or a modality folder is missing, a file name has no ``_`` after
            its camera, or no image is found.
    """
    root = pathlib.Path(os.path.expanduser(os.fspath(folder))).absolute()
    layout = "DIR/visible/<person>/<camera>_<anything>.<ext> and DIR/infrared/<person>/..."
    if not root.is_dir():
        raise DatasetError(f"folder {root} does not exist; pass a folder laid out as {layout}")
    tree: dict[str, dict[str, list]] = {}
    for modality in MODALITIES:
        base = root / modality
        if not base.is_dir():
            raise DatasetError(f"folder {base} is missing; the tree must hold {layout}")
        persons: dict[str, list] = {}
        for person_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            images = []
            for image in sorted(p for p in person_dir.iterdir() if p.is_file() and is_image_name(p.name)):
                camera = image.name.split("_", 1)[0]
                if "_" not in image.name or not camera:
                    raise DatasetError(f"image {image} is not named <camera>_<anything>.<ext>; rename it "
                                       "(for example gate_0001.jpg) so its camera can be read")
                images.append((camera, image))
            if images:
                persons[person_dir.name] = images
        tree[modality] = persons
    if not any(tree.values()):
        raise DatasetError(f"no image found under {root}; the tree must hold {layout}")
    return tree


def _check_options(test_fraction: float, query_modality: str) -> None:
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ConfigError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    if query_modality not in MODALITIES:
        raise ConfigError(f"--query-modality must be 'infrared' or 'visible', got {query_modality!r}")


def split_persons(persons, test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(train persons, test persons), both in natural order: the seeded identity-disjoint split."""
    order = sorted(persons, key=natural_key)
    random.Random(int(seed)).shuffle(order)
    n_test = int(round(float(test_fraction) * len(order)))
    if test_fraction > 0 and order:
        n_test = max(n_test, 1)
    if test_fraction < 1 and len(order) > 1:
        n_test = min(n_test, len(order) - 1)
    return sorted(order[n_test:], key=natural_key), sorted(order[:n_test], key=natural_key)


def write_manifest_from_folders(folder, output, test_fraction: float = 0.3, seed: int = 0,
                                query_modality: str = "infrared", overwrite: bool = False) -> dict:
    """Write a manifest CSV for a ``DIR/{visible,infrared}/<person>/<camera>_*.<ext>`` tree.

    Args:
        folder: the tree (see the module docstring).
        output: the CSV file to write; its folder is created. Paths in it are relative to that folder.
        test_fraction: share of the two-modality persons that become query/gallery persons (0..1).
        seed: seed of the split.
        query_modality: ``"infrared"`` (default: infrared queries, visible gallery) or ``"visible"``.
        overwrite: replace an existing ``output``.

    Returns:
        a summary: ``{"output", "rows", "train_persons", "test_persons", "distractor_persons",
        "left_out_persons", "train", "query", "gallery"}``.
    """
    _check_options(test_fraction, query_modality)
    output = pathlib.Path(os.path.expanduser(os.fspath(output))).absolute()
    if output.exists() and not overwrite:
        raise ConfigError(f"{output} already exists; choose another --output or pass --force")
    if output.exists() and not output.is_file():
        raise ConfigError(f"{output} is not a file; choose another --output")
    tree = scan_folders(folder)
    gallery_modality = "visible" if query_modality == "infrared" else "infrared"
    both = set(tree["visible"]) & set(tree["infrared"])
    train, test = split_persons(both, test_fraction, seed)
    distractors = sorted(set(tree[gallery_modality]) - both, key=natural_key)
    left_out = sorted(set(tree[query_modality]) - both, key=natural_key)
    role = {person: "train" for person in train}
    role.update({person: "test" for person in test + distractors})

    base = output.parent
    rows = []
    for modality in MODALITIES:
        for person in sorted(tree[modality], key=natural_key):
            if person not in role:
                continue
            split = role[person]
            if split == "test":
                split = "query" if modality == query_modality else "gallery"
            for camera, image in tree[modality][person]:
                rows.append((pathlib.Path(os.path.relpath(image, base)).as_posix(), person, camera, modality, split))
    if not rows:
        raise DatasetError(f"no person under {folder} has images of both modalities; a manifest needs visible "
                           "and infrared images of the same persons")

    with atomic_open(output, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    splits = [row[4] for row in rows]
    return {"output": str(output), "rows": len(rows), "train_persons": len(train), "test_persons": len(test),
            "distractor_persons": len(distractors), "left_out_persons": len(left_out),
            "train": splits.count("train"), "query": splits.count("query"), "gallery": splits.count("gallery")}
