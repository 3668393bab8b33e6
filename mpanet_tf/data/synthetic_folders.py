"""A synthetic "own cameras" folder tree, the input of ``manifest --from-folders``.

Layout written::

    OUT/visible/<person>/<camera>_<nnnn>.jpg     cameras gate, lobby, yard
    OUT/infrared/<person>/<camera>_<nnnn>.jpg    cameras gate, yard (they film both modalities)

Persons are named ``p001``, ``p002``, ...; each is seen by at least two visible cameras and one or
two infrared cameras, ``images_per_camera`` images each. People are drawn by
:mod:`mpanet_tf.data.synthetic_draw` (colour in visible cameras, grey material-driven intensity in
infrared ones). Output depends only on the arguments.
"""

from __future__ import annotations

import pathlib

from PIL import Image

from mpanet_tf.data.manifest_folders import write_manifest_from_folders
from mpanet_tf.data.synthetic import JPEG_QUALITY, _check, _given, _prepare, _rng
from mpanet_tf.data.synthetic_draw import random_look, random_pose, render_person

#: camera name -> the synthetic_draw camera that renders it, per modality.
VISIBLE_CAMERAS = {"gate": 1, "lobby": 2, "yard": 4}
INFRARED_CAMERAS = {"gate": 3, "yard": 6}
FOLDERS = ("visible", "infrared")

_LOOK, _IMAGE, _CAMERAS = 20, 21, 22   # stream tags, distinct from the other generators'


def generate_camera_folders(out, ids: int = 12, images_per_camera: int = 2, seed: int = 0,
                            size: tuple[int, int] = (96, 48), overwrite: bool = False) -> pathlib.Path:
    """Write ``OUT/{visible,infrared}/<person>/<camera>_<nnnn>.jpg`` and return the absolute ``OUT``.

    Args:
        out: output folder (created). Its ``visible`` and ``infrared`` must not exist unless
            ``overwrite``, which deletes them first.
        ids: number of persons (>= 2), named p001 .. p<ids>.
        images_per_camera: images per (person, camera, modality).
        seed: random seed; the same seed gives byte-identical files.
        size: image size (H, W).
    """
    height, width = _check(ids, 2, images_per_camera, size)
    root = _prepare(out, FOLDERS, overwrite)
    for number in range(1, int(ids) + 1):
        person = f"p{number:03d}"
        look = random_look(_rng(seed, _LOOK, number))
        pick = _rng(seed, _CAMERAS, number)
        visible = sorted(pick.choice(sorted(VISIBLE_CAMERAS), size=int(pick.integers(2, 4)), replace=False))
        infrared = sorted(pick.choice(sorted(INFRARED_CAMERAS), size=int(pick.integers(1, 3)), replace=False))
        for folder, cameras, table in (("visible", visible, VISIBLE_CAMERAS), ("infrared", infrared, INFRARED_CAMERAS)):
            target = root / folder / person
            target.mkdir(parents=True, exist_ok=True)
            for camera in cameras:
                for index in range(1, int(images_per_camera) + 1):
                    rng = _rng(seed, _IMAGE, number, table[camera], index)
                    pixels = render_person(look, random_pose(rng), table[camera], (height, width), rng)
                    Image.fromarray(pixels).save(target / f"{camera}_{index:04d}.jpg", quality=JPEG_QUALITY)
    return root


def synthesize_manifest(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout manifest``: a camera-folder tree (:func:`generate_camera_folders`) and its
    ``data.csv`` (:func:`~mpanet_tf.data.manifest_folders.write_manifest_from_folders`, 30 % test
    persons, infrared queries); returns the manifest path."""
    root = generate_camera_folders(out, seed=seed, overwrite=overwrite,
                                   **_given(ids=ids, images_per_camera=images, size=size))
    manifest = pathlib.Path(root) / "data.csv"
    write_manifest_from_folders(root, manifest, seed=seed, overwrite=True)
    return manifest
