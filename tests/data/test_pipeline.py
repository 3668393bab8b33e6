"""The tf.data training pipeline: order, pixels, determinism, resume, per-worker input, bad images."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from mpanet_tf.config import MPANetConfig
from mpanet_tf.data.cache import prepare_cache
from mpanet_tf.data.images import load_image
from mpanet_tf.data.bad_images import find_bad_images
from mpanet_tf.data.pipeline import build_train_dataset, iterate_checked, iterations_per_epoch
from mpanet_tf.data.records import ImageRecord
from mpanet_tf.data.sampler import IdentityPairSampler
from mpanet_tf.errors import BadImageError, ConfigError

SIZE = (32, 16)


def write_records(root, ids=6, n_ir=4, n_vis=6, shape=(24, 12)):
    rng = np.random.default_rng(0)
    records = []
    for label in range(ids):
        for infrared, count in ((True, n_ir), (False, n_vis)):
            for number in range(count):
                relpath = f"cam{3 if infrared else 1}/{label:04d}/{number:04d}.png"
                path = root / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(path)
                records.append(ImageRecord(str(path), relpath, label + 1, 3 if infrared else 1, infrared, label))
    return records


def make_config(augment=True, batch_ids=2, images_per_id=4):
    config = MPANetConfig()
    config.model.image_height, config.model.image_width = SIZE
    config.data.batch_ids, config.data.images_per_id = batch_ids, images_per_id
    if not augment:
        config.data.flip_prob, config.data.pad, config.data.erase_prob = 0.0, 0, 0.0
    return config


def collect(dataset):
    return [tuple(x.numpy() for x in batch) for batch in dataset]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return write_records(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def sampler(records):
    return IdentityPairSampler.from_records(records, batch_ids=2, images_per_id=4, seed=3)


def test_batches_follow_the_sampler_and_decode_like_load_image(records, sampler):
    batches = collect(build_train_dataset(records, sampler, 0, make_config(augment=False)))
    expected = sampler.epoch_batches(0)
    assert len(batches) == len(expected) == iterations_per_epoch(sampler, 0) > 0
    for (images, labels, infrared), indices in zip(batches, expected):
        assert images.shape == (8, *SIZE, 3) and images.dtype == np.float32
        assert labels.dtype == np.int32 and infrared.dtype == bool
        np.testing.assert_array_equal(labels, [records[i].label for i in indices])
        np.testing.assert_array_equal(infrared, [records[i].infrared for i in indices])
        np.testing.assert_array_equal(infrared, [True, False] * 4)
        for image, index in zip(images, indices):
            np.testing.assert_allclose(image, load_image(records[index].path, SIZE), atol=1e-3)


def test_deterministic_per_epoch_and_resumable(records, sampler):
    config = make_config()
    first = collect(build_train_dataset(records, sampler, 1, config))
    again = collect(build_train_dataset(records, sampler, 1, config))
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    plain = collect(build_train_dataset(records, sampler, 1, make_config(augment=False)))
    assert any(not np.array_equal(a[0], p[0]) for a, p in zip(first, plain)), "augmentation is on"
    other = collect(build_train_dataset(records, sampler, 2, config))
    assert not all(np.array_equal(a[0], o[0]) for a, o in zip(first, other))
    resumed = collect(build_train_dataset(records, sampler, 1, config, start_step=2))
    assert len(resumed) == len(first) - 2
    for a, b in zip(first[2:], resumed, strict=True):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    assert collect(build_train_dataset(records, sampler, 1, config, start_step=len(first))) == []
    with pytest.raises(ConfigError, match="start_step"):
        build_train_dataset(records, sampler, 1, config, start_step=len(first) + 1)


def test_workers_yield_contiguous_slices_as_per_replica_batches(records):
    sampler = IdentityPairSampler.from_records(records, batch_ids=4, images_per_id=2, seed=3)
    config = make_config(batch_ids=4, images_per_id=2)
    whole = collect(build_train_dataset(records, sampler, 0, config))
    parts = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=4)
        parts.append(collect(build_train_dataset(records, sampler, 0, config, input_context=context)))
    for step, (images, labels, infrared) in enumerate(whole):
        for worker in range(2):
            # Worker w feeds its 2 local replicas with consecutive per-replica batches of 2.
            local = parts[worker][2 * step:2 * step + 2]
            np.testing.assert_array_equal(np.concatenate([b[0] for b in local]), images[4 * worker:4 * worker + 4])
            np.testing.assert_array_equal(np.concatenate([b[1] for b in local]), labels[4 * worker:4 * worker + 4])
            for replica_batch in local:
                assert replica_batch[2].tolist() == [True, False], "one identity block, both modalities"
    narrow = IdentityPairSampler.from_records(records, batch_ids=2, images_per_id=4)
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0, num_replicas_in_sync=4)
    with pytest.raises(ConfigError, match="multiple of the 4 replicas"):
        build_train_dataset(records, narrow, 0, make_config(), input_context=context)


def test_cached_pipeline_gives_the_decoded_pixels(records, sampler, tmp_path):
    """Both paths round the resize to whole grey levels (PIL's uint8), so they agree exactly,
    before and after the (identically seeded) augmentation."""
    cache_dir = prepare_cache(records, SIZE, tmp_path / "cache", progress=False)
    for augment in (False, True):
        config = make_config(augment=augment)
        decoded = collect(build_train_dataset(records, sampler, 0, config))
        cached = collect(build_train_dataset(records, sampler, 0, config, cache=cache_dir))
        for a, b in zip(decoded, cached, strict=True):
            np.testing.assert_array_equal(a[0], b[0])
            if not augment:  # whole grey levels (the erase colour is not)
                np.testing.assert_array_equal(np.round(b[0]), b[0])
            np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ConfigError, match="32x16"):
        from mpanet_tf.data.cache import open_cache

        wrong = make_config()
        wrong.model.image_height = 64
        build_train_dataset(records, sampler, 0, wrong, cache=open_cache(cache_dir))


def test_bad_image_is_named(records, sampler, tmp_path):
    bad_path = tmp_path / "broken.jpg"
    bad_path.write_bytes(b"this is not an image")
    # Break an image of batch 1 (the sampler depends on labels and modalities only).
    victim = int(sampler.epoch_batches(0)[1][3])
    assert victim not in sampler.epoch_batches(0)[0]
    broken = list(records)
    broken[victim] = ImageRecord(str(bad_path), "broken.jpg", records[victim].person_id, records[victim].camera,
                                 records[victim].infrared, records[victim].label)
    missing = ImageRecord(str(tmp_path / "gone.png"), "gone.png", 1, 1, False, 0)
    assert find_bad_images(broken + [missing], progress=False) == sorted([str(bad_path), missing.path])
    dataset = build_train_dataset(broken, sampler, 0, make_config(augment=False))
    seen = []
    with pytest.raises(BadImageError, match="broken.jpg"):
        for batch in iterate_checked(dataset, broken, sampler, 0):
            seen.append(batch)
    assert len(seen) == 1, "the batch before the broken one still comes out"
    # Without the sampler every record is checked.
    with pytest.raises(BadImageError, match="broken.jpg"):
        for _ in iterate_checked(dataset, broken):
            pass
