"""LLCM on disk -> :class:`ImageRecord` lists (design.md §12, "On-disk layout").

Layout::

    LLCM/idx/train_vis.txt, idx/train_nir.txt   "<path relative to LLCM/> <label>" per line
    LLCM/idx/test_id.txt                         one line of comma-separated test identity numbers
    LLCM/test_vis/cam1 .. cam9/<id:04d>/<files>  visible test images
    LLCM/test_nir/cam1, cam2, cam4 .. cam9/<id:04d>/<files>   near-infrared test images (no cam3)

LLCM's nine cameras film in both modalities, so the modality of a record is explicit (which list
or which ``test_*`` folder it comes from), never derived from the camera number.

Training (as the authors' DEEN ``data_loader.LLCMData``): the images are the lines of the two
lists, in file order, visible first. The **identity is the label column** (DEEN trains on it
directly); ``person_id`` is that label and the training label is its rank among the sorted
distinct labels of both lists, i.e. the label itself when the lists use 0..N-1 as the released
ones do. The camera of a training image is read from its file name (``..._c06_...``, the released
naming ``0001_c06_s200656_f5710_nir.jpg``), else from a ``cam<N>`` path component, else 0 (DEEN
does not use training cameras; neither does our sampler).

Test (DEEN ``data_manager.process_query_llcm``/``process_gallery_llcm``): for every id of
``test_id.txt`` and every camera of the modality, the folder ``test_*/cam<c>/<id:04d>/`` when it
exists; the identity is the 4-digit folder and the camera the digit after ``cam``. Records are
ordered as the reference lists them: ids sorted, cameras in order, files sorted. Where we differ:
only image files count (:func:`~mpanet_tf.data.records.is_image_name`; DEEN lists every file), so
a folder holding no image is treated as absent. A listed test id without any folder is allowed
(it counts in ``test_ids`` and contributes no image), but a modality without any test image of
the listed ids is an error (a wrong ``--data-root`` or test id file).
"""

from __future__ import annotations

import os
import pathlib
import re

from mpanet_tf.data.contained_paths import contained_relpath
from mpanet_tf.data.records import (
    ImageRecord, is_file, list_image_names, make_record, read_comma_separated_ids, read_text,
    resolve_root,
)
from mpanet_tf.errors import ConfigError, DatasetError

VISIBLE_CAMERAS = (1, 2, 3, 4, 5, 6, 7, 8, 9)
INFRARED_CAMERAS = (1, 2, 4, 5, 6, 7, 8, 9)
#: modality -> (test folder, training list file, cameras)
MODALITIES = {
    "visible": ("test_vis", "train_vis.txt", VISIBLE_CAMERAS),
    "infrared": ("test_nir", "train_nir.txt", INFRARED_CAMERAS),
}
#: Evaluation modes: (query modality, gallery modality).
MODES = {"i2v": ("infrared", "visible"), "v2i": ("visible", "infrared")}

_ROOT_HINT = ("request LLCM from its authors and pass its folder (the one holding idx/, test_vis/ and "
              "test_nir/) as --data-root")
_LIST_HINT = "the LLCM release ships idx/train_vis.txt, idx/train_nir.txt and idx/test_id.txt; restore it"
_FILE_CAMERA = re.compile(r"_c(\d{1,3})(?:_|\.|$)")
_FOLDER_CAMERA = re.compile(r"cam(\d{1,3})$")


def _decimal(token: str):
    """A plain ASCII decimal of at most 18 digits as int, else None."""
    token = token.strip()
    return int(token) if token.isascii() and token.isdigit() and len(token) <= 18 else None


def training_camera(relpath: str) -> int:
    """Camera of a training image: ``_c<N>_`` in the file name, else a ``cam<N>`` folder, else 0."""
    parts = relpath.split("/")
    found = _FILE_CAMERA.search(parts[-1])
    if found:
        return int(found.group(1))
    for part in reversed(parts[:-1]):
        found = _FOLDER_CAMERA.match(part)
        if found:
            return int(found.group(1))
    return 0


def read_train_list(root: pathlib.Path, path: pathlib.Path) -> list[tuple[str, int]]:
    """Lines ``"<relpath> <label>"`` of one training list -> [(relpath, label)], in file order.

    The last whitespace-separated token is the label (a non-negative integer), the rest the path,
    so paths may hold spaces. Blank lines are skipped.

    Raises:
        DatasetError: missing/unreadable file, a malformed line, a listed image that does not exist,
            or a list without images.
    """
    text = read_text(path, "LLCM list file", _LIST_HINT)
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.strip().rsplit(None, 1)
        if not tokens:
            continue
        label = _decimal(tokens[1]) if len(tokens) == 2 else None
        if label is None:
            raise DatasetError(
                f"malformed line {number} of {path}: {line.strip()[:60]!r}; each line must be "
                "'<path relative to the LLCM folder> <integer label>'")
        relpath = contained_relpath(tokens[0], f"{path}:{number}", f"the LLCM folder {root}")
        if not is_file(root / relpath):
            raise DatasetError(
                f"image {root / relpath} listed on line {number} of {path} does not exist; "
                "restore the image or remove the line")
        entries.append((relpath, label))
    if not entries:
        raise DatasetError(f"LLCM list file {path} lists no images; {_LIST_HINT}")
    return entries


def _folder_names(folder: pathlib.Path) -> frozenset:
    """Names of the entries of ``folder`` (empty when it does not exist or is not a folder)."""
    try:
        return frozenset(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    except OSError as error:
        raise DatasetError(f"cannot list {folder} ({error.strerror or error}); check its permissions") from None


def read_test_ids(path: pathlib.Path) -> list[int]:
    """Identity numbers of ``idx/test_id.txt`` (comma-separated; newlines count as commas), in file order."""
    ids = read_comma_separated_ids(path, "test id file", _LIST_HINT, parse=_decimal, kind="an integer id",
                                   title="LLCM test id file")
    if not ids:
        raise DatasetError(f"test id file {path} lists no ids; {_LIST_HINT}")
    return ids


def check_mode(mode: str) -> tuple[str, str]:
    """(query modality, gallery modality) of an LLCM mode; :class:`ConfigError` for an unknown one."""
    if mode not in MODES:
        raise ConfigError(f"LLCM mode must be 'i2v' (infrared query) or 'v2i' (visible query), got {mode!r}")
    return MODES[mode]


class LLCMDataset:
    """The LLCM layout, validated when constructed.

    Args:
        root: the dataset folder (holding ``idx/``, ``test_vis/`` and ``test_nir/``).

    Attributes:
        root: absolute dataset folder.
        train_ids: sorted distinct training labels; training label i = train_ids[i].
        test_ids: ids of ``test_id.txt`` in file order.

    Example:
        >>> data = LLCMDataset("datasets/LLCM")                        # doctest: +SKIP
        >>> query, gallery = data.query_records("i2v"), data.gallery_records("i2v")   # doctest: +SKIP
    """

    def __init__(self, root):
        self.root = resolve_root(root, "LLCM", _ROOT_HINT)
        idx = self.root / "idx"
        self._train = {modality: read_train_list(self.root, idx / list_name)
                       for modality, (_, list_name, _) in MODALITIES.items()}
        self.train_ids = sorted({label for entries in self._train.values() for _, label in entries})
        self.test_ids = read_test_ids(idx / "test_id.txt")
        self._test = {modality: self._scan(modality) for modality in MODALITIES}

    def _scan(self, modality: str) -> dict[tuple[int, int], tuple[str, ...]]:
        """{(person_id, camera): sorted image names} of one modality's test folders that hold images."""
        folder_name, _, cameras = MODALITIES[modality]
        base = self.root / folder_name
        if not base.is_dir():
            raise DatasetError(f"LLCM test folder {base} is missing; {_ROOT_HINT}")
        images = {}
        # One listing per camera folder, so the scan is linear in the files, not ids x cameras stat calls.
        present = {camera: _folder_names(base / f"cam{camera}") for camera in cameras}
        for pid in self.test_ids:
            for camera in cameras:
                if f"{pid:04d}" in present[camera]:
                    names = list_image_names(base / f"cam{camera}" / f"{pid:04d}")
                    if names:
                        images[(pid, camera)] = names
        if not images:
            raise DatasetError(
                f"no {modality} test image of the ids in {self.root / 'idx' / 'test_id.txt'} under "
                f"{base}/cam<N>/<id:04d>/; check --data-root and the test id file")
        return images

    # ----------------------------------------------------------------- records
    def train_records(self) -> list[ImageRecord]:
        """``train_vis.txt`` then ``train_nir.txt`` lines in file order; labels 0..N-1 (see module doc)."""
        labels = {pid: index for index, pid in enumerate(self.train_ids)}
        return [make_record(self.root, relpath, pid, training_camera(relpath), labels[pid],
                            infrared=(modality == "infrared"))
                for modality, entries in self._train.items() for relpath, pid in entries]

    def test_records(self, modality: str) -> list[ImageRecord]:
        """Every test image of one modality (``"visible"`` or ``"infrared"``).

        Ordered as the reference lists them: ids sorted, cameras in order, files sorted.
        """
        if modality not in MODALITIES:
            raise ConfigError(f"LLCM modality must be 'visible' or 'infrared', got {modality!r}")
        folder_name = MODALITIES[modality][0]
        images = self._test[modality]
        return [make_record(self.root, f"{folder_name}/cam{camera}/{pid:04d}/{name}", pid, camera,
                            infrared=(modality == "infrared"))
                for pid, camera in sorted(images, key=lambda key: (f"{key[0]:04d}", key[1]))
                for name in images[(pid, camera)]]

    def test_visible(self) -> list[ImageRecord]:
        """Visible test images: the query of ``v2i``, the gallery pool of ``i2v``."""
        return self.test_records("visible")

    def test_infrared(self) -> list[ImageRecord]:
        """Near-infrared test images: the query of ``i2v``, the gallery pool of ``v2i``."""
        return self.test_records("infrared")

    def query_records(self, mode: str = "i2v") -> list[ImageRecord]:
        """Every test image of the query modality of ``mode`` (the same in every trial)."""
        return self.test_records(check_mode(mode)[0])

    def gallery_records(self, mode: str = "i2v") -> list[ImageRecord]:
        """The gallery *pool* of ``mode``: every test image of the other modality; each trial draws
        one image per (id, camera) from it (:mod:`mpanet_tf.eval.llcm_protocol`)."""
        return self.test_records(check_mode(mode)[1])

    def all_records(self) -> list[ImageRecord]:
        """Train records, then the visible and the infrared test records."""
        return self.train_records() + self.test_visible() + self.test_infrared()

    def counts(self) -> dict:
        """Sizes a user compares with the paper (real LLCM: 713 train ids, 351 test ids)."""
        return {
            "train_ids": len(self.train_ids),
            "train_visible": len(self._train["visible"]),
            "train_infrared": len(self._train["infrared"]),
            "test_ids": len(self.test_ids),
            "test_visible": sum(len(names) for names in self._test["visible"].values()),
            "test_infrared": sum(len(names) for names in self._test["infrared"].values()),
        }
