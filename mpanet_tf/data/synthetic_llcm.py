"""A synthetic LLCM tree: the real layout (design.md §12) with night-like visible images.

Layout written (as the release: training images in ``vis/`` and ``nir/`` named
``<id:04d>_c<cc>_s<scene>_f<frame>_<vis|nir>.jpg``, listed by the idx files)::

    idx/train_vis.txt, idx/train_nir.txt   "<relative path> <label>", labels 0..N-1 over sorted train ids
    idx/test_id.txt                        one line of comma-separated test ids
    vis/<id:04d>/..., nir/<id:04d>/...     training images
    test_vis/cam1..cam9/<id:04d>/...       visible test images
    test_nir/cam1,2,4..9/<id:04d>/...      near-infrared test images (no cam3)

Ids 1..N; about a third (at least one) are test ids. Each identity is seen by a random subset of
the cameras in each modality (at least two per modality, so uneven cameras and missing folders
occur, as in LLCM), ``images_per_camera`` images per (camera, id).

People are drawn by :mod:`mpanet_tf.data.synthetic_draw`. Near-infrared images use its infrared
rendering (grey, material-driven). Visible images are rendered in colour and then made night-like
(:func:`night_visible`): a low exposure, reduced contrast, a per-camera colour cast (sodium-orange,
cold blue-green, ...), a gamma lift and strong sensor noise. Output depends only on the arguments.
"""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from mpanet_tf.data.llcm import INFRARED_CAMERAS, VISIBLE_CAMERAS
from mpanet_tf.data.synthetic import JPEG_QUALITY, _check, _given, _prepare, _rng
from mpanet_tf.data.synthetic_draw import random_look, random_pose, render_person

LLCM_FOLDERS = ("idx", "vis", "nir", "test_vis", "test_nir")
#: Night colour cast per LLCM camera (R, G, B gains): street lamps, LED, mixed light.
NIGHT_CAST = {1: (1.35, 1.0, 0.55), 2: (0.8, 1.0, 1.3), 3: (1.2, 1.05, 0.7), 4: (0.9, 1.15, 0.95),
              5: (1.4, 0.95, 0.6), 6: (0.85, 0.95, 1.25), 7: (1.1, 1.1, 0.8), 8: (1.25, 0.9, 0.85),
              9: (0.95, 1.05, 1.15)}
#: The SYSU-style scene of synthetic_draw used for each LLCM camera (visible) and its infrared look.
_SCENE_CAMERA = {c: (1, 2, 4, 5)[c % 4] for c in VISIBLE_CAMERAS}
_THERMAL_CAMERA = {c: (3, 6)[c % 2] for c in INFRARED_CAMERAS}

_SPLIT, _LOOK, _IMAGE, _CAMERAS = 10, 11, 12, 13   # stream tags, distinct from synthetic.py's


def night_visible(image: np.ndarray, camera: int, rng: np.random.Generator) -> np.ndarray:
    """Make a well-lit visible rendering night-like: uint8 (H, W, 3) -> uint8 (H, W, 3).

    Exposure 0.22-0.4, contrast pulled 35 % towards the mean, the camera's cast, gamma 0.8 lift of
    the shadows, Gaussian noise sigma 6-10 (per channel, per pixel).
    """
    pixels = image.astype(np.float64) / 255.0
    pixels = pixels * rng.uniform(0.22, 0.4)
    pixels = pixels + 0.35 * (pixels.mean() - pixels)
    pixels = pixels * np.asarray(NIGHT_CAST[int(camera)])
    pixels = np.clip(pixels, 0.0, 1.0) ** 0.8
    pixels = 255.0 * pixels + rng.normal(0.0, rng.uniform(6.0, 10.0), pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _render(look, camera: int, infrared: bool, size, rng) -> np.ndarray:
    pose = random_pose(rng)
    if infrared:
        return render_person(look, pose, _THERMAL_CAMERA[camera], size, rng)
    return night_visible(render_person(look, pose, _SCENE_CAMERA[camera], size, rng), camera, rng)


def _camera_subsets(pid: int, seed: int) -> dict[bool, tuple[int, ...]]:
    """{infrared: sorted cameras seeing ``pid``}: 2..5 cameras per modality."""
    rng = _rng(seed, _CAMERAS, pid)
    subsets = {}
    for infrared, cameras in ((False, VISIBLE_CAMERAS), (True, INFRARED_CAMERAS)):
        count = int(rng.integers(2, 6))
        subsets[infrared] = tuple(sorted(int(c) for c in rng.choice(cameras, size=count, replace=False)))
    return subsets


def generate_llcm(out, ids: int = 24, images_per_camera: int = 2, seed: int = 0,
                  size: tuple[int, int] = (96, 48), overwrite: bool = False) -> pathlib.Path:
    """Write a synthetic LLCM tree under ``out`` and return its absolute root.

    Args:
        out: output folder (created). Its ``idx``, ``vis``, ``nir``, ``test_vis`` and ``test_nir``
            must not exist unless ``overwrite``, which deletes them first; other files are left alone.
        ids: number of identities (>= 2), ids 1..ids; round(ids / 3) (at least 1) are test ids.
        images_per_camera: images per (camera, id) of every camera that sees the identity.
        seed: random seed; the same seed gives byte-identical files.
        size: image size (H, W).
    """
    height, width = _check(ids, 2, images_per_camera, size, cells=len(VISIBLE_CAMERAS) + len(INFRARED_CAMERAS))
    root = _prepare(out, LLCM_FOLDERS, overwrite)
    all_ids = list(range(1, int(ids) + 1))
    order = [int(p) for p in _rng(seed, _SPLIT).permutation(all_ids)]
    n_test = min(max(1, int(round(len(all_ids) / 3))), len(all_ids) - 1)
    test_ids, train_ids = sorted(order[:n_test]), sorted(order[n_test:])
    labels = {pid: index for index, pid in enumerate(train_ids)}
    lists = {False: [], True: []}
    for pid in all_ids:
        look = random_look(_rng(seed, _LOOK, pid))
        for infrared, cameras in _camera_subsets(pid, seed).items():
            tag = "nir" if infrared else "vis"
            for camera in cameras:
                if pid in labels:
                    folder = root / tag / f"{pid:04d}"
                else:
                    folder = root / f"test_{tag}" / f"cam{camera}" / f"{pid:04d}"
                folder.mkdir(parents=True, exist_ok=True)
                for number in range(1, int(images_per_camera) + 1):
                    rng = _rng(seed, _IMAGE, pid, camera, int(infrared), number)
                    name = f"{pid:04d}_c{camera:02d}_s{100 + camera}_f{number:04d}_{tag}.jpg"
                    Image.fromarray(_render(look, camera, infrared, (height, width), rng)).save(
                        folder / name, quality=JPEG_QUALITY)
                    if pid in labels:
                        lists[infrared].append(f"{tag}/{pid:04d}/{name} {labels[pid]}")
    idx = root / "idx"
    idx.mkdir(exist_ok=True)
    (idx / "train_vis.txt").write_text("\n".join(lists[False]) + "\n", encoding="utf-8")
    (idx / "train_nir.txt").write_text("\n".join(lists[True]) + "\n", encoding="utf-8")
    (idx / "test_id.txt").write_text(",".join(str(p) for p in test_ids) + "\n", encoding="utf-8")
    for folder in ("test_vis", "test_nir"):
        (root / folder).mkdir(exist_ok=True)
    return root


def synthesize_llcm(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout llcm``: :func:`generate_llcm` (None arguments: its defaults)."""
    return generate_llcm(out, seed=seed, overwrite=overwrite, **_given(ids=ids, images_per_camera=images, size=size))
