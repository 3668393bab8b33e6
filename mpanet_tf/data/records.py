"""Plain image records and the helpers every dataset reader shares.

A reader turns an on-disk layout (SYSU-MM01, RegDB; design.md §4) into lists of :class:`ImageRecord`.
Nothing here imports TensorFlow: the sampler, the tf.data pipeline and the evaluators consume the
records. The modality of a record follows the authors' rule (design.md §2): cameras 3 and 6 are
infrared, every other camera is visible; RegDB visible images get camera 2 and thermal images
camera 3 (MPANet data/dataset.py), so the same rule holds there.

The readers import this module, never the other way round; datasets are opened by name through
:func:`mpanet_tf.data.registry.load_dataset`.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass

from mpanet_tf.errors import DatasetError

#: The cameras whose images are infrared (SYSU cams 3 and 6; RegDB thermal is given cam 3).
INFRARED_CAMERAS = (3, 6)

#: File suffixes counted as images (case-insensitive). Anything else in an identity folder
#: (Thumbs.db, .txt notes, hidden files) is skipped.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset.

    Attributes:
        path: absolute path of the image file.
        relpath: path relative to the dataset root, '/'-separated.
        person_id: raw identity id from the dataset.
        camera: SYSU 1..6; RegDB visible 2, thermal 3.
        infrared: ``camera in (3, 6)`` for SYSU-MM01 and RegDB; explicit for LLCM and manifests.
        label: training label 0..N-1 for train records, -1 otherwise.
    """

    path: str
    relpath: str
    person_id: int
    camera: int
    infrared: bool
    label: int = -1


def is_infrared_camera(camera: int) -> bool:
    """True for the infrared cameras 3 and 6 (design.md §2: ``sub = (cam==3) or (cam==6)``)."""
    return int(camera) in INFRARED_CAMERAS


def is_image_name(name: str) -> bool:
    """True when a file name counts as an image: a known suffix and not a hidden file."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def file_name_bytes(paths) -> list[bytes]:
    """Paths as the bytes the file system holds (``os.fsencode``), for TensorFlow string tensors.

    A file name that is not valid UTF-8 reaches Python as a str with surrogate escapes, which
    ``tf.constant`` cannot encode; its bytes name the same file.
    """
    return [os.fsencode(path) for path in paths]


def make_record(root: pathlib.Path, relpath: str, person_id: int, camera: int,
                label: int = -1, infrared: bool | None = None) -> ImageRecord:
    """Build a record for ``root/relpath`` (``relpath`` '/'-separated).

    ``infrared`` defaults to the camera rule (:func:`is_infrared_camera`); readers whose cameras
    film in both modalities (LLCM, the manifest) pass it explicitly.
    """
    return ImageRecord(
        path=os.path.join(str(root), *relpath.split("/")),
        relpath=relpath,
        person_id=int(person_id),
        camera=int(camera),
        infrared=is_infrared_camera(camera) if infrared is None else bool(infrared),
        label=int(label),
    )


def resolve_root(root, dataset: str, hint: str) -> pathlib.Path:
    """Absolute dataset root; :class:`DatasetError` when it is missing or not a folder."""
    path = pathlib.Path(os.path.expanduser(os.fspath(root))).absolute()
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as error:
        raise DatasetError(f"{dataset} root {path} cannot be read ({error}); {hint}") from None
    if not exists:
        raise DatasetError(f"{dataset} root {path} does not exist; {hint}")
    if not is_dir:
        raise DatasetError(f"{dataset} root {path} is not a folder; {hint}")
    return path


def is_file(path: pathlib.Path) -> bool:
    """``path.is_file()`` that answers False instead of raising (name too long, NUL byte, ...)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def is_file_entry(entry) -> bool:
    """``entry.is_file()`` of an ``os.scandir`` entry; a symbolic-link loop or an unreadable entry
    is a :class:`DatasetError` naming it rather than a traceback."""
    try:
        return entry.is_file()
    except OSError as error:
        raise DatasetError(f"cannot read {entry.path} ({error.strerror or error}; a symbolic-link loop?); "
                           "remove or fix the entry") from None


def list_image_names(folder) -> tuple[str, ...]:
    """Sorted image file names in ``folder`` (an identity folder); empty when it does not exist.

    Raises:
        DatasetError: the folder cannot be listed, or an entry is a symbolic-link loop.
    """
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return ()
    except OSError as error:
        raise DatasetError(f"cannot list {folder} ({error.strerror or error}); check its permissions") from None
    return tuple(sorted(e.name for e in entries if is_image_name(e.name) and is_file_entry(e)))


def read_text(path: pathlib.Path, what: str, fix: str) -> str:
    """Text of a small split/list file; :class:`DatasetError` if missing, unreadable or not UTF-8."""
    if not is_file(path):
        raise DatasetError(f"{what} {path} does not exist; {fix}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{what} {path} is not UTF-8 text; {fix}") from None
    except OSError as error:
        raise DatasetError(f"cannot read {what} {path} ({error.strerror or error}); {fix}") from None


def parse_positive_int(token: str):
    """``int(token)`` for a plain ASCII decimal >= 1 of at most 18 digits, else None."""
    token = token.strip()
    if not (token.isascii() and token.isdigit() and len(token) <= 18):
        return None
    value = int(token)
    return value if value >= 1 else None


def read_comma_separated_ids(path: pathlib.Path, what: str, hint: str, parse=None,
                             kind: str = "a positive integer id", title: str | None = None) -> list[int]:
    """Ids of a file of comma-separated ids (newlines count as commas), in file order: SYSU-MM01's
    ``exp/*_id.txt`` and LLCM's ``idx/test_id.txt``.

    Args:
        path: the file. what: its name in messages (``"split file"``). hint: the fix when missing.
        parse: token -> int or None (default :func:`parse_positive_int`). kind: what a token must be.
        title: the file's name when it is missing or unreadable (default ``what``).

    Raises:
        DatasetError: the file is missing, not text, holds a malformed token or repeats an id.
    """
    parse = parse or parse_positive_int
    text = read_text(path, title or what, hint)
    ids: dict[int, None] = {}   # insertion-ordered; a set's membership test keeps the parse linear
    for token in text.replace("\r", ",").replace("\n", ",").split(","):
        if not token.strip():
            continue
        value = parse(token)
        if value is None:
            raise DatasetError(f"malformed {what} {path}: {token.strip()[:20]!r} is not {kind}; "
                               "the file must hold comma-separated ids such as 1,2,4")
        if value in ids:
            raise DatasetError(f"{what} {path} lists id {value} twice; remove the duplicate")
        ids[value] = None
    return list(ids)
