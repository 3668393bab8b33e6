"""A user's own visible/infrared data through one CSV manifest -> :class:`ImageRecord` lists.

Format: UTF-8 CSV with a header row naming (in any order; extra columns are ignored)

====================  =====================================================================
``path``              the image, relative to the manifest's folder ('/' or '\\' separators)
``person``            the identity, any non-empty string
``camera``            the camera, any non-empty string (a camera filming in both modalities
                      keeps one name: its visible and infrared images share the camera)
``modality``          ``visible`` or ``infrared``
``split``             ``train``, ``query`` or ``gallery``
====================  =====================================================================

Rules checked when the manifest is read (each violation is one :class:`DatasetError` line naming
``file:line`` and the fix): every column present, values non-empty, a known modality and split,
a relative path listed once that names an existing file; every training person has images of
both modalities; every query person also appears in the gallery; no person is both in training
and in the query/gallery (identity-disjoint, as the field's benchmarks).

Integer ids for the evaluation (:class:`~mpanet_tf.eval.features.FeatureSet`): persons and
cameras are numbered 1, 2, ... in *natural order* of their strings (numbers by value first,
``"2" < "10"``, then the other strings in code-point order), over every row of the manifest.
The numbering depends only on the set of names in the manifest; :meth:`ManifestDataset.person_name`
and :meth:`ManifestDataset.camera_name` map the numbers back. Training labels are 0..N-1 over
the training persons in the same order. Records keep the manifest's row order.
"""

from __future__ import annotations

import csv
import io
import os
import pathlib
import posixpath
from dataclasses import dataclass

from mpanet_tf.data.records import ImageRecord, is_file, make_record
from mpanet_tf.data.registry import DatasetSpec, register_dataset
from mpanet_tf.data.synthetic_folders import generate_camera_folders
from mpanet_tf.errors import DatasetError

COLUMNS = ("path", "person", "camera", "modality", "split")
MODALITIES = ("visible", "infrared")
SPLITS = ("train", "query", "gallery")

_FORMAT = "a header naming path, person, camera, modality, split"


@dataclass(frozen=True)
class ManifestRow:
    """One validated row: ``line`` is its 1-based line in the file (the header is line 1)."""

    line: int
    path: str
    person: str
    camera: str
    infrared: bool
    split: str


def natural_key(name: str):
    """Sort key: plain decimal strings by value first, then every other string by code points."""
    return (0, int(name), name) if name.isascii() and name.isdigit() else (1, 0, name)


def _decode(path: pathlib.Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read manifest {path} ({error.strerror or error}); check the path") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line} is not UTF-8 text (byte 0x{data[error.start]:02x}); "
                           "save the manifest as UTF-8") from None


def _relpath(value: str):
    """A '/'-separated normalised relative path, or None for an absolute one."""
    value = value.replace("\\", "/")
    if value.startswith("/") or (len(value) > 1 and value[1] == ":"):
        return None
    return posixpath.normpath(value)


def read_manifest(path) -> list[ManifestRow]:
    """Parse and check every row of a manifest (the per-row rules of the module docstring).

    Raises:
        DatasetError: the first violation, as ``"<file>:<line> <problem>; <fix>"``.
    """
    path = pathlib.Path(os.path.expanduser(os.fspath(path))).absolute()
    if path.is_dir():
        raise DatasetError(f"manifest {path} is a folder; pass the CSV file (write one with `mpanet-tf manifest "
                           f"--from-folders {path} --output {path / 'data.csv'}` if it holds visible/ and infrared/)")
    if not is_file(path):
        raise DatasetError(f"manifest {path} does not exist; write one with `mpanet-tf manifest --from-folders DIR "
                           "--output FILE` or pass the CSV file as --data-root")
    root = path.parent
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}:1 is empty; the manifest needs {_FORMAT}")
        header = [name.strip().lower() for name in header]
        missing = [name for name in COLUMNS if name not in header]
        if missing:
            raise DatasetError(f"{path}:1 header lacks column {', '.join(missing)}; the manifest needs {_FORMAT}")
        repeated = sorted({name for name in header if header.count(name) > 1 and name in COLUMNS})
        if repeated:
            raise DatasetError(f"{path}:1 header names column {repeated[0]} twice; keep one")
        index = {name: header.index(name) for name in COLUMNS}
        rows, seen = [], {}
        for fields in reader:
            line = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            where = f"{path}:{line}"
            if len(fields) != len(header):
                raise DatasetError(f"{where} has {len(fields)} fields but the header has {len(header)}; "
                                   "give every row one value per column (quote values holding commas)")
            values = {name: fields[i].strip() for name, i in index.items()}
            for name in COLUMNS:
                if not values[name]:
                    raise DatasetError(f"{where} has an empty {name}; fill it in or delete the row")
            modality, split = values["modality"].lower(), values["split"].lower()
            if modality not in MODALITIES:
                raise DatasetError(f"{where} has unknown modality {values['modality']!r}; use visible or infrared")
            if split not in SPLITS:
                raise DatasetError(f"{where} has unknown split {values['split']!r}; use train, query or gallery")
            relpath = _relpath(values["path"])
            if relpath is None:
                raise DatasetError(f"{where} has an absolute path {values['path']!r}; paths are relative to "
                                   f"the manifest's folder {root}")
            if relpath in seen:
                raise DatasetError(f"{where} repeats path {relpath!r} of line {seen[relpath]}; list each image once")
            if not is_file(root / relpath):
                raise DatasetError(f"{where}: image {root / relpath} does not exist; fix the path (relative to "
                                   f"{root}) or delete the row")
            seen[relpath] = line
            rows.append(ManifestRow(line, relpath, values["person"], values["camera"], modality == "infrared", split))
    except csv.Error as error:
        raise DatasetError(f"{path}:{reader.line_num} is not valid CSV ({error}); check its quoting") from None
    if not rows:
        raise DatasetError(f"manifest {path} lists no images; add one row per image under {_FORMAT}")
    _check_persons(path, rows)
    return rows


def _check_persons(path: pathlib.Path, rows: list[ManifestRow]) -> None:
    """The cross-row rules: training persons in both modalities, query persons in the gallery, disjoint splits."""
    first: dict[tuple[str, str], ManifestRow] = {}
    modalities: dict[str, set] = {}
    for row in rows:
        first.setdefault((row.split, row.person), row)
        if row.split == "train":
            modalities.setdefault(row.person, set()).add(row.infrared)
    for person, seen in modalities.items():
        if len(seen) == 1:
            row = first[("train", person)]
            has, lacks = ("infrared", "visible") if True in seen else ("visible", "infrared")
            raise DatasetError(f"{path}:{row.line} training person {person!r} has {has} images only; add "
                               f"{lacks} training images of this person or move the person out of training")
    for (split, person), row in first.items():
        if split == "query" and ("gallery", person) not in first:
            raise DatasetError(f"{path}:{row.line} query person {person!r} has no gallery image; add gallery "
                               "rows of this person or drop the query rows")
        if split != "train" and ("train", person) in first:
            other = first[("train", person)]
            raise DatasetError(f"{path}:{row.line} person {person!r} is in the {split} and in training "
                               f"(line {other.line}); keep training and test persons disjoint")


class ManifestDataset:
    """A manifest file, validated when constructed (see the module docstring for the format).

    Args:
        path: the CSV manifest; image paths are relative to its folder.

    Attributes:
        path: absolute manifest path.
        root: the manifest's folder (records' ``relpath`` is relative to it).
        persons, cameras: distinct names in natural order; person/camera number i+1 = names[i].
        train_ids: person numbers of the training persons; training label i = train_ids[i].
        test_ids: person numbers of the query and gallery persons.
    """

    def __init__(self, path):
        self.rows = read_manifest(path)
        self.path = pathlib.Path(os.path.expanduser(os.fspath(path))).absolute()
        self.root = self.path.parent
        self.persons = sorted({row.person for row in self.rows}, key=natural_key)
        self.cameras = sorted({row.camera for row in self.rows}, key=natural_key)
        self._person_id = {name: index + 1 for index, name in enumerate(self.persons)}
        self._camera_id = {name: index + 1 for index, name in enumerate(self.cameras)}
        self.train_ids = sorted({self._person_id[r.person] for r in self.rows if r.split == "train"})
        self.test_ids = sorted({self._person_id[r.person] for r in self.rows if r.split != "train"})

    def person_id(self, person: str) -> int:
        """The number of a person name."""
        return self._person_id[person]

    def camera_id(self, camera: str) -> int:
        """The number of a camera name."""
        return self._camera_id[camera]

    def person_name(self, person_id: int) -> str:
        """The manifest's name of person number ``person_id``."""
        return self.persons[int(person_id) - 1]

    def camera_name(self, camera: int) -> str:
        """The manifest's name of camera number ``camera``."""
        return self.cameras[int(camera) - 1]

    def _records(self, splits: tuple[str, ...]) -> list[ImageRecord]:
        labels = {pid: index for index, pid in enumerate(self.train_ids)}
        records = []
        for row in self.rows:
            if row.split in splits:
                pid = self._person_id[row.person]
                records.append(make_record(self.root, row.path, pid, self._camera_id[row.camera],
                                           labels[pid] if row.split == "train" else -1, infrared=row.infrared))
        return records

    def train_records(self) -> list[ImageRecord]:
        """Training rows in manifest order, labels 0..N-1 (the index in :attr:`train_ids`)."""
        if not self.train_ids:
            raise DatasetError(f"manifest {self.path} has no training rows; add rows with split=train")
        return self._records(("train",))

    def query_records(self) -> list[ImageRecord]:
        """Query rows in manifest order."""
        if not any(row.split == "query" for row in self.rows):
            raise DatasetError(f"manifest {self.path} has no query rows; add rows with split=query")
        return self._records(("query",))

    def gallery_records(self) -> list[ImageRecord]:
        """Gallery rows in manifest order."""
        if not any(row.split == "gallery" for row in self.rows):
            raise DatasetError(f"manifest {self.path} has no gallery rows; add rows with split=gallery")
        return self._records(("gallery",))

    def all_records(self) -> list[ImageRecord]:
        """Every row, in manifest order (training rows labelled, the others -1)."""
        return self._records(SPLITS)

    def counts(self) -> dict:
        """Persons, cameras and images per split and modality."""
        def count(split, infrared):
            return sum(1 for row in self.rows if row.split == split and row.infrared == infrared)

        return {
            "train_ids": len(self.train_ids),
            "train_visible": count("train", False),
            "train_infrared": count("train", True),
            "test_ids": len(self.test_ids),
            "query_visible": count("query", False),
            "query_infrared": count("query", True),
            "gallery_visible": count("gallery", False),
            "gallery_infrared": count("gallery", True),
            "cameras": len(self.cameras),
        }


# ------------------------------------------------------------------ registration
def synthesize_manifest(out, *, seed: int = 0, overwrite: bool = False, ids=None, images=None, size=None):
    """``synth --layout manifest``: a camera-folder tree (:func:`~mpanet_tf.data.synthetic_folders.
    generate_camera_folders`) and its ``data.csv`` (:func:`~mpanet_tf.data.manifest_folders.
    write_manifest_from_folders`, 30 % test persons, infrared queries); returns the manifest path."""
    from mpanet_tf.data.manifest_folders import write_manifest_from_folders

    given = {"ids": ids, "images_per_camera": images, "size": size}
    root = generate_camera_folders(out, seed=seed, overwrite=overwrite,
                                   **{k: v for k, v in given.items() if v is not None})
    manifest = pathlib.Path(root) / "data.csv"
    write_manifest_from_folders(root, manifest, seed=seed, overwrite=True)
    return manifest


def _register() -> None:
    register_dataset(DatasetSpec(
        name="manifest", title="manifest", open=lambda root, trial=1: ManifestDataset(root),
        # Your own cameras: the SYSU training preset; --data-root names the CSV file.
        preset={"model": {"image_height": 384, "image_width": 128},
                "data": {"data_root": "datasets/manifest.csv", "batch_ids": 16, "images_per_id": 8},
                "train": {"milestones": [80, 120], "epochs": 140}},
        protocol="mpanet_tf.eval.manifest_protocol:MANIFEST_PROTOCOL",
        info_keys=("train_ids", "train_visible", "train_infrared", "test_ids", "query_visible", "query_infrared",
                   "gallery_visible", "gallery_infrared", "cameras"),
        synthesize=synthesize_manifest,
    ))


_register()
