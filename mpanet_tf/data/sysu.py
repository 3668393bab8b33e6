"""SYSU-MM01 on disk -> :class:`ImageRecord` lists, and the official gallery permutations.

Layout (design.md §4.1)::

    SYSU-MM01/cam{1..6}/{pid:04d}/{img:04d}.jpg
    SYSU-MM01/exp/train_id.txt, val_id.txt, test_id.txt   one line of comma-separated ids each
    SYSU-MM01/exp/rand_perm_cam.mat                       not shipped; official repo evaluation/data_split/

Visible cameras are 1, 2 (indoor), 4, 5 (outdoor); infrared cameras 3 (indoor) and 6 (outdoor).
Train = train ids + val ids (395 on the real data), test = 96 ids. Query = every infrared image of
the test ids; the gallery pool = every visible image of the test ids in cameras (1, 2, 4, 5)
("all") or (1, 2) ("indoor"); the evaluator samples it with :func:`load_rand_perm_cam` (design.md §5.1).

Where we differ from the authors' reader (MPANet data/dataset.py, a recursive glob of
``root/**/*.jpg``): images are listed per ``cam{c}/{pid:04d}/`` folder of the listed ids only, and
``.jpeg``/``.png``/``.bmp`` files count too. Non-image files and hidden files are skipped, an empty
identity folder means the identity is absent from that camera, and folders of unlisted ids are
ignored. Labels are the same: 0..N-1 in the order of ``train_id.txt`` followed by ``val_id.txt``
(design.md §3.2), over every listed id, also the ones without infrared images (the sampler leaves
those out of its identity pool). Test ids keep their raw ids.
"""

from __future__ import annotations

import io
import pathlib

import numpy as np

from mpanet_tf.data.records import (
    INFRARED_CAMERAS, ImageRecord, list_image_names, make_record, read_comma_separated_ids, resolve_root,
)
from mpanet_tf.errors import ConfigError, DatasetError

CAMERAS = (1, 2, 3, 4, 5, 6)
#: SYSU-MM01's visible cameras; its infrared ones are 3 and 6, the records' rule (:data:`INFRARED_CAMERAS`).
VISIBLE_CAMERAS = (1, 2, 4, 5)
INDOOR_CAMERAS = (1, 2)
GALLERY_CAMERAS = {"all": VISIBLE_CAMERAS, "indoor": INDOOR_CAMERAS}
SPLIT_FILES = ("train_id.txt", "val_id.txt", "test_id.txt")

_ROOT_HINT = "download SYSU-MM01 and pass its folder (the one holding cam1..cam6 and exp/) as --data-root"
_SPLIT_HINT = "the SYSU-MM01 download ships exp/train_id.txt, val_id.txt and test_id.txt; restore them"
_PERM_HINT = ("download rand_perm_cam.mat from the official SYSU-MM01 repository "
              "(github.com/wuancong/SYSU-MM01, evaluation/data_split/) into the dataset's exp/ folder")
#: A fixed MAT-file description, so that written files are byte-identical for identical input.
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, written by mpanet-tf".ljust(116, b" ")


def read_id_list(path: pathlib.Path) -> list[int]:
    """Ids of one split file: comma-separated positive integers (newlines count as commas).

    Raises:
        DatasetError: the file is missing, not text, holds a non-integer token or repeats an id.
    """
    return read_comma_separated_ids(path, "split file", _SPLIT_HINT, title="SYSU-MM01 split file")


class SYSUDataset:
    """The SYSU-MM01 layout, validated when constructed.

    Args:
        root: the dataset folder (holding ``cam1`` .. ``cam6`` and ``exp/``).
        skip_empty: False (default) raises :class:`DatasetError` for a listed id with no image in
            any camera; True drops such ids (they are kept in :attr:`empty_ids`) and labels the
            remaining train ids 0..N-1 in list order.

    Attributes:
        root: absolute dataset folder.
        train_ids: ``train_id.txt`` then ``val_id.txt`` ids, in file order; label i = train_ids[i].
        test_ids: ``test_id.txt`` ids in file order.
        rand_perm_path: ``root/exp/rand_perm_cam.mat``.

    Example:
        >>> data = SYSUDataset("datasets/SYSU-MM01")          # doctest: +SKIP
        >>> data.counts()["query"]                            # doctest: +SKIP
        3803
    """

    def __init__(self, root, skip_empty: bool = False):
        self.root = resolve_root(root, "SYSU-MM01", _ROOT_HINT)
        for camera in CAMERAS:
            folder = self.root / f"cam{camera}"
            if not folder.is_dir():
                raise DatasetError(
                    f"SYSU-MM01 camera folder {folder} is missing; every one of cam1..cam6 must exist "
                    f"under {self.root} (an empty folder is fine)")
        exp = self.root / "exp"
        lists = {name: read_id_list(exp / name) for name in SPLIT_FILES}
        self._check_disjoint(exp, lists)
        self._images = self._scan(lists)
        self.empty_ids: list[int] = []
        for name, ids in lists.items():
            empty = [pid for pid in ids if not self._has_any_image(pid)]
            if empty and not skip_empty:
                shown = ", ".join(str(pid) for pid in empty[:8]) + (" ..." if len(empty) > 8 else "")
                raise DatasetError(
                    f"ids {shown} listed in {exp / name} have no images in any of "
                    f"{self.root}/cam1..cam6 (looked in cam{{c}}/{empty[0]:04d}/); "
                    "restore the images or remove the ids from the file")
            self.empty_ids.extend(empty)
        keep = set(self.empty_ids)
        self.train_ids = [p for p in lists["train_id.txt"] + lists["val_id.txt"] if p not in keep]
        self.test_ids = [p for p in lists["test_id.txt"] if p not in keep]
        if not self.train_ids:
            raise DatasetError(f"{exp / 'train_id.txt'} and val_id.txt list no usable ids; {_SPLIT_HINT}")
        self.rand_perm_path = exp / "rand_perm_cam.mat"

    # ------------------------------------------------------------------ layout
    @staticmethod
    def _check_disjoint(exp: pathlib.Path, lists: dict[str, list[int]]) -> None:
        train, val, test = (set(lists[name]) for name in SPLIT_FILES)
        for (name_a, a), (name_b, b) in (
            (("train_id.txt", train), ("val_id.txt", val)),
            (("train_id.txt", train), ("test_id.txt", test)),
            (("val_id.txt", val), ("test_id.txt", test)),
        ):
            both = sorted(a & b)
            if both:
                raise DatasetError(
                    f"id {both[0]} is listed in both {exp / name_a} and {name_b}; "
                    "each id must belong to exactly one split")

    def _scan(self, lists: dict[str, list[int]]) -> dict[tuple[int, int], tuple[str, ...]]:
        """{(camera, pid): sorted image file names} for every listed id with images there."""
        images = {}
        ids = [pid for name in SPLIT_FILES for pid in lists[name]]
        for camera in CAMERAS:
            for pid in ids:
                names = list_image_names(self.root / f"cam{camera}" / f"{pid:04d}")
                if names:
                    images[(camera, pid)] = names
        return images

    def _has_any_image(self, pid: int) -> bool:
        return any((camera, pid) in self._images for camera in CAMERAS)

    def image_names(self, camera: int, person_id: int) -> tuple[str, ...]:
        """Sorted image file names of one (camera, identity) cell; empty when it has none."""
        return self._images.get((int(camera), int(person_id)), ())

    def image_path(self, camera: int, person_id: int, number: int) -> pathlib.Path:
        """``root/cam{c}/{pid:04d}/{n:04d}.jpg``: the file a 1-based permutation entry names (design.md §5.1)."""
        return self.root / f"cam{int(camera)}" / f"{int(person_id):04d}" / f"{int(number):04d}.jpg"

    # ----------------------------------------------------------------- records
    def _records(self, ids, cameras, labels=None) -> list[ImageRecord]:
        records = []
        for camera in cameras:
            for pid in ids:
                for name in self._images.get((camera, pid), ()):
                    label = labels[pid] if labels is not None else -1
                    records.append(make_record(self.root, f"cam{camera}/{pid:04d}/{name}", pid, camera, label))
        records.sort(key=lambda r: r.relpath)
        return records

    def train_records(self) -> list[ImageRecord]:
        """Every image (all six cameras) of the train+val ids, sorted by path; label = index in train_ids."""
        labels = {pid: index for index, pid in enumerate(self.train_ids)}
        return self._records(self.train_ids, CAMERAS, labels)

    def query_records(self) -> list[ImageRecord]:
        """Every infrared image (cameras 3 and 6) of the test ids, sorted by path (design.md §5.1)."""
        return self._records(self.test_ids, INFRARED_CAMERAS)

    def gallery_records(self, mode: str = "all") -> list[ImageRecord]:
        """Every visible image of the test ids in cameras (1, 2, 4, 5) (``"all"``) or (1, 2) (``"indoor"``)."""
        if mode not in GALLERY_CAMERAS:
            raise ConfigError(f"gallery mode must be 'all' or 'indoor', got {mode!r}")
        return self._records(self.test_ids, GALLERY_CAMERAS[mode])

    def all_records(self) -> list[ImageRecord]:
        """Every image of every listed id (train records labelled, test records -1), sorted by path."""
        return sorted(self.train_records() + self._records(self.test_ids, CAMERAS), key=lambda r: r.relpath)

    # ------------------------------------------------------------ permutations
    @property
    def has_rand_perm(self) -> bool:
        """Whether ``exp/rand_perm_cam.mat`` exists."""
        return self.rand_perm_path.is_file()

    def load_rand_perm(self) -> dict[tuple[int, int], np.ndarray]:
        """:func:`load_rand_perm_cam` of this dataset's ``exp/rand_perm_cam.mat``."""
        return load_rand_perm_cam(self.rand_perm_path)

    def counts(self) -> dict:
        """Sizes of every split (real SYSU-MM01: 395 train ids, 96 test ids, 3803 queries)."""
        def count(ids, cameras):
            return sum(len(self._images.get((c, p), ())) for c in cameras for p in ids)

        return {
            "train_ids": len(self.train_ids),
            "train_visible": count(self.train_ids, VISIBLE_CAMERAS),
            "train_infrared": count(self.train_ids, INFRARED_CAMERAS),
            "test_ids": len(self.test_ids),
            "query": count(self.test_ids, INFRARED_CAMERAS),
            "gallery_all": count(self.test_ids, VISIBLE_CAMERAS),
            "gallery_indoor": count(self.test_ids, INDOOR_CAMERAS),
            "has_rand_perm": self.has_rand_perm,
        }


def _malformed(path, detail: str) -> DatasetError:
    return DatasetError(f"malformed gallery permutation file {path}: {detail}; {_PERM_HINT}")


def load_rand_perm_cam(path) -> dict[tuple[int, int], np.ndarray]:
    """Read the official ``rand_perm_cam.mat`` (design.md §5.1).

    The variable ``rand_perm_cam`` is a 6x1 cell; the cell of camera c is ``perm[c-1][0]``, an array
    of per-identity cells indexed by id-1. Each non-empty cell is a (trials >= 10, n) array of
    1-based image numbers: row t is trial t's order of that (camera, id)'s images.

    Returns:
        {(camera, person_id): int64 array (trials, n)}; empty cells are omitted.

    Raises:
        DatasetError: the file is missing or not of that structure (names the path and where to
            get the official file).
    """
    import scipy.io

    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"SYSU-MM01 gallery permutation file {path} does not exist; {_PERM_HINT}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy's reader raises many types on a damaged file
        raise _malformed(path, f"not a readable MATLAB file ({type(error).__name__})") from None
    if "rand_perm_cam" not in mat:
        raise _malformed(path, "no variable 'rand_perm_cam'")
    cells = np.asarray(mat["rand_perm_cam"])
    if cells.dtype != object or cells.size != 6:
        raise _malformed(path, f"'rand_perm_cam' must be a 6x1 cell, got a {cells.dtype} array of shape {cells.shape}")
    perms: dict[tuple[int, int], np.ndarray] = {}
    for camera, camera_cell in enumerate(cells.reshape(-1), start=1):
        camera_cell = np.asarray(camera_cell)
        if camera_cell.size == 0:
            continue
        if camera_cell.dtype != object:
            raise _malformed(path, f"the cell of camera {camera} is not a cell of identities")
        for index, entry in enumerate(camera_cell.reshape(-1)):
            perm = np.asarray(entry)
            if perm.size == 0:
                continue
            where = f"camera {camera}, id {index + 1}"
            if perm.dtype.kind not in "iuf" or perm.ndim != 2:
                raise _malformed(path, f"the cell of {where} is not a 2-D numeric array")
            if perm.shape[0] < 10:
                raise _malformed(path, f"the cell of {where} has {perm.shape[0]} rows, expected 10 trials")
            if not np.all(np.isfinite(perm)) or np.any(perm < 1) or np.any(perm != np.round(perm)):
                raise _malformed(path, f"the cell of {where} holds values that are not 1-based image numbers")
            perms[(camera, index + 1)] = perm.astype(np.int64)
    return perms


def write_rand_perm_cam(path, perms: dict[tuple[int, int], np.ndarray], num_ids: int) -> None:
    """Write ``perms`` as the official ``rand_perm_cam.mat`` structure (see :func:`load_rand_perm_cam`).

    Args:
        path: output ``.mat`` file.
        perms: {(camera 1..6, person_id 1..num_ids): (trials, n) array of 1-based image numbers}.
        num_ids: length of every camera's identity cell (ids without an entry get an empty cell).

    The bytes depend only on the arguments (the MAT header's time stamp is replaced by fixed text).
    """
    import scipy.io

    cells = np.empty((6, 1), dtype=object)
    for camera in range(6):
        inner = np.empty((int(num_ids), 1), dtype=object)
        for index in range(int(num_ids)):
            inner[index, 0] = np.zeros((0, 0))
        cells[camera, 0] = inner
    for (camera, pid), perm in sorted(perms.items()):
        if not (1 <= camera <= 6 and 1 <= pid <= num_ids):
            raise ValueError(f"permutation key (camera={camera}, id={pid}) outside 1..6 x 1..{num_ids}")
        array = np.asarray(perm, dtype=np.float64)
        if array.ndim != 2:
            raise ValueError(f"permutation of (camera={camera}, id={pid}) must be 2-D, got shape {array.shape}")
        cells[camera - 1, 0][pid - 1, 0] = array
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"rand_perm_cam": cells})
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER
    pathlib.Path(path).write_bytes(bytes(data))
