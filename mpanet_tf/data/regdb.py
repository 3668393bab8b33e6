"""RegDB on disk -> :class:`ImageRecord` lists for one trial.

Layout (design.md §4.2)::

    RegDB/Visible/{pid}/*_v_*.bmp    RegDB/Thermal/{pid}/*_t_*.bmp
    RegDB/idx/{train,test}_{visible,thermal}_{1..10}.txt    lines "<path relative to root> <label>"

As in the authors' reader (MPANet data/dataset.py RegDBDataset), the label column is ignored and
the identity is the name of the image's parent folder; visible images get camera 2 and thermal
images camera 3, so ``infrared`` follows the usual cam-3/6 rule. Train labels are 0..N-1 over the
sorted train ids (the authors iterate a Python ``set`` of small ints, which gives the same order).
Records keep the order of the list files. Gallery = visible test images, query = thermal test
images (I->V); the evaluator swaps them for V->I (design.md §5.3).
"""

from __future__ import annotations

import numbers
import pathlib

from mpanet_tf.data.contained_paths import contained_relpath
from mpanet_tf.data.records import ImageRecord, is_file, make_record, read_text, resolve_root
from mpanet_tf.errors import DatasetError

VISIBLE_CAMERA = 2
THERMAL_CAMERA = 3
TRIALS = tuple(range(1, 11))
LIST_NAMES = ("train_visible", "train_thermal", "test_visible", "test_thermal")

_ROOT_HINT = "download RegDB and pass its folder (the one holding Visible/, Thermal/ and idx/) as --data-root"
_LIST_HINT = "the RegDB download ships idx/{train,test}_{visible,thermal}_{1..10}.txt; restore it"


def _folder_id(text: str):
    """Identity from a folder name: a plain ASCII decimal, else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def read_index_list(root: pathlib.Path, path: pathlib.Path) -> list[tuple[str, int]]:
    """Lines ``"<relpath> <label>"`` of one idx file -> [(relpath, person_id)], in file order.

    ``person_id`` is the parent folder of ``relpath``; the label column must be an integer but is
    otherwise ignored (design.md §4.2). Blank lines are skipped.

    Raises:
        DatasetError: missing file, a malformed line, or a listed image that does not exist.
    """
    text = read_text(path, "RegDB list file", _LIST_HINT)
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        label = tokens[1].lstrip("-") if len(tokens) == 2 else ""
        relpath = contained_relpath(tokens[0], f"{path}:{number}", f"the RegDB folder {root}")
        parts = relpath.split("/")
        pid = _folder_id(parts[-2]) if len(parts) >= 2 else None
        if not (label.isascii() and label.isdigit()) or pid is None:
            raise DatasetError(
                f"malformed line {number} of {path}: {line.strip()[:60]!r}; each line must be "
                "'<Visible|Thermal>/<id>/<file> <integer label>'")
        if not is_file(root / relpath):
            raise DatasetError(
                f"image {root / relpath} listed on line {number} of {path} does not exist; "
                "restore the image or remove the line")
        entries.append((relpath, pid))
    if not entries:
        raise DatasetError(f"RegDB list file {path} lists no images; {_LIST_HINT}")
    return entries


class RegDBDataset:
    """The RegDB layout for one trial, validated when constructed.

    Args:
        root: the dataset folder (holding ``Visible/``, ``Thermal/`` and ``idx/``).
        trial: 1..10, the id split of ``idx/*_{trial}.txt`` (MPANet hard-codes 1).

    Attributes:
        root: absolute dataset folder.
        trial: the trial.
        train_ids: sorted ids of the train lists; label i = train_ids[i].
        test_ids: sorted ids of the test lists.
    """

    def __init__(self, root, trial: int = 1):
        if isinstance(trial, bool) or not isinstance(trial, numbers.Integral) or int(trial) not in TRIALS:
            raise DatasetError(f"RegDB trial must be an integer in 1..10, got {trial!r} (data root {root})")
        trial = int(trial)
        self.root = resolve_root(root, "RegDB", _ROOT_HINT)
        self.trial = trial
        idx = self.root / "idx"
        self._lists = {name: read_index_list(self.root, idx / f"{name}_{trial}.txt") for name in LIST_NAMES}
        self.train_ids = sorted({pid for name in LIST_NAMES[:2] for _, pid in self._lists[name]})
        self.test_ids = sorted({pid for name in LIST_NAMES[2:] for _, pid in self._lists[name]})

    def _records(self, name: str, camera: int, labels=None) -> list[ImageRecord]:
        return [make_record(self.root, relpath, pid, camera, labels[pid] if labels is not None else -1)
                for relpath, pid in self._lists[name]]

    def train_records(self) -> list[ImageRecord]:
        """``train_visible_{t}`` (camera 2) then ``train_thermal_{t}`` (camera 3), labels 0..N-1."""
        labels = {pid: index for index, pid in enumerate(self.train_ids)}
        return (self._records("train_visible", VISIBLE_CAMERA, labels)
                + self._records("train_thermal", THERMAL_CAMERA, labels))

    def test_visible(self) -> list[ImageRecord]:
        """Visible test images, camera 2: the gallery for I->V, the query for V->I."""
        return self._records("test_visible", VISIBLE_CAMERA)

    def test_thermal(self) -> list[ImageRecord]:
        """Thermal test images, camera 3: the query for I->V, the gallery for V->I."""
        return self._records("test_thermal", THERMAL_CAMERA)

    def all_records(self) -> list[ImageRecord]:
        """Train records, then visible and thermal test records."""
        return self.train_records() + self.test_visible() + self.test_thermal()

    def counts(self) -> dict:
        """Sizes of the trial's lists (real RegDB: 206 ids and 2060 images per list)."""
        return {
            "trial": self.trial,
            "train_ids": len(self.train_ids),
            "train_visible": len(self._lists["train_visible"]),
            "train_thermal": len(self._lists["train_thermal"]),
            "test_ids": len(self.test_ids),
            "test_visible": len(self._lists["test_visible"]),
            "test_thermal": len(self._lists["test_thermal"]),
        }
