"""Feature files (round trip, validation) and extraction through the tf.data image path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mpanet_tf.data.images import load_image
from mpanet_tf.data.records import make_record
from mpanet_tf.errors import BadImageError, DatasetError
from mpanet_tf.eval.features import (
    FEATURE_KEYS, FeatureSet, extract_feature_set, extract_features, load_features, save_features,
)

SIZE = (16, 8)


def feature_set(seed=0):
    rng = np.random.default_rng(seed)
    return FeatureSet(rng.normal(size=(3, 5)), [1, 1, 2], [3, 6, 3],
                      ["cam3/0001/0001.jpg", "cam6/0001/0002.jpg", "cam3/0002/0001.jpg"],
                      rng.normal(size=(4, 5)), [1, 2, 2, 1], [1, 2, 4, 5],
                      ["cam1/0001/0001.jpg", "cam2/0002/0001.jpg", "cam4/0002/0003.jpg", "cam5/0001/0001.jpg"])


def test_round_trip_keeps_every_field(tmp_path):
    fs = feature_set()
    path = tmp_path / "sub" / "features.npz"
    save_features(path, fs)
    with np.load(path) as data:
        assert sorted(data.files) == sorted(FEATURE_KEYS)
    back = load_features(path)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(getattr(back, key), getattr(fs, key))
    assert back.query_features.dtype == np.float32 and back.gallery_ids.dtype == np.int64
    assert back.gallery_paths.tolist()[2] == "cam4/0002/0003.jpg"


def test_load_validation_names_the_file(tmp_path):
    fs = feature_set()
    arrays = {key: getattr(fs, key) for key in FEATURE_KEYS}
    missing = tmp_path / "missing_key.npz"
    np.savez(missing, **{k: v for k, v in arrays.items() if k != "gallery_cams"})
    with pytest.raises(DatasetError, match=r"missing_key\.npz lacks gallery_cams"):
        load_features(missing)
    short = tmp_path / "short.npz"
    np.savez(short, **{**arrays, "query_ids": arrays["query_ids"][:2]})
    with pytest.raises(DatasetError, match=r"short\.npz is inconsistent: query_ids has 2 entries"):
        load_features(short)
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(DatasetError, match=r"text\.npz is not a readable"):
        load_features(not_npz)
    with pytest.raises(DatasetError, match="does not exist"):
        load_features(tmp_path / "nothing.npz")
    dims = tmp_path / "dims.npz"
    np.savez(dims, **{**arrays, "gallery_features": np.zeros((4, 6))})
    with pytest.raises(DatasetError, match="5-d but gallery features are 6-d"):
        load_features(dims)


def write_images(folder, count):
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.png"
        pixels = np.zeros((20 + i, 10, 3), dtype=np.uint8)
        pixels[..., 0] = 20 * i
        pixels[: 5 + i, :, 1] = 200          # a stripe, so the resize matters
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def channel_means(batch):
    return np.asarray(batch).reshape(len(batch), -1, 3).mean(axis=1)


def test_extraction_follows_the_one_loading_path_in_order(tmp_path):
    paths = write_images(tmp_path, 5)
    features = extract_features(channel_means, paths, SIZE, batch_size=2, progress=False)
    expected = np.stack([load_image(p, SIZE).reshape(-1, 3).mean(axis=0) for p in paths])
    assert features.shape == (5, 3)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-4)


def test_bad_image_is_named_or_skipped(tmp_path):
    paths = write_images(tmp_path, 4)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    paths.insert(2, str(bad))
    paths.append(str(tmp_path / "absent.png"))
    with pytest.raises(BadImageError, match="broken.jpg"):
        extract_features(channel_means, paths, SIZE, batch_size=2, progress=False)
    features, skipped = extract_features(channel_means, paths, SIZE, batch_size=2, progress=False,
                                         skip_bad_images=True)
    assert skipped == [2, 5]
    good = [p for i, p in enumerate(paths) if i not in skipped]
    expected = np.stack([load_image(p, SIZE).reshape(-1, 3).mean(axis=0) for p in good])
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-4)


class BytesEmbedder:
    """Wants the encoded files, like a SavedModel's serve_encoded signature."""

    wants_bytes = True

    def __call__(self, data):
        return np.array([[len(item)] for item in data], dtype=np.float32)


def test_embedder_that_wants_bytes_gets_file_bytes(tmp_path):
    paths = write_images(tmp_path, 3)
    features = extract_features(BytesEmbedder(), paths, SIZE, batch_size=2, progress=False)
    np.testing.assert_array_equal(features[:, 0], [len(open(p, "rb").read()) for p in paths])


def test_feature_set_from_records(tmp_path):
    folder = tmp_path / "cam3" / "0001"
    folder.mkdir(parents=True)
    write_images(folder, 2)
    gallery_folder = tmp_path / "cam1" / "0001"
    gallery_folder.mkdir(parents=True)
    write_images(gallery_folder, 1)
    query = [make_record(tmp_path, f"cam3/0001/{i:04d}.png", 1, 3) for i in range(2)]
    gallery = [make_record(tmp_path, "cam1/0001/0000.png", 1, 1)]
    fs = extract_feature_set(channel_means, query, gallery, SIZE, batch_size=4, progress=False)
    assert fs.query_paths.tolist() == ["cam3/0001/0000.png", "cam3/0001/0001.png"]
    assert fs.query_cams.tolist() == [3, 3] and fs.gallery_ids.tolist() == [1]
    assert fs.problem() is None and fs.gallery_features.shape == (1, 3)
