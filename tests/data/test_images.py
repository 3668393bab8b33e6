"""The one image path against PIL itself (issue 13): every pixel equals
``Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)``; a difference of 1 fails.

Covered: the resampling coefficients against a line-by-line Python transcription of Pillow's
``precompute_coeffs``/``normalize_coeffs_8bpc``; the in-graph resize for many sizes (1-pixel
dimensions, odd sizes, up- and downscaling by non-integer factors, aspect changes, both of
Pillow's pass orders, batched input, random sizes and images (hypothesis), the sparse product of
huge downscales); :func:`load_image` for every file type (JPEG 4:4:4/4:2:2/
4:2:0, greyscale, CMYK and progressive; PNG RGB/L/P/P+tRNS/RGBA/LA/16-bit grey; BMP RGB/L/P/RGBA;
GIF); the tf.data training pipeline and the cache written by ``prepare``; refusals (unsupported
BMPs, garbage, truncated files, headers above the pixel cap) naming the file.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mpanet_tf.data.images import MAX_PIXELS, decode_image_tensor, load_image, resize_image_tensor
from mpanet_tf.data.resample import bilinear_coefficients, resample
from mpanet_tf.errors import BadImageError


def pil_resized(path, size):
    """The authors' pixels: PIL decode, convert("RGB"), bilinear resize to (h, w)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR))


def pillow_coefficients(in_size, out_size):
    """Pillow's precompute_coeffs + normalize_coeffs_8bpc (bilinear), transcribed with Python floats
    (IEEE doubles, the C evaluation order)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    taps = int(np.ceil(support)) * 2 + 1
    firsts, rows = [], []
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - xmin
        weights, total = [], 0.0
        for x in range(count):
            d = abs((x + xmin - center + 0.5) * (1.0 / filterscale))
            w = 1.0 - d if d < 1.0 else 0.0
            weights.append(w)
            total += w
        if total != 0.0:
            weights = [w / total for w in weights]
        weights += [0.0] * (taps - count)
        rows.append([int(0.5 + w * (1 << 22)) for w in weights])
        firsts.append(xmin)
    return np.array(firsts), np.array(rows)


def test_coefficients_equal_pillows_double_precision_arithmetic():
    coefficients = tf.function(bilinear_coefficients, autograph=False,
                               input_signature=[tf.TensorSpec([], tf.int32)] * 2)
    sizes = [1, 2, 3, 5, 7, 10, 13, 31, 32, 33, 48, 64, 97, 127, 128, 129, 255, 256, 288, 383, 384, 385, 1001]
    for in_size in sizes:
        for out_size in sizes:
            first, fixed = coefficients(in_size, out_size)
            expected_first, expected_fixed = pillow_coefficients(in_size, out_size)
            np.testing.assert_array_equal(first.numpy(), expected_first, err_msg=f"{in_size}->{out_size}")
            np.testing.assert_array_equal(fixed.numpy(), expected_fixed, err_msg=f"{in_size}->{out_size}")


INPUT_SHAPES = [(1, 1), (1, 7), (9, 1), (17, 13), (64, 32), (121, 57), (288, 144), (300, 101), (37, 211)]
OUTPUT_SHAPES = [(1, 1), (2, 3), (20, 10), (64, 32), (96, 48), (256, 128), (384, 128), (37, 211)]


def test_resize_equals_pil_for_many_sizes():
    rng = np.random.default_rng(0)
    resize = tf.function(lambda image, h, w: _dynamic_resize(image, h, w), autograph=False,
                         input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                          tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
    for shape in INPUT_SHAPES:
        colour = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        grey = np.repeat(rng.integers(0, 256, (*shape, 1), dtype=np.uint8), 3, axis=2)
        for pixels in (colour, grey):
            for size in OUTPUT_SHAPES:
                expected = np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.BILINEAR))
                # the graph with dynamic input sizes (tf.data, SavedModel) and the eager call
                np.testing.assert_array_equal(resize(pixels, *size).numpy(), expected, err_msg=f"{shape}->{size}")
            eager = resize_image_tensor(pixels, (96, 48)).numpy()
            assert eager.dtype == np.float32
            np.testing.assert_array_equal(eager, Image.fromarray(pixels).resize((48, 96), Image.BILINEAR))


def _dynamic_resize(image, height, width):
    return resample(image, height, width)


def test_both_pass_orders_of_pillow_are_reproduced():
    # Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many
    # pixels as the width; the uint8 rounding between the passes makes the order visible.
    rng = np.random.default_rng(3)
    cases = {(178, 37, 99, 18): "vertical first", (121, 57, 20, 10): "vertical first",
             (76, 148, 8, 78): "horizontal first", (480, 640, 384, 128): "horizontal first"}
    for (h, w, out_h, out_w), order in cases.items():
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), Image.BILINEAR))
        np.testing.assert_array_equal(resize_image_tensor(pixels, (out_h, out_w)).numpy(), expected, err_msg=order)


def test_batched_resize_equals_pil_per_image():
    rng = np.random.default_rng(4)
    batch = rng.integers(0, 256, (3, 50, 30, 3), dtype=np.uint8)
    resized = resize_image_tensor(batch, (64, 32)).numpy()
    assert resized.shape == (3, 64, 32, 3)
    for image, got in zip(batch, resized):
        np.testing.assert_array_equal(got, Image.fromarray(image).resize((32, 64), Image.BILINEAR))


_SPEC = [tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)]
_DYNAMIC_RESIZE = tf.function(resample, autograph=False, input_signature=_SPEC)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(in_h=st.integers(1, 300), in_w=st.integers(1, 300), out_h=st.integers(1, 400), out_w=st.integers(1, 400),
       seed=st.integers(0, 2**32 - 1), smooth=st.booleans())
def test_resize_equals_pil_for_random_sizes_and_images(in_h, in_w, out_h, out_w, seed, smooth):
    # Random sizes (both pass orders, up- and downscales by any factor up to 300x) and random
    # images, noise or smooth (where the rounding between the passes is most often at a .5 edge).
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
    if smooth:
        pixels = np.asarray(Image.fromarray(pixels[:4, :4]).resize((in_w, in_h), Image.BILINEAR))
    expected = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), Image.BILINEAR))
    np.testing.assert_array_equal(_DYNAMIC_RESIZE(pixels, out_h, out_w).numpy(), expected)


@pytest.mark.parametrize("limit", [0, 5000])
def test_sparse_rows_of_huge_downscales_equal_pil(monkeypatch, limit):
    # Past _GATHER_LIMIT gathered products a pass computes its remaining output rows as a sparse
    # matrix product (only huge downscales get there); a lowered limit sends ordinary sizes there,
    # all rows (0) or some of them (5000).
    from mpanet_tf.data import resample as module

    monkeypatch.setattr(module, "_GATHER_LIMIT", limit)
    resize = tf.function(module.resample, autograph=False, input_signature=_SPEC)
    rng = np.random.default_rng(5)
    for (h, w), (out_h, out_w) in [((288, 144), (384, 128)), ((178, 37), (99, 18)), ((40, 300), (7, 11))]:
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), Image.BILINEAR))
        np.testing.assert_array_equal(resize(pixels, out_h, out_w).numpy(), expected, err_msg=f"{(h, w)}")


def test_huge_downscale_equals_pil():
    # 3000x2000 -> 384x128: the first (horizontal) pass would gather ~38M products, over the limit.
    pixels = np.random.default_rng(6).integers(0, 256, (3000, 2000, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).resize((128, 384), Image.BILINEAR))
    np.testing.assert_array_equal(_DYNAMIC_RESIZE(pixels, 384, 128).numpy(), expected)


# ------------------------------------------------------------------------------ file types
def person(shape=(83, 61), seed=0):
    """A smooth picture with noise (JPEG-like content) of (h, w)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (9, 5, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((shape[1], shape[0]), Image.BILINEAR), np.int16)
    return Image.fromarray(np.clip(pixels + rng.integers(-15, 16, pixels.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("types")
    rgb = person()
    grey = rgb.convert("L")
    palette = rgb.convert("P", palette=Image.ADAPTIVE, colors=40)
    rgba = rgb.copy()
    rgba.putalpha(person(seed=1).convert("L"))
    files = {}

    def save(name, image, fmt, **options):
        files[name] = folder / name
        image.save(files[name], fmt, **options)

    for subsampling, tag in ((0, "444"), (1, "422"), (2, "420")):
        save(f"rgb_{tag}.jpg", rgb, "JPEG", quality=90, subsampling=subsampling)
    save("sysu_infrared.jpg", grey, "JPEG", quality=95)
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG", quality=90)
    save("progressive.jpg", rgb, "JPEG", quality=80, progressive=True)
    save("rgb.png", rgb, "PNG")
    save("grey.png", grey, "PNG")
    save("palette.png", palette, "PNG")
    save("palette_transparent.png", palette, "PNG", transparency=3)
    save("rgba.png", rgba, "PNG")
    save("grey_alpha.png", grey.convert("LA"), "PNG")
    grey16 = np.random.default_rng(2).integers(0, 600, (83, 61)).astype(np.uint16)
    save("grey16.png", Image.fromarray(grey16), "PNG")
    save("rgb.bmp", rgb, "BMP")
    save("regdb_thermal.bmp", grey, "BMP")  # 8-bit, grey palette: RegDB's thermal images
    save("palette.bmp", palette, "BMP")     # 8-bit, colour palette
    save("rgba.bmp", rgba, "BMP")
    save("palette.gif", palette, "GIF")
    return files


SIZES = [(384, 128), (256, 128), (96, 48), (83, 61), (20, 10), (101, 3)]


def test_load_image_equals_pil_for_every_file_type(image_files):
    for name, path in image_files.items():
        for size in SIZES:
            got = load_image(path, size)
            assert got.dtype == np.float32 and got.shape == (*size, 3)
            np.testing.assert_array_equal(got, pil_resized(path, size), err_msg=f"{name} at {size}")


def test_decoder_alone_equals_pils_convert_rgb(image_files):
    for name, path in image_files.items():
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGB"))
        decoded = decode_image_tensor(tf.constant(path.read_bytes())).numpy()
        np.testing.assert_array_equal(decoded, expected, err_msg=name)


def test_training_pipeline_and_cache_equal_pil(tmp_path, image_files):
    from mpanet_tf.data.cache import open_cache, prepare_cache
    from mpanet_tf.data.pipeline import _cache_loader, _file_loader
    from mpanet_tf.data.records import ImageRecord

    size = (96, 48)
    paths = [image_files[name] for name in ("rgb_420.jpg", "sysu_infrared.jpg", "regdb_thermal.bmp",
                                              "palette.png", "grey16.png")]
    records = [ImageRecord(str(p), p.name, 1, 1, False, 0) for p in paths]
    load = _file_loader(size)
    dataset = tf.data.Dataset.from_tensor_slices([str(p) for p in paths]).map(load)
    for path, image in zip(paths, dataset):
        np.testing.assert_array_equal(image.numpy(), pil_resized(path, size), err_msg=path.name)
    cache = open_cache(prepare_cache(records, size, tmp_path / "cache", progress=False), records, size)
    read = _cache_loader(cache, size)
    for record, row in zip(records, cache.rows_for(records)):
        np.testing.assert_array_equal(cache.read(row), pil_resized(record.path, size), err_msg=record.relpath)
        np.testing.assert_array_equal(read(tf.constant(row)).numpy(), pil_resized(record.path, size))


# ------------------------------------------------------------------------------- refusals
def _with(path, data):
    path.write_bytes(bytes(data))
    return path


def test_unsupported_and_broken_files_are_refused_naming_the_file(tmp_path, image_files):
    one_bit = tmp_path / "one_bit.bmp"
    person().convert("1").save(one_bit)
    jpeg = image_files["rgb_420.jpg"].read_bytes()
    cases = {
        one_bit: "unsupported BMP variant (1-bit",
        _with(tmp_path / "garbage.jpg", b"these bytes are no image " * 4): "truncated or not an image",
        _with(tmp_path / "truncated.jpg", jpeg[:len(jpeg) // 2]): "truncated or not an image",
        _with(tmp_path / "empty.png", b""): "truncated or not an image",
    }
    for path, reason in cases.items():
        with pytest.raises(BadImageError) as caught:
            load_image(path, (20, 10))
        assert str(path) in str(caught.value) and reason in str(caught.value), str(caught.value)


def test_images_above_the_pixel_cap_are_refused_before_decoding(tmp_path, image_files):
    png = bytearray(image_files["rgb.png"].read_bytes())
    png[16:24] = struct.pack(">II", 100_000, 100_000)
    bmp = bytearray(image_files["rgb.bmp"].read_bytes())
    bmp[18:26] = struct.pack("<ii", 20_000, -20_000)  # top-down BMP: negative height
    jpeg = bytearray(image_files["rgb_444.jpg"].read_bytes())
    frame = jpeg.find(b"\xff\xc0")
    jpeg[frame + 5:frame + 9] = struct.pack(">HH", 60_000, 60_000)
    gif = bytearray(image_files["palette.gif"].read_bytes())
    gif[6:10] = struct.pack("<HH", 65_000, 65_000)
    cases = {"huge.png": (png, "100000x100000"), "huge.bmp": (bmp, "20000x20000"),
             "huge.jpg": (jpeg, "60000x60000"), "huge.gif": (gif, "65000x65000")}
    for name, (data, declared) in cases.items():
        path = _with(tmp_path / name, data)
        with pytest.raises(BadImageError) as caught:
            load_image(path, (20, 10))
        message = str(caught.value)
        assert str(path) in message and f"{declared} pixels, above the limit of 50 megapixels" in message, message
    # the cap is on the declared size: just below it passes the check (and then fails to decode
    # the cut-off pixel data, as a truncated file)
    side = int(MAX_PIXELS ** 0.5)
    png[16:24] = struct.pack(">II", side, side)
    with pytest.raises(BadImageError, match="truncated or not an image"):
        load_image(_with(tmp_path / "below.png", png), (20, 10))
