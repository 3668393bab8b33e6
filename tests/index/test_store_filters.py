"""The .mpidx gallery store: the store interface over today's folder, metadata filters (exact and
FAISS), capture times from file modification times and the manifest's time column, and older
indexes without capture times."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pytest

from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.index import index_from_features
from mpanet_tf.index.exact import exact_search
from mpanet_tf.index.store import SearchFilter, open_store
from tests.index.gallery_split import FILTERS, gallery_split, expected_ids

FINGERPRINT = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    features, entries, queries = gallery_split()
    path = tmp_path_factory.mktemp("store") / "g.mpidx"
    index_from_features(path, features, entries, FINGERPRINT, chunk_rows=50)
    return {"features": features, "entries": entries, "queries": queries, "path": path}


def test_store_search_is_the_exact_search_with_entries(split):
    with open_store(split["path"]) as store:
        assert store.count() == len(split["entries"]) and store.dim == 24 and store.dtype == "float32"
        hits = store.search(split["queries"], top_k=len(split["entries"]))
        rows = np.memmap(split["path"] / "embeddings.bin", np.float32, "r", shape=(store.count(), 24))
        order, distances = exact_search(split["queries"], rows)
        for q, row in enumerate(hits):
            assert [h.entry_id for h in row] == order[q].tolist()
            assert [h.rank for h in row] == list(range(1, len(row) + 1))
            np.testing.assert_array_equal([h.distance for h in row], distances[q])
            assert all(h.entry == split["entries"][h.entry_id] for h in row)
        # ties: query 0 is row 7, repeated at rows 40..44: distance 0 for all six, smaller id first
        assert [h.entry_id for h in hits[0][:6]] == [7, 40, 41, 42, 43, 44]
        assert store.entry(3) == split["entries"][3] and store.entry(len(split["entries"])) is None


@pytest.mark.parametrize("ann", [False, True])
@pytest.mark.parametrize("condition", FILTERS)
def test_filters_select_exactly_the_matching_entries(split, condition, ann):
    if ann:
        pytest.importorskip("faiss")
    wanted = expected_ids(split["entries"], *condition)
    with open_store(split["path"]) as store:
        filters = SearchFilter(*condition)
        full = store.search(split["queries"][:6], top_k=store.count())
        found = store.search(split["queries"][:6], top_k=store.count(), filters=filters, ann=ann,
                             nprobe=10**6 if ann else None)
    for q, row in enumerate(found):
        ids = [h.entry_id for h in row]
        if ann:  # approximate candidates: only matching entries, exact distances
            assert set(ids) <= wanted and len(ids) == len(set(ids))
        else:  # exact: every matching entry, in the unfiltered ranking's order
            assert ids == [h.entry_id for h in full[q] if h.entry_id in wanted]
        distances = {h.entry_id: h.distance for h in full[q]}
        assert all(h.distance == distances[h.entry_id] for h in row)


def test_filter_from_options_and_its_refusals():
    flt = SearchFilter.from_text("4, 5", "Infrared", "2026-12-02T09:00:00+01:00", "2026-12-03")
    assert flt.cameras == ("4", "5") and flt.modalities == ("infrared",)
    assert flt.since == datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)
    assert SearchFilter.from_text().empty and SearchFilter(since=datetime(2026, 1, 1)).since.tzinfo == timezone.utc
    for bad, where in ((dict(since="yesterday"), "--since"), (dict(modalities="thermal"), "--modality"),
                       (dict(cameras=" , "), "--camera"),
                       (dict(since="2026-12-03", until="2026-12-02"), "--since")):
        with pytest.raises(ConfigError, match=where):
            SearchFilter.from_text(**bad)


def test_folder_entries_carry_the_file_modification_time(pictures, model_file, tmp_path):
    import os

    from mpanet_tf.index import build_index
    from tests.index.conftest import make_embedder

    first = sorted(pictures.rglob("*.png"))[0]
    os.utime(first, (0, 1_764_662_400.25))  # 2025-12-02T08:00:00.25Z
    index = build_index(make_embedder(model_file), tmp_path / "g.mpidx", images=pictures, progress=False)
    times = {e["path"]: e["time"] for e in index.entries}
    assert times[str(first)] == "2025-12-02T08:00:00.250000+00:00"
    assert all(datetime.fromisoformat(t).tzinfo is not None for t in times.values())


def test_manifest_time_column_becomes_the_capture_time(tmp_path):
    from mpanet_tf.data.manifest import read_manifest
    from mpanet_tf.data.synthetic_folders import synthesize_manifest
    from mpanet_tf.data.registry import get_dataset
    from mpanet_tf.index.sources import dataset_entries

    manifest = synthesize_manifest(tmp_path / "cams", ids=4, images=1, size=(32, 16))
    lines = manifest.read_text().splitlines()
    gallery = [n for n, line in enumerate(lines) if line.endswith(",gallery")]
    lines[0] += ",time"
    for n in range(1, len(lines)):
        lines[n] += ",2026-12-02T09:30:00+01:00" if n == gallery[0] else ","
    manifest.write_text("\n".join(lines) + "\n")
    entries, _ = dataset_entries(get_dataset("manifest"), manifest, split="gallery")
    timed = [e for e in entries if e["path"].endswith(lines[gallery[0]].split(",")[0].split("/")[-1])]
    assert [e["time"] for e in timed] == ["2026-12-02T08:30:00.000000+00:00"]
    assert all(e["time"] for e in entries)  # the others: their file's modification time
    assert all(isinstance(e["camera"], str) for e in entries)  # a manifest's camera names
    lines[gallery[0]] = lines[gallery[0]].rsplit(",", 1)[0] + ",noon"
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{manifest.name}:{gallery[0] + 1} has time 'noon'"):
        read_manifest(manifest)


def test_an_index_written_before_capture_times_still_opens_and_filters(split, tmp_path):
    import shutil

    old = tmp_path / "old.mpidx"
    shutil.copytree(split["path"], old)
    lines = [json.loads(line) for line in (old / "entries.jsonl").read_text().splitlines()]
    data = "".join(json.dumps({k: v for k, v in e.items() if k != "time"}) + "\n" for e in lines).encode()
    (old / "entries.jsonl").write_bytes(data)
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "entries_bytes": len(data)}))
    with open_store(old) as store:
        assert store.entry(1)["time"] is None and store.entry(1)["camera"] == 2
        assert store.search(split["queries"][:1], 5, SearchFilter(since=datetime(2000, 1, 1)))[0] == []
        cams = store.search(split["queries"][:1], 200, SearchFilter(cameras=("gate",)))[0]
        assert {h.entry_id for h in cams} == expected_ids(split["entries"], ("gate",))


def test_search_cli_filters_by_capture_time_and_refuses_filters_without_an_index(pictures, model_file, tmp_path,
                                                                                  monkeypatch):
    import os

    from click.testing import CliRunner

    from mpanet_tf.cli.main import cli
    from mpanet_tf.index import build_index
    from tests.index.conftest import make_embedder

    images = sorted(p for p in pictures.rglob("*") if p.is_file())
    for number, image in enumerate(images):  # one picture per hour from 2025-12-02T00:00Z
        os.utime(image, (0, 1_764_633_600 + 3600 * number))
    embedder = make_embedder(model_file)
    build_index(embedder, tmp_path / "g.mpidx", images=pictures, progress=False)
    monkeypatch.setattr("mpanet_tf.search.load_embedder", lambda model: embedder)
    common = ["search", "--model", str(model_file), "--query", str(images[0]), "--index", str(tmp_path / "g.mpidx"),
              "--top-k", "20"]
    runner = CliRunner()
    result = runner.invoke(cli, [*common, "--since", "2025-12-02T03:00:00Z", "--until", "2025-12-02T06:00:00+00:00"])
    assert result.exit_code == 0, result.output
    listed = sorted(line.split()[-1] for line in result.output.splitlines() if line.strip()[:1].isdigit())
    assert listed == sorted(str(p) for p in images[3:7])
    result = runner.invoke(cli, [*common, "--camera", "1"])  # a plain folder has no camera
    assert result.exit_code == 0 and not [line for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    result = runner.invoke(cli, [*common, "--since", "today"])
    assert result.exit_code == 2 and "--since has time 'today', which is not ISO 8601" in result.output
    result = runner.invoke(cli, ["search", "--model", str(model_file), "--query", str(images[0]), "--gallery",
                                 str(pictures), "--camera", "1"])
    assert result.exit_code == 2 and "pass --index" in result.output
