"""The on-disk image cache and ``mpanet-tf prepare``: round trip, stale/size refusal, atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from mpanet_tf.cli.main import cli
from mpanet_tf.data.cache import CacheError, default_cache_dir, open_cache, prepare_cache
from mpanet_tf.data.images import load_image
from mpanet_tf.data.records import ImageRecord
from mpanet_tf.errors import BadImageError

SIZE = (20, 10)


def write_images(root, count=6, shape=(30, 14)):
    rng = np.random.default_rng(1)
    records = []
    for i in range(count):
        relpath = f"cam{1 + 2 * (i % 2)}/0001/{i:04d}.jpg"
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path, quality=90)
        records.append(ImageRecord(str(path), relpath, 1, 1 + 2 * (i % 2), bool(i % 2), 0))
    return records


def test_round_trip(tmp_path):
    records = write_images(tmp_path / "data")
    out = prepare_cache(records + records[:2], SIZE, tmp_path / "cache", progress=False)
    index = json.loads((out / "index.json").read_text())
    assert index["size"] == list(SIZE) and index["count"] == len(records) and index["bad"] == []
    for record in records:
        row, nbytes, mtime_ns = index["entries"][record.relpath]
        assert nbytes == os.path.getsize(record.path) and mtime_ns == os.stat(record.path).st_mtime_ns
    cache = open_cache(out, records, SIZE)
    assert cache.images.shape == (len(records), *SIZE, 3) and cache.images.dtype == np.uint8
    rows = cache.rows_for(records)
    assert sorted(rows.tolist()) == list(range(len(records)))
    for record, row in zip(records, rows):
        exact = load_image(record.path, SIZE)
        assert np.abs(cache.read(row).astype(np.float32) - exact).max() <= 0.5 + 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]  # no temporary left


def test_refuses_stale_wrong_size_and_missing(tmp_path):
    records = write_images(tmp_path / "data")
    out = prepare_cache(records[:-1], SIZE, tmp_path / "cache", progress=False)
    with pytest.raises(CacheError, match=r"holds 20x10 images.*--image-size 40x10"):
        open_cache(out, records[:-1], (40, 10))
    with pytest.raises(CacheError, match=f"{records[-1].relpath} is not cached"):
        open_cache(out, records)
    Image.new("RGB", (14, 30), (5, 5, 5)).save(records[0].path)
    os.utime(records[0].path, ns=(0, 1_000_000_000))
    with pytest.raises(CacheError, match=f"stale: {records[0].path} changed"):
        open_cache(out, records[:-1])
    assert open_cache(out, records[:-1], check_sources=False).size == SIZE
    with pytest.raises(CacheError, match="no image cache"):
        open_cache(tmp_path / "nowhere")
    error = pytest.raises(CacheError, open_cache, out, records).value
    assert "\n" not in str(error) and "mpanet-tf prepare" in str(error)


def test_atomic_replace_and_bad_images(tmp_path):
    records = write_images(tmp_path / "data")
    target = tmp_path / "cache"
    prepare_cache(records[:3], SIZE, target, progress=False)
    bad = tmp_path / "data" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 truncated nonsense")
    bad_record = ImageRecord(str(bad), "bad.jpg", 1, 1, False, 0)
    with_bad = records[:2] + [bad_record] + records[2:]
    with pytest.raises(BadImageError, match="bad.jpg"):
        prepare_cache(with_bad, SIZE, target, progress=False)
    # The failed run left the previous cache intact and no temporary folder behind.
    assert len(open_cache(target, records[:3]).rows) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]
    prepare_cache(with_bad, SIZE, target, progress=False, skip_bad_images=True)
    cache = open_cache(target, records, SIZE)
    assert len(cache.rows) == len(records)
    for record, row in zip(records, cache.rows_for(records)):
        assert np.abs(cache.read(row) - load_image(record.path, SIZE)).max() <= 0.5 + 1e-3
    with pytest.raises(CacheError, match="bad.jpg could not be decoded"):
        open_cache(target, with_bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data"]


def test_prepare_command_sysu_and_regdb(tmp_path):
    from mpanet_tf.data.registry import load_dataset
    from mpanet_tf.data.synthetic import generate_regdb, generate_sysu

    runner = CliRunner()
    sysu = generate_sysu(tmp_path / "sysu", ids=4, images_per_camera=1, size=(40, 20))
    result = runner.invoke(cli, ["prepare", "--dataset", "sysu", "--data-root", str(sysu),
                                 "--image-size", "64x32", "--no-progress"])
    assert result.exit_code == 0, result.output
    train = load_dataset("sysu", sysu).train_records()
    cache = open_cache(default_cache_dir(sysu, (64, 32)), train, (64, 32))
    assert len(cache.rows) == len(train) and f"cached {len(train)} images" in result.output

    regdb = generate_regdb(tmp_path / "regdb", ids=4, images_per_modality=2, size=(32, 16))
    out = tmp_path / "regdb_cache"
    result = runner.invoke(cli, ["prepare", "--dataset", "regdb", "--data-root", str(regdb), "--trial", "1",
                                 "--image-size", "32x32", "--cache-dir", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    for trial in (1, 2, 3):  # one cache serves every trial
        open_cache(out, load_dataset("regdb", regdb, trial).train_records(), (32, 32))

    result = runner.invoke(cli, ["prepare", "--dataset", "sysu", "--data-root", str(sysu), "--image-size", "48"])
    assert result.exit_code == 2 and "HxW" in result.output
    result = runner.invoke(cli, ["prepare", "--dataset", "sysu", "--data-root", str(tmp_path / "none")])
    assert result.exit_code == 2 and "does not exist" in result.output
