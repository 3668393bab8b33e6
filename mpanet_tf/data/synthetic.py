"""Synthetic SYSU-MM01 and RegDB trees with procedurally drawn pedestrians.

The trees have the real layouts (design.md §4.1, §4.2), so every reader, the sampler, the pipeline and
the evaluators run on them unchanged: tests, the quickstart and benchmarks use them when the real
datasets are absent. The people are drawn by :mod:`mpanet_tf.data.synthetic_draw`: colour in
visible cameras, material-driven grey in infrared ones, identity nuances visible in both.

Output depends only on the arguments: the same seed gives byte-identical files (every image has
its own random stream keyed by (seed, id, camera, image number), and the ``.mat`` header carries
no time stamp).

SYSU tree: ids 1..N, split about 60/10/30 % into ``exp/train_id.txt``, ``val_id.txt``,
``test_id.txt`` (shuffled order, one line of comma-separated ids); ``images_per_camera`` images
per (camera, id) cell, except that some identities are absent from one camera (their identity
folder exists but is empty; id 2 always is), never from both infrared cameras or both indoor
visible cameras; ``exp/rand_perm_cam.mat`` in the official structure with, for every (camera, id)
cell that has images, 10 rows each a permutation of 1..n.

RegDB tree: ids 1..N with ``images_per_modality`` visible and thermal ``.bmp`` images each, and
``idx/{train,test}_{visible,thermal}_{1..10}.txt``, each trial a different random half/half id
split.
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
from PIL import Image

from mpanet_tf.data.sysu import CAMERAS, write_rand_perm_cam
from mpanet_tf.data.synthetic_draw import random_look, random_pose, render_person
from mpanet_tf.errors import ConfigError

SYSU_FOLDERS = tuple(f"cam{c}" for c in CAMERAS) + ("exp",)
REGDB_FOLDERS = ("Visible", "Thermal", "idx")
JPEG_QUALITY = 92
PERM_TRIALS = 10

# Stream tags: every random decision has its own stream keyed by (seed, tag, ...).
_SPLIT, _LOOK, _IMAGE, _PERM, _TRIAL = range(5)


#: The most identities a synthetic tree may have, and the most images it may hold in all: 10^6
#: images of 96x48 take about 3 GB and an hour to draw; more is not a test set but a mistake
#: (``--ids 10**9`` was killed at 24 GB, ``--images-per-camera 10**9`` wrote without end).
MAX_SYNTH_IDS = 100_000
MAX_SYNTH_IMAGES = 1_000_000


def _check(ids: int, min_ids: int, images: int, size, cells: int = 6) -> tuple[int, int]:
    """(height, width) once the counts are checked before anything is written: at least
    ``min_ids`` ids and one image, at most :data:`MAX_SYNTH_IDS` ids and :data:`MAX_SYNTH_IMAGES`
    images, counting ``ids * images * cells`` (``cells``: the most camera/modality cells an id fills)."""
    if int(ids) < min_ids:
        raise ConfigError(f"the synthetic layout needs at least {min_ids} ids, got {ids}")
    if int(ids) > MAX_SYNTH_IDS:
        raise ConfigError(f"--ids must be at most {MAX_SYNTH_IDS}, got {ids}")
    if int(images) < 1:
        raise ConfigError(f"images per camera must be >= 1, got {images}")
    height, width = (int(v) for v in size)
    if height < 32 or width < 16:
        raise ConfigError(f"synthetic image size must be at least 32x16 (HxW), got {height}x{width}")
    total = int(ids) * int(images) * int(cells)
    if total > MAX_SYNTH_IMAGES:
        raise ConfigError(f"--ids {ids} with --images-per-camera {images} would write up to {total:,} images "
                          f"(about {total * height * width * 3 / 8 / 1e9:,.1f} GB as JPEG), more than the "
                          f"{MAX_SYNTH_IMAGES:,} a synthetic tree may hold; lower --ids or --images-per-camera")
    return height, width


def _prepare(out, owned: tuple[str, ...], overwrite: bool) -> pathlib.Path:
    """Create ``out``; refuse (or, with ``overwrite``, delete) the generator's own folders in it."""
    root = pathlib.Path(out).expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"output {root} exists and is not a folder; choose another --out")
    present = [name for name in owned if (root / name).exists()]
    if present and not overwrite:
        raise ConfigError(f"{root} already holds {present[0]}/; choose an empty folder or pass --force")
    for name in present:
        target = root / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *key])


def _absent_cameras(ids: list[int], seed: int) -> dict[int, int]:
    """{pid: camera the identity is absent from} for about a quarter of the ids, always id 2."""
    rng = _rng(seed, _SPLIT, 1)
    absent = {}
    for pid in ids:
        draw_absent, camera = rng.random(), int(rng.choice(CAMERAS))
        if draw_absent < 0.25 or pid == 2:
            absent[pid] = camera
    return absent


def _split_ids(ids: list[int], seed: int) -> tuple[list[int], list[int], list[int]]:
    """Shuffled ids cut about 60/10/30 % into train / val / test (each at least one id)."""
    order = [int(p) for p in _rng(seed, _SPLIT, 0).permutation(ids)]
    n_test = max(1, int(round(0.3 * len(ids))))
    n_val = max(1, int(round(0.1 * len(ids))))
    return order[n_test + n_val:], order[n_test:n_test + n_val], order[:n_test]


def generate_sysu(out, ids: int = 24, images_per_camera: int = 4, seed: int = 0,
                  size: tuple[int, int] = (96, 48), overwrite: bool = False) -> pathlib.Path:
    """Write a synthetic SYSU-MM01 tree under ``out`` and return its absolute root.

    Args:
        out: output folder (created). Its ``cam1..cam6`` and ``exp`` must not exist unless
            ``overwrite``, which deletes them first; other files are left alone.
        ids: number of identities (>= 3), ids 1..ids.
        images_per_camera: images per (camera, id) cell that is not empty.
        seed: random seed; the same seed gives byte-identical files.
        size: image size (H, W).

    The default tree (24 ids, 4 images, 96x48) takes a few seconds to write.
    """
    height, width = _check(ids, 3, images_per_camera, size)
    root = _prepare(out, SYSU_FOLDERS, overwrite)
    all_ids = list(range(1, int(ids) + 1))
    absent = _absent_cameras(all_ids, seed)
    perms = {}
    for pid in all_ids:
        look = random_look(_rng(seed, _LOOK, pid))
        for camera in CAMERAS:
            folder = root / f"cam{camera}" / f"{pid:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            if absent.get(pid) == camera:
                continue
            for number in range(1, int(images_per_camera) + 1):
                rng = _rng(seed, _IMAGE, pid, camera, number)
                pixels = render_person(look, random_pose(rng), camera, (height, width), rng)
                Image.fromarray(pixels).save(folder / f"{number:04d}.jpg", quality=JPEG_QUALITY)
            perm_rng = _rng(seed, _PERM, pid, camera)
            perms[(camera, pid)] = np.stack(
                [perm_rng.permutation(int(images_per_camera)) + 1 for _ in range(PERM_TRIALS)])
    train, val, test = _split_ids(all_ids, seed)
    exp = root / "exp"
    exp.mkdir(exist_ok=True)
    for name, split in (("train_id.txt", train), ("val_id.txt", val), ("test_id.txt", test)):
        (exp / name).write_text(",".join(str(p) for p in split) + "\n", encoding="utf-8")
    write_rand_perm_cam(exp / "rand_perm_cam.mat", perms, num_ids=int(ids))
    return root


def generate_regdb(out, ids: int = 20, images_per_modality: int = 10, seed: int = 0,
                   size: tuple[int, int] = (64, 32), overwrite: bool = False) -> pathlib.Path:
    """Write a synthetic RegDB tree under ``out`` and return its absolute root.

    Args:
        out: output folder (created). Its ``Visible``, ``Thermal`` and ``idx`` must not exist
            unless ``overwrite``, which deletes them first.
        ids: number of identities (>= 2), ids 1..ids; each trial trains on ids // 2 of them.
        images_per_modality: visible and thermal images per identity.
        seed: random seed; the same seed gives byte-identical files.
        size: image size (H, W).
    """
    height, width = _check(ids, 2, images_per_modality, size, cells=2)
    root = _prepare(out, REGDB_FOLDERS, overwrite)
    all_ids = list(range(1, int(ids) + 1))
    names = {}
    for pid in all_ids:
        look_rng = _rng(seed, _LOOK, pid)
        look = random_look(look_rng)
        stem = f"{'female' if look_rng.random() < 0.5 else 'male'}_{'front' if look_rng.random() < 0.5 else 'back'}"
        for folder, tag, camera in (("Visible", "v", 2), ("Thermal", "t", 3)):
            (root / folder / str(pid)).mkdir(parents=True, exist_ok=True)
            for number in range(1, int(images_per_modality) + 1):
                rng = _rng(seed, _IMAGE, pid, camera, number)
                relpath = f"{folder}/{pid}/{stem}_{tag}_{pid:05d}_{number}.bmp"
                Image.fromarray(render_person(look, random_pose(rng), camera, (height, width), rng)).save(
                    root / relpath)
                names.setdefault((pid, folder), []).append(relpath)
    idx = root / "idx"
    idx.mkdir(exist_ok=True)
    for trial in range(1, 11):
        order = [int(p) for p in _rng(seed, _TRIAL, trial).permutation(all_ids)]
        splits = {"train": sorted(order[:len(order) // 2]), "test": sorted(order[len(order) // 2:])}
        for split, split_ids in splits.items():
            for modality, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                lines = [f"{relpath} {label}" for label, pid in enumerate(split_ids)
                         for relpath in names[(pid, folder)]]
                (idx / f"{split}_{modality}_{trial}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _given(**values) -> dict:
    """The arguments a caller set (None: the generator's default)."""
    return {key: value for key, value in values.items() if value is not None}


def synthesize_sysu(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout sysu``: :func:`generate_sysu` (None arguments: its defaults)."""
    return generate_sysu(out, seed=seed, overwrite=overwrite, **_given(ids=ids, images_per_camera=images, size=size))


def synthesize_regdb(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout regdb``: :func:`generate_regdb` (None arguments: its defaults)."""
    return generate_regdb(out, seed=seed, overwrite=overwrite,
                          **_given(ids=ids, images_per_modality=images, size=size))
