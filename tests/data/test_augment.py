"""Augmentations (design.md §3.3): each checked eagerly and inside tf.data.Dataset.map, rates statistically."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mpanet_tf.config import DataConfig
from mpanet_tf.data.augment import PAD_FILLS, augment, pad_and_random_crop, random_erasing, random_flip
from mpanet_tf.layers.image_normalization import MEAN_PIXEL

N = 400


def binomial_ok(count, n, p, sigmas=4.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


def seeds(n, offset=0):
    return np.stack([np.arange(n) + offset, np.full(n, 7)], axis=1).astype(np.int64)


def run_map(fn, image, seed_rows):
    """fn(image, seed) for every seed, inside tf.data.Dataset.map (graph mode)."""
    image = tf.constant(image, tf.float32)
    dataset = tf.data.Dataset.from_tensor_slices(seed_rows).map(lambda s: fn(image, s))
    return np.stack([x.numpy() for x in dataset])


def run_eager(fn, image, seed_rows):
    return np.stack([fn(tf.constant(image, tf.float32), tf.constant(s)).numpy() for s in seed_rows])


def random_image(h, w, seed=0):
    # Integer pixels: never equal to the (fractional) MEAN_PIXEL erase colour.
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float32)


def erased_mask(out):
    return np.all(out == np.float32(MEAN_PIXEL), axis=-1)


# ------------------------------------------------------------------------------------ flip
def test_flip_is_exact_mirror_at_half_rate():
    image = random_image(8, 6)
    outs = run_map(random_flip, image, seeds(N))
    mirrored = np.array([np.array_equal(o, image[:, ::-1]) for o in outs])
    same = np.array([np.array_equal(o, image) for o in outs])
    assert np.all(mirrored ^ same)
    assert binomial_ok(mirrored.sum(), N, 0.5)
    np.testing.assert_array_equal(run_eager(random_flip, image, seeds(5)), outs[:5])
    assert np.all(run_map(lambda x, s: random_flip(x, s, prob=0.0), image, seeds(20)) == image)
    assert np.all(run_map(lambda x, s: random_flip(x, s, prob=1.0), image, seeds(20)) == image[:, ::-1])


# ------------------------------------------------------------------------------- pad/crop
@pytest.mark.parametrize("fill_name", ["grey", "red"])
def test_crop_is_a_window_of_the_padded_image(fill_name):
    pad, fill = 2, PAD_FILLS[fill_name]
    image = random_image(10, 6, seed=1)
    padded = np.stack([np.pad(image[..., c], pad, constant_values=fill[c]) for c in range(3)], -1)
    outs = run_map(lambda x, s: pad_and_random_crop(x, s, pad=pad, fill=fill), image, seeds(N))
    assert outs.shape == (N, 10, 6, 3)
    offsets = []
    for out in outs:
        found = [(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
                 if np.array_equal(out, padded[i:i + 10, j:j + 6])]
        assert len(found) == 1
        offsets.append(found[0])
    counts = np.zeros((2 * pad + 1, 2 * pad + 1), int)
    for i, j in offsets:
        counts[i, j] += 1
    assert np.all(counts > 0), "every offset 0..2*pad, both ends included, occurs"
    for axis in (0, 1):  # each marginal offset has probability 1/(2*pad+1)
        for c in counts.sum(axis=1 - axis):
            assert binomial_ok(c, N, 1 / (2 * pad + 1))
    corner = outs[[k for k, o in enumerate(offsets) if o == (0, 0)][0]]
    np.testing.assert_array_equal(corner[0, 0], np.array(fill, np.float32))
    np.testing.assert_array_equal(run_eager(lambda x, s: pad_and_random_crop(x, s, pad, fill), image,
                                            seeds(4)), outs[:4])


def test_crop_with_padding_wider_than_the_image():
    pad, fill = 7, PAD_FILLS["red"]
    image = random_image(10, 6, seed=2)
    padded = np.stack([np.pad(image[..., c], pad, constant_values=fill[c]) for c in range(3)], -1)
    windows = {padded[i:i + 10, j:j + 6].tobytes() for i in range(2 * pad + 1) for j in range(2 * pad + 1)}
    outs = run_map(lambda x, s: pad_and_random_crop(x, s, pad=pad, fill=fill), image, seeds(100))
    assert all(out.tobytes() in windows for out in outs)
    assert any(np.all(out == np.array(fill, np.float32)) for out in outs), "all-border windows occur"


# -------------------------------------------------------------------------------- erasing
def rectangle(mask):
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, left = rows[0], cols[0]
    h, w = rows[-1] - top + 1, cols[-1] - left + 1
    assert mask.sum() == h * w, "the erased pixels form one filled rectangle"
    return top, left, h, w


def test_erasing_rectangles_respect_torchvision_bounds():
    height, width = 48, 24
    image = random_image(height, width, seed=2)
    outs = run_map(random_erasing, image, seeds(N))
    fired = 0
    for out in outs:
        mask = erased_mask(out)
        np.testing.assert_array_equal(out[~mask], image[~mask])
        if not mask.any():
            continue
        fired += 1
        top, left, h, w = rectangle(mask)
        assert h < height and w < width and top + h <= height and left + w <= width
        # h = round(sqrt(a r)), w = round(sqrt(a / r)) with a/(H W) in [0.02, 0.33], r in [0.3, 3.3].
        area = height * width
        assert (h - 0.5) * (w - 0.5) <= 0.33 * area and (h + 0.5) * (w + 0.5) >= 0.02 * area
        assert (h - 0.5) / (w + 0.5) <= 3.3 and (h + 0.5) / (w - 0.5) >= 0.3
    # Rejection of all 10 tries is negligible at this size, so the rate is p = 0.5.
    assert binomial_ok(fired, N, 0.5)


def numpy_attempts(rng, n, height, width, scale, ratio, log_uniform):
    """One torchvision attempt, n times: (h, w, valid) with Python-round semantics."""
    area = rng.uniform(*scale, n) * height * width
    aspect = np.exp(rng.uniform(*np.log(ratio), n)) if log_uniform else rng.uniform(*ratio, n)
    h = np.round(np.sqrt(area * aspect))  # numpy rounds half to even, like Python's round
    w = np.round(np.sqrt(area / aspect))
    return h, w, (h < height) & (w < width)


def test_erasing_takes_first_valid_attempt_else_nothing():
    # Large areas on a small square: most tries are rejected; p(erase) = 1 - (1 - q)^10.
    size, scale = 12, (0.3, 0.95)
    h, w, valid = numpy_attempts(np.random.default_rng(0), 200_000, size, size, scale, (0.3, 3.3), False)
    q = valid.mean()
    expected_rate = 1 - (1 - q) ** 10
    expected_area = (h * w)[valid].mean()  # first valid try ~ one try conditioned on validity
    image = random_image(size, size, seed=3)
    outs = run_map(lambda x, s: random_erasing(x, s, prob=1.0, scale=scale), image, seeds(N))
    areas = [erased_mask(o).sum() for o in outs if erased_mask(o).any()]
    assert binomial_ok(len(areas), N, expected_rate)
    spread = (h * w)[valid].std() / np.sqrt(len(areas))
    assert abs(np.mean(areas) - expected_area) <= 4 * spread
    # No try can fit: h = w = round(sqrt(~100)) = 10 = H -> nothing is erased even with p = 1.
    never = run_map(lambda x, s: random_erasing(x, s, prob=1.0, scale=(0.99, 1.0), ratio=(1.0, 1.0)),
                    random_image(10, 10), seeds(50))
    assert np.all(never == random_image(10, 10))


@pytest.mark.parametrize("log_uniform", [False, True])
def test_erasing_aspect_distribution(log_uniform):
    size = 40
    h, w, valid = numpy_attempts(np.random.default_rng(1), 200_000, size, size, (0.02, 0.33),
                                 (0.3, 3.3), log_uniform)
    expected_tall = (h > w)[valid].mean()
    image = random_image(size, size, seed=4)
    outs = run_map(lambda x, s: random_erasing(x, s, prob=1.0, log_uniform_ratio=log_uniform), image,
                   seeds(N))
    shapes = [rectangle(erased_mask(o))[2:] for o in outs if erased_mask(o).any()]
    tall = sum(1 for hh, ww in shapes if hh > ww)
    assert binomial_ok(tall, len(shapes), expected_tall)


def test_erasing_eager_equals_graph_and_is_deterministic():
    image = random_image(20, 10, seed=5)
    graph = run_map(random_erasing, image, seeds(8))
    np.testing.assert_array_equal(run_eager(random_erasing, image, seeds(8)), graph)
    np.testing.assert_array_equal(run_map(random_erasing, image, seeds(8)), graph)


# ---------------------------------------------------------------------------------- chain
def test_augment_chain():
    image = random_image(16, 8, seed=6)
    off = DataConfig(flip_prob=0.0, pad=0, erase_prob=0.0)
    assert np.all(run_map(lambda x, s: augment(x, s, off), image, seeds(10)) == image)
    flip_only = DataConfig(flip_prob=1.0, pad=0, erase_prob=0.0)
    assert np.all(run_map(lambda x, s: augment(x, s, flip_only), image, seeds(3)) == image[:, ::-1])
    full = DataConfig()
    outs = run_map(lambda x, s: augment(x, s, full), image, seeds(50))
    assert outs.min() >= 0 and outs.max() <= 255
    assert len({o.tobytes() for o in outs}) > 40
    np.testing.assert_array_equal(run_eager(lambda x, s: augment(x, s, full), image, seeds(3)), outs[:3])
    # The pad colour reaches the output: red fill puts (127, 0, 0) pixels in some crops.
    red = DataConfig(flip_prob=0.0, erase_prob=0.0, pad_fill="red")
    reds = run_map(lambda x, s: augment(x, s, red), image, seeds(20))
    assert np.any(np.all(reds == np.array([127, 0, 0], np.float32), axis=-1))
