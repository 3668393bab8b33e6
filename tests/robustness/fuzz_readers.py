"""Fuzzing targets for every reader of user-supplied text and bytes (issue 26, item 8).

Each target takes one hypothesis-drawn input, writes it where the reader expects its file, runs the
reader, and returns ``"ok"`` or ``"refused"`` (an :class:`~mpanet_tf.errors.MPANetError`: one line,
the CLI's exit 2). Any other exception, a message of more than one line, more than
:data:`MAX_SECONDS` or more than :data:`MAX_PEAK_BYTES` of Python allocations (``tracemalloc``) is
a failure.

Inputs mix bytes and text drawn at random with *mutations of valid files* (a real manifest row
with one field replaced by a hostile value, a valid ``meta.json`` with one key changed, ...), so
most examples get past the first checks.

Used by ``tests/robustness/test_fuzz_readers.py`` (bounded example counts, in the default suite)
and ``tests/robustness/fuzz_long.py`` (the same targets, for minutes).
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from mpanet_tf.errors import MPANetError

MAX_SECONDS = 20.0          # per input, on a loaded 2-core machine
MAX_PEAK_BYTES = 256 << 20  # Python allocations while reading one input

HOSTILE_TEXT = ["", " ", "..", "../x.jpg", "../../etc/passwd", "/etc/passwd", "C:\\x.jpg", "c:x", "\\\\srv\\s\\x",
                "a/../../b", "\x00", "\ufeff", "é", "\udcff", "1e309", "nan", "-1", "0", "99999999999999999999",
                "9" * 5000, ",", "\"", "\r", "\n", "\t", "[" * 50, "{}", "[]", "null", "true", "1.5"]
HOSTILE_JSON = [None, True, False, 0, -1, 1.5, float("nan"), float("inf"), 10**30, "", "one", "x" * 300, [], [1],
                ["a"], {}, {"a": 1}, [[[]]], {"kind": 5}, 2**63]

text_values = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40))
json_values = st.recursive(
    st.one_of(st.sampled_from(HOSTILE_JSON), st.integers(), st.floats(), st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12)


def bounded(read):
    """Run ``read()``: -> "ok" | "refused"; AssertionError past the time or memory bound or for a
    multi-line error; any other exception propagates (a bug)."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        read()
        outcome = "ok"
    except MPANetError as error:
        assert "\n" not in str(error) and str(error).strip(), repr(str(error))
        outcome = "refused"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    seconds = time.monotonic() - start
    assert seconds < MAX_SECONDS, f"{seconds:.1f} s"
    assert peak < MAX_PEAK_BYTES, f"{peak / 2**20:.0f} MiB"
    return outcome


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="mpanet-fuzz-"))


def _cleanup(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- manifest
MANIFEST_ROWS = ["img/a.jpg,alice,gate,visible,train", "img/b.jpg,alice,yard,infrared,train",
                 "img/q.jpg,carol,gate,infrared,query", "img/g.jpg,carol,yard,visible,gallery"]


@st.composite
def manifests(draw) -> bytes:
    rows = ["path,person,camera,modality,split"] + list(MANIFEST_ROWS)
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(rows) - 1))
        fields = rows[index].split(",")
        fields[draw(st.integers(0, len(fields) - 1))] = draw(text_values).replace("\n", " ")
        rows[index] = ",".join(fields)
    if draw(st.booleans()):
        rows.insert(draw(st.integers(0, len(rows))), draw(text_values))
    data = "\n".join(rows).encode("utf-8", "surrogateescape")
    return draw(st.one_of(st.just(data), st.binary(max_size=200)))


def read_manifest_bytes(data: bytes) -> str:
    from mpanet_tf.data.manifest import ManifestDataset

    root = _scratch()
    try:
        (root / "img").mkdir()
        for name in ("a", "b", "q", "g"):
            (root / "img" / f"{name}.jpg").write_bytes(b"img")
        (root / "data.csv").write_bytes(data)
        return bounded(lambda: ManifestDataset(root / "data.csv").counts())
    finally:
        _cleanup(root)


# ----------------------------------------------------------------------------- list and id files
@st.composite
def list_files(draw) -> bytes:
    lines = ["Visible/1/a.bmp 0", "Thermal/1/b.bmp 0", "vis/0001/x_c01_s1_f1_vis.jpg 0"]
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        tokens = lines[index].split(" ")
        tokens[draw(st.integers(0, 1))] = draw(text_values)
        lines[index] = " ".join(tokens)
    data = "\n".join(lines).encode("utf-8", "surrogateescape")
    return draw(st.one_of(st.just(data), st.binary(max_size=200)))


def read_list_bytes(data: bytes) -> tuple[str, str]:
    from mpanet_tf.data.llcm import read_train_list
    from mpanet_tf.data.regdb import read_index_list

    root = _scratch()
    try:
        for relpath in ("Visible/1/a.bmp", "Thermal/1/b.bmp", "vis/0001/x_c01_s1_f1_vis.jpg"):
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_bytes(b"img")
        (root / "list.txt").write_bytes(data)
        return (bounded(lambda: read_train_list(root, root / "list.txt")),
                bounded(lambda: read_index_list(root, root / "list.txt")))
    finally:
        _cleanup(root)


id_files = st.one_of(st.binary(max_size=200),
                     st.lists(st.one_of(st.integers(-5, 10**6).map(str), text_values), max_size=20)
                     .map(lambda tokens: ",".join(tokens).encode("utf-8", "surrogateescape")))


def read_id_bytes(data: bytes) -> str:
    from mpanet_tf.data.llcm import read_test_ids
    from mpanet_tf.data.records import read_comma_separated_ids

    root = _scratch()
    try:
        (root / "ids.txt").write_bytes(data)
        bounded(lambda: read_test_ids(root / "ids.txt"))
        return bounded(lambda: read_comma_separated_ids(root / "ids.txt", "split file", "fix"))
    finally:
        _cleanup(root)


# ----------------------------------------------------------------------------- JSON files we write
def _mutated(valid: dict, draw) -> object:
    document = json.loads(json.dumps(valid))
    for _ in range(draw(st.integers(1, 3))):
        target = document
        keys = list(target) if isinstance(target, dict) else []
        while keys and draw(st.booleans()) and isinstance(target[keys[0]], dict):
            target = target[draw(st.sampled_from(keys))] if isinstance(target, dict) else target
            keys = list(target) if isinstance(target, dict) and target else []
        if not isinstance(target, dict) or not target:
            break
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.integers(0, 4)) == 0:
            del target[key]
        else:
            target[key] = draw(json_values)
    return document


@st.composite
def json_documents(draw, valid: dict) -> bytes:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(st.binary(max_size=100))
    if choice == 1:
        return json.dumps(draw(json_values)).encode()
    return json.dumps(_mutated(valid, draw)).encode()


VALID_META = {
    "format": "mpanet-tf gallery index", "format_version": 1, "count": 2, "dim": 3, "dtype": "float32",
    "embeddings_bytes": 24, "entries_bytes": 0,
    "model": {"fingerprint": "sha256:0", "kind": "keras", "source": None},
    "embedding": {"image_size": [16, 8], "dim": 3, "dtype": "float32", "normalization": "l2",
                  "distance": "euclidean", "batch_size": 2, "mpanet_tf_version": "0"},
    "sources": [{"kind": "folder", "path": "/x"}], "skipped": [], "pending": None,
    "created": "2026", "updated": "2026",
}
ENTRIES = b'{"camera": 1, "modality": "visible", "path": "/x/a.png", "person_id": 1}\n' \
          b'{"camera": null, "modality": null, "path": "/x/b.png", "person_id": null}\n'


@st.composite
def index_folders(draw) -> tuple[bytes, bytes]:
    entries = draw(st.one_of(st.just(ENTRIES), st.binary(max_size=300),
                             st.lists(json_values, max_size=3).map(
                                 lambda items: "".join(json.dumps(i) + "\n" for i in items).encode())))
    meta = dict(VALID_META, entries_bytes=len(entries))
    return draw(json_documents(meta)), entries


def read_index_bytes(meta_and_entries) -> str:
    from mpanet_tf.index import GalleryIndex

    meta, entries = meta_and_entries
    root = _scratch()
    try:
        folder = root / "g.mpidx"
        folder.mkdir()
        (folder / "meta.json").write_bytes(meta)
        (folder / "entries.jsonl").write_bytes(entries)
        (folder / "embeddings.bin").write_bytes(np.ones((2, 3), "<f4").tobytes())
        return bounded(lambda: GalleryIndex.open(folder).paths)
    finally:
        _cleanup(root)


def _valid_config() -> dict:
    from mpanet_tf.config import MPANetConfig

    return MPANetConfig().to_dict()


def read_config_bytes(data: bytes) -> str:
    from mpanet_tf.config import MPANetConfig

    root = _scratch()
    try:
        (root / "config.json").write_bytes(data)
        return bounded(lambda: MPANetConfig.from_json_file(root / "config.json"))
    finally:
        _cleanup(root)


def _valid_state() -> dict:
    from mpanet_tf.training.checkpoints import FORMAT

    return {"format": FORMAT, "epoch": 2, "step_in_epoch": 4, "iterations": 8, "global_step": 12,
            "epoch_complete": False, "history": [{"epoch": 1, "loss": 1.0}],
            "partial_epoch": {"sums": {"loss": 2.0}, "count": 4, "seconds": 1.5},
            "weights_file": "ckpt-000000012.weights.h5", "optimizer_iterations": 12, "saved_at": "now"}


def read_state_bytes(data: bytes) -> str:
    from mpanet_tf.training.checkpoints import CheckpointManager

    root = _scratch()
    try:
        folder = root / "checkpoints"
        folder.mkdir()
        (folder / "ckpt-000000012.weights.h5").write_bytes(b"x")
        (folder / "ckpt-000000012.state.json").write_bytes(data)
        return bounded(lambda: CheckpointManager(root).latest())
    finally:
        _cleanup(root)


# ----------------------------------------------------------------------------- feature files
def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


arrays = st.one_of(
    st.tuples(st.integers(0, 4), st.integers(0, 4)).map(lambda s: np.random.default_rng(s[0]).normal(size=s)),
    st.sampled_from([np.zeros((2, 3)), np.full((2, 3), np.nan), np.array(["a", "b"]), np.array([1, 2]),
                     np.array([True, False]), np.zeros((2, 0)), np.array([[1, 2], [3, 4]]), np.array(3.0),
                     np.array([1.5, 2.5]), np.zeros((0, 3))]))


@st.composite
def feature_files(draw) -> bytes:
    from mpanet_tf.eval.features import FEATURE_KEYS, MODALITY_KEYS

    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    rng = np.random.default_rng(0)
    members = {"query_features": rng.normal(size=(2, 3)), "query_ids": [1, 2], "query_cams": [3, 3],
               "query_paths": ["q1", "q2"], "gallery_features": rng.normal(size=(3, 3)), "gallery_ids": [1, 2, 3],
               "gallery_cams": [1, 1, 2], "gallery_paths": ["a", "b", "c"]}
    for _ in range(draw(st.integers(0, 3))):                 # 0: the valid file itself
        key = draw(st.sampled_from(FEATURE_KEYS + MODALITY_KEYS))
        members[key] = draw(arrays)
    if draw(st.integers(0, 3)) == 0:
        members.pop(draw(st.sampled_from(sorted(members))))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, value in members.items():
            data = _npy(value)
            if draw(st.integers(0, 6)) == 0:           # a damaged member: cut, or a header that lies
                data = data[:draw(st.integers(0, len(data)))]
            archive.writestr(f"{key}.npy", data)
    return buffer.getvalue()


def read_feature_bytes(data: bytes) -> str:
    from mpanet_tf.eval.features import load_features

    root = _scratch()
    try:
        (root / "f.npz").write_bytes(data)
        return bounded(lambda: load_features(root / "f.npz"))
    finally:
        _cleanup(root)


# ----------------------------------------------------------------------------- the pickle reader
PICKLE_PIECES = [b"\x80\x02", b"}", b"]", b")", b"(", b"t", b"l", b"d", b"s", b"a", b"e", b"u", b"R", b"b", b"0",
                 b"\x85", b"\x86", b"\x87", b"N", b"\x88", b"\x89", b"K\x01", b"J\xff\xff\xff\x7f",
                 b"X\x01\x00\x00\x00a", b"X\x03\x00\x00\x00get", b"q\x01", b"h\x01", b"h\x00",
                 b"ccollections\nOrderedDict\n", b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n",
                 b"c__builtin__\nset\n", b"c_codecs\nencode\n", b"ctorch\nSize\n", b"cos\nsystem\n",
                 b"X\x05\x00\x00\x00torch", b"\x81", b"\x92", b"Q", b"."]


@st.composite
def pickles(draw) -> bytes:
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=300))
    body = b"".join(draw(st.lists(st.sampled_from(PICKLE_PIECES), max_size=40)))
    data_pkl = b"\x80\x02" + body + b"."
    if choice == 1:
        return data_pkl                                  # a bare (legacy-looking) pickle
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/data/0", struct.pack("<4f", 1, 2, 3, 4))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def read_pickle_bytes(data: bytes) -> str:
    from mpanet_tf.interop.torch_state import load_state_dict

    root = _scratch()
    try:
        (root / "x.pth").write_bytes(data)
        return bounded(lambda: load_state_dict(root / "x.pth"))
    finally:
        _cleanup(root)


def targets():
    """name -> (strategy, reader): every fuzzed reader."""
    return {
        "manifest": (manifests(), read_manifest_bytes),
        "list file": (list_files(), read_list_bytes),
        "id file": (id_files, read_id_bytes),
        "meta.json": (index_folders(), read_index_bytes),
        "config.json": (json_documents(_valid_config()), read_config_bytes),
        "state.json": (json_documents(_valid_state()), read_state_bytes),
        "feature file": (feature_files(), read_feature_bytes),
        "pickle": (pickles(), read_pickle_bytes),
    }


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
