"""Issue 26, item 2: every file mpanet-tf writes and reads back is checked as a whole when opened.

Hostile copies of each file are made here from a real one (an index built by the library, a
run folder's config, a checkpoint state, a feature file saved by ``save_features``): a missing
key, a value of the wrong kind, a dimension that disagrees with the model, an absurdly large
``entries.jsonl``, NaN rows, zero-width or all-zero features. Each must end in one line naming
the file and the field, never a traceback or a ranking of garbage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import MPANetConfig
from mpanet_tf.errors import CheckpointError, ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet, load_features, save_features
from mpanet_tf.index import GalleryIndex, GalleryIndexError
from mpanet_tf.index.format import MAX_ENTRY_BYTES
from mpanet_tf.training.checkpoints import FORMAT, CheckpointManager


# ----------------------------------------------------------------------------- gallery index
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mpanet_tf.index import index_from_features

    root = tmp_path_factory.mktemp("validated")
    rows = np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32)
    entries = [{"path": f"/g/{i}.png", "person_id": i % 3, "camera": 1, "modality": "visible"} for i in range(6)]
    return index_from_features(root / "g.mpidx", rows, entries, fingerprint="sha256:" + "0" * 64).path


@pytest.fixture
def index_folder(built, tmp_path):
    return Path(shutil.copytree(built, tmp_path / "g.mpidx"))


def _meta(folder, change):
    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


META_DAMAGES = {
    "missing created": (lambda m: m.pop("created"), "field created is missing"),
    "sources a number": (lambda m: m.update(sources=5), "field sources must be a list"),
    "source not an object": (lambda m: m.update(sources=[5]), r"field sources\[0\] must be an object"),
    "skipped holds numbers": (lambda m: m.update(skipped=[1]), r"field skipped\[0\] must be a string"),
    "embedding missing": (lambda m: m.pop("embedding"), "field embedding is missing"),
    "embedding dim disagrees": (lambda m: m["embedding"].update(dim=9), "field embedding says 9-d"),
    "pending a string": (lambda m: m.update(pending="build"), "field pending must be an object"),
    "count a float": (lambda m: m.update(count=6.0), "bad count"),
    "dim a list": (lambda m: m.update(dim=[8]), "bad dim"),
    "model kind a number": (lambda m: m["model"].update(kind=3), "field model.kind must be a string"),
}


@pytest.mark.parametrize("damage", sorted(META_DAMAGES))
def test_meta_json_is_checked_as_a_whole(index_folder, damage):
    change, message = META_DAMAGES[damage]
    _meta(index_folder, change)
    with pytest.raises(GalleryIndexError, match=message) as caught:
        GalleryIndex.open(index_folder)
    assert str(index_folder) in str(caught.value)
    result = CliRunner().invoke(cli, ["index", "info", "--index", str(index_folder)])
    assert result.exit_code == 2 and result.output.startswith("Error: ") and len(result.output.splitlines()) == 1


def test_entries_line_of_the_wrong_kind_is_named(index_folder):
    lines = (index_folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = json.dumps({"path": "/g/2.png", "person_id": "two", "camera": 1, "modality": "visible"}).encode() + b"\n"
    data = b"".join(lines)
    (index_folder / "entries.jsonl").write_bytes(data)
    _meta(index_folder, lambda m: m.update(entries_bytes=len(data)))
    with pytest.raises(GalleryIndexError, match=r"entries\.jsonl line 3: field person_id must be an integer"):
        GalleryIndex.open(index_folder)


def test_unknown_entry_keys_such_as_time_are_tolerated(index_folder):
    lines = [json.loads(line) for line in (index_folder / "entries.jsonl").read_text().splitlines()]
    data = "".join(json.dumps({**e, "time": "2026-01-01T00:00:00"}) + "\n" for e in lines).encode()
    (index_folder / "entries.jsonl").write_bytes(data)
    _meta(index_folder, lambda m: m.update(entries_bytes=len(data)))
    assert [e["time"] for e in GalleryIndex.open(index_folder).entries] == ["2026-01-01T00:00:00"] * 6


def test_absurd_entries_file_is_refused_before_it_is_read(index_folder):
    size = 6 * MAX_ENTRY_BYTES + 1                       # sparse: costs no disk, would cost gigabytes decoded
    with open(index_folder / "entries.jsonl", "r+b") as handle:
        handle.truncate(size)
    _meta(index_folder, lambda m: m.update(entries_bytes=size))
    with pytest.raises(GalleryIndexError, match="field entries_bytes says"):
        GalleryIndex.open(index_folder)


def test_entries_line_without_end_is_refused_in_bounded_memory(index_folder):
    # within the per-image budget overall, but the first line never ends
    size = 6 * MAX_ENTRY_BYTES
    with open(index_folder / "entries.jsonl", "wb") as handle:
        handle.truncate(size)
    _meta(index_folder, lambda m: m.update(entries_bytes=size))
    with pytest.raises(GalleryIndexError, match="line 1 of entries.jsonl is longer than"):
        GalleryIndex.open(index_folder)


def _query_features(index_folder, query):
    from mpanet_tf.index.exact import exact_search

    opened = GalleryIndex.open(index_folder)
    return exact_search(query, opened.embeddings(), top_k=3, source=f"gallery index {opened.path}")


def test_nan_rows_are_refused_not_ranked(index_folder):
    data = bytearray((index_folder / "embeddings.bin").read_bytes())
    data[4 * 8 * 3:4 * 8 * 3 + 4] = np.float32("nan").tobytes()          # row 3, first value
    (index_folder / "embeddings.bin").write_bytes(bytes(data))
    with pytest.raises(GalleryIndexError, match=r"g\.mpidx: row 3 holds NaN or inf"):
        _query_features(index_folder, np.ones(8, np.float32))


def test_dimension_disagreeing_with_the_model_is_one_line(index_folder):
    opened = GalleryIndex.open(index_folder)
    with pytest.raises(GalleryIndexError, match="holds 8-d embeddings .* gives 24-d"):
        opened.check_dim(24, "model.onnx")


def test_search_with_a_model_of_another_dimension_is_one_line(index_folder, tmp_path):
    from tests.index.conftest import make_embedder
    from mpanet_tf.index.fingerprint import model_fingerprint
    from tests.export.test_savedmodel import write_images

    embedder = make_embedder(tmp_path / "m.onnx")              # a 24-d model
    _meta(index_folder, lambda m: m["model"].update(fingerprint=model_fingerprint(embedder)))
    query = write_images(tmp_path / "q", sizes=((40, 20),))[0]
    from mpanet_tf.search import search_index

    with pytest.raises(GalleryIndexError, match="holds 8-d embeddings"):
        search_index(embedder, query, index_folder)


# ----------------------------------------------------------------------------- run folder files
def _config_file(tmp_path, change):
    data = MPANetConfig().to_dict()
    change(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["train"].update(epochs=[1]), "field train.epochs must be a finite number, got [1]"),
    (lambda d: d["train"].update(milestones="80"), "field train.milestones must be a list"),
    (lambda d: d["train"].update(milestones=[80, "x"]), "field train.milestones[1] must be an integer"),
    (lambda d: d.update(model=[1, 2]), "field model must be an object"),
    (lambda d: d["model"].update(use_pam="yes"), "field model.use_pam must be true or false"),
    (lambda d: d["data"].update(dataset=3), "field data.dataset must be a string"),
    (lambda d: d["train"].update(epochs=-3), "config.json: --epochs (train.epochs) must be >= 1"),
])
def test_config_json_is_checked_naming_file_and_field(tmp_path, change, message):
    path = _config_file(tmp_path, change)
    with pytest.raises(ConfigError) as caught:
        MPANetConfig.from_json_file(path)
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)


def test_config_json_that_is_a_list_or_a_device_is_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="the document must be an object"):
        MPANetConfig.from_json_file(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        MPANetConfig.from_json_file("/dev/zero")
    path.write_text("[" * 100_000)
    with pytest.raises(ConfigError, match="config file"):
        MPANetConfig.from_json_file(path)


def test_eval_of_a_run_with_a_damaged_config_is_one_line(tmp_path):
    from tests.export.test_savedmodel import write_tiny_run

    run, _ = write_tiny_run(tmp_path / "run")
    (run / "model.keras").unlink()
    data = json.loads((run / "config.json").read_text())
    data["model"]["image_height"] = [64]
    (run / "config.json").write_text(json.dumps(data))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "ckpt-000000001.weights.h5").write_bytes(b"x")
    (run / "checkpoints" / "ckpt-000000001.state.json").write_text("{}")
    result = CliRunner().invoke(cli, ["export", "--model", str(run), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "field model.image_height" in result.output and "config.json" in result.output


def _state(tmp_path, **changes):
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "ckpt-000000012.weights.h5").write_bytes(b"x")
    state = {"format": FORMAT, "epoch": 2, "step_in_epoch": 4, "iterations": 8, "global_step": 12,
             "epoch_complete": False, "history": [{"epoch": 1, "loss": 1.0}],
             "partial_epoch": {"sums": {"loss": 2.0}, "count": 4, "seconds": 1.5},
             "weights_file": "ckpt-000000012.weights.h5", "optimizer_iterations": 12, "saved_at": "now"}
    state.update(changes)
    (folder / "ckpt-000000012.state.json").write_text(json.dumps(state))
    return run


@pytest.mark.parametrize("changes, message", [
    ({"epoch": "one"}, "field epoch must be an integer >= 1, got 'one'"),
    ({"global_step": [12]}, "field global_step must be an integer >= 0, got [12]"),
    ({"history": {"epoch": 1}}, "field history must be a list"),
    ({"history": [{"loss": 1}]}, r"field history[0].epoch is missing"),
    ({"partial_epoch": {"sums": {"loss": "x"}}}, "field partial_epoch.sums.loss must be a finite number"),
    ({"epoch_complete": "no"}, "field epoch_complete must be true or false"),
])
def test_state_json_is_checked_naming_file_and_field(tmp_path, changes, message):
    run = _state(tmp_path, **changes)
    with pytest.raises(CheckpointError) as caught:
        CheckpointManager(run).latest()
    assert "ckpt-000000012.state.json" in str(caught.value) and message in str(caught.value), str(caught.value)


def test_valid_state_json_is_read(tmp_path):
    state = CheckpointManager(_state(tmp_path)).latest()
    assert state["epoch"] == 2 and state["global_step"] == 12 and state["partial_epoch"]["count"] == 4


# ----------------------------------------------------------------------------- feature files
def _features(tmp_path, query, gallery):
    path = tmp_path / "f.npz"
    save_features(path, FeatureSet(query, np.array([1, 2]), np.array([3, 3]), np.array(["q1", "q2"]),
                                   gallery, np.array([1, 2, 3]), np.array([1, 1, 2]), np.array(["a", "b", "c"])))
    return path


def test_zero_width_features_are_refused(tmp_path):
    path = _features(tmp_path, np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32))
    with pytest.raises(DatasetError, match="query_features has zero-width rows"):
        load_features(path)


def test_all_zero_feature_rows_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(3, 4)).astype(np.float32)
    gallery[1] = 0
    path = _features(tmp_path, rng.normal(size=(2, 4)).astype(np.float32), gallery)
    with pytest.raises(DatasetError, match=r"gallery_features has 1 all-zero rows \(first row 1\)"):
        load_features(path)
    result = CliRunner().invoke(cli, ["eval", "--features", str(path), "--dataset", "regdb"])
    assert result.exit_code == 2 and "all-zero rows" in result.output and "Traceback" not in result.output
