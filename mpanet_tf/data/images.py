"""The one image-loading path shared by training, evaluation, export and search.

Every consumer (the training pipeline and its cache, evaluation, ``prepare``, ``search``,
``visualize`` and both SavedModel signatures) gets, bit for bit, the pixels of the authors'
pipeline, ``PIL.Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)`` (facts §3.3), as
float32 (h, w, 3) whole values in [0, 255]. Everything is TensorFlow ops, so the SavedModel stays
free of Python. ImageNet normalisation happens inside the model
(:class:`mpanet_tf.layers.image_normalization.ImageNormalization`).

Decoding (:func:`decode_image_tensor`), by the file's magic bytes:

- JPEG: ``tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")``, libjpeg's accurate integer IDCT and
  fancy chroma upsampling, as PIL decodes (TensorFlow's default fast IDCT differs by up to 7 grey
  levels). Greyscale JPEGs are replicated to 3 channels, as PIL's ``convert("RGB")`` does.
- PNG: libpng's 8-bit RGB, which equals PIL's ``convert("RGB")`` for grey, palette (transparency
  ignored), grey+alpha and RGBA (alpha dropped) and 16-bit colour (high byte). 16-bit greyscale is
  PIL's mode ``I;16``, which ``convert("RGB")`` saturates at 255; that is reproduced.
- BMP: 24/32-bit as TensorFlow decodes them; 8-bit (RegDB's thermal images) through the file's
  own palette, as PIL does. 1/4/16-bit and run-length-encoded BMPs are refused with a reason.
- GIF: the first frame. Anything else is refused.

Before any decoding the size declared in the header is checked against :data:`MAX_PIXELS`, so a
hostile or absurd file is refused without allocating its pixels.

Resizing is :mod:`mpanet_tf.data.resample` (Pillow's bilinear ``ImagingResample`` rebuilt in
TensorFlow ops, bit for bit); :func:`resize_image_tensor` is imported from there.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np

from mpanet_tf.data.resample import resample, resize_image_tensor  # noqa: F401 (resize_image_tensor: the public name)
from mpanet_tf.errors import BadImageError

#: The reason given for a file whose bytes do not decode (TensorFlow's own message names its
#: kernel and device, not the problem).
UNDECODABLE = "truncated or not an image"

#: Largest image (width x height as declared in its header) that is decoded. 50 megapixels is
#: 50 times a full-HD frame and ~1000 times a SYSU-MM01 person crop; decoding it takes 150 MB as
#: uint8, which a few parallel pipeline workers can afford. Larger files are refused before any
#: pixel is allocated (a 100000x100000 header would otherwise ask for 30 GB).
MAX_PIXELS = 50_000_000

#: Largest image file read at all (bytes), checked with ``stat`` before opening: a 50-megapixel
#: 16-bit RGB PNG stored without compression (about 300 MB) still fits.
MAX_FILE_BYTES = 320 * 2**20
#: A file may hold at most this many bytes per declared pixel (8: 16-bit RGBA, uncompressed) plus
#: :data:`HEADER_SLACK_BYTES` of metadata (EXIF, ICC profiles, thumbnails); more is not an image
#: of that size (a 100 MB file with the header of a 64x32 JPEG is refused before decoding).
MAX_BYTES_PER_PIXEL = 8
HEADER_SLACK_BYTES = 16 * 2**20
#: Bytes read first by :func:`read_image_file`: the header (a JPEG's size follows its APP
#: segments) is checked on them before the rest of the file is read.
HEAD_BYTES = 256 * 1024

# An in-graph refusal carries its reason between these markers through TensorFlow's error text.
_REASON = re.compile(r"<<(.*?)>>")
_JPEG, _PNG, _BMP, _GIF, _OTHER = range(5)
#: (magic bytes, kind, file suffix) of the formats decoded, by the bytes that start the file.
_MAGIC = ((b"GIF8", _GIF, ".gif"), (b"BM", _BMP, ".bmp"), (b"\x89PNG\r\n\x1a\n", _PNG, ".png"),
          (b"\xff\xd8\xff", _JPEG, ".jpg"))
_HEADER_BYTES = 64


def decode_error_reason(error) -> str:
    """The short reason of a decode failure raised by :func:`decode_image_tensor` (a TensorFlow
    error): the refusal's own words when it is one of ours, else :data:`UNDECODABLE`."""
    match = _REASON.search(str(error))
    return match.group(1) if match else UNDECODABLE


# ------------------------------------------------------------------ decoding
def _refuse(ok, reason):
    """An assertion op: fails with ``reason`` (a string tensor) when ``ok`` is false."""
    import tensorflow as tf

    return tf.debugging.Assert(ok, [tf.strings.join(["<<", reason, ">>"])])


def _header(data):
    """The first :data:`_HEADER_BYTES` bytes of ``data``, zero-padded, as int64 (64,)."""
    import tensorflow as tf

    padded = tf.strings.join([tf.strings.substr(data, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES])
    head = tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8)
    return tf.cast(tf.reshape(head, [_HEADER_BYTES]), tf.int64)


def _number(head, start, length, big_endian=False):
    """Unsigned integer of ``length`` header bytes at ``start`` (int64 scalar)."""
    value = 0
    order = range(start, start + length) if big_endian else range(start + length - 1, start - 1, -1)
    for index in order:
        value = value * 256 + head[index]
    return value


def _kind(head):
    import tensorflow as tf

    def starts(magic):
        return tf.reduce_all(tf.equal(head[:len(magic)], tf.constant(list(magic), tf.int64)))

    kind = tf.constant(_OTHER)
    for magic, value, _ in _MAGIC:
        kind = tf.where(starts(magic), tf.constant(value), kind)
    return kind


def image_suffix(data: bytes) -> str | None:
    """The file suffix (``".jpg"``, ``".png"``, ``".bmp"``, ``".gif"``) that the magic bytes at the
    start of ``data`` name, as :func:`decode_image_tensor` sniffs them; None for anything else."""
    return next((suffix for magic, _, suffix in _MAGIC if bytes(data[:len(magic)]) == magic), None)


def _declared_size(data, head, kind):
    """(height, width) int64 that the header declares, without decoding the pixels."""
    import tensorflow as tf

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(data), tf.int64)
        return shape[0], shape[1]

    def png():
        return _number(head, 20, 4, big_endian=True), _number(head, 16, 4, big_endian=True)

    def bmp():
        height = _number(head, 22, 4)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative: a top-down BMP
        return height, _number(head, 18, 4)

    def gif():
        return _number(head, 8, 2), _number(head, 6, 2)

    def other():
        return tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    return tf.switch_case(kind, [jpeg, png, bmp, gif, other])


def _jpeg_complete(data):
    """True when the JPEG has a scan (SOS marker) followed by its end (EOI marker).

    A truncated JPEG is refused here, before libjpeg sees it: libjpeg writes its complaint
    ("Premature end of JPEG data", "Improper call to JPEG library") straight to stderr, around the
    one-line error the CLI promises. Entropy-coded data cannot hold either marker (0xFF is stuffed),
    so the last SOS before the last EOI means the last scan ended properly.
    """
    import tensorflow as tf

    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    flag, code = raw[:-1], raw[1:]
    position = tf.range(tf.size(code))
    none = tf.fill(tf.shape(position), -1)

    def last(marker):
        return tf.reduce_max(tf.concat([[-1], tf.where((flag == 0xFF) & (code == marker), position, none)], 0))

    last_scan = last(0xDA)
    return tf.logical_and(last_scan >= 0, last(0xD9) > last_scan)


def _decode_bmp(data, head):
    """uint8 (H, W, 3) of a BMP: 24/32-bit directly, 8-bit through its palette (as PIL does)."""
    import tensorflow as tf

    dib = _number(head, 14, 4)
    bits = _number(head, 28, 2)
    compression = _number(head, 30, 4)
    supported = tf.logical_and(
        dib >= 40,
        tf.logical_or(tf.logical_and(tf.equal(bits, 8), tf.equal(compression, 0)),
                      tf.logical_and(tf.logical_or(tf.equal(bits, 24), tf.equal(bits, 32)),
                                     tf.logical_or(tf.equal(compression, 0), tf.equal(compression, 3)))))
    check = _refuse(supported, tf.strings.format(
        "unsupported BMP variant ({}-bit, compression {}); save it as a 24-bit or 8-bit BMP, PNG or JPEG",
        (bits, compression)))
    with tf.control_dependencies([check]):
        image = tf.io.decode_bmp(data, channels=3)

    def paletted():
        colours = _number(head, 46, 4)
        colours = tf.where(tf.logical_or(colours == 0, colours > 256), tf.constant(256, tf.int64), colours)
        raw = tf.io.decode_raw(tf.strings.substr(data, 14 + dib, 4 * colours), tf.uint8)
        palette = tf.reverse(tf.reshape(raw, [colours, 4])[:, :3], axis=[1])  # BGRX -> RGB
        index = tf.minimum(tf.cast(image[..., 0], tf.int64), colours - 1)
        return tf.gather(palette, index)

    return tf.cond(tf.equal(bits, 8), paletted, lambda: image)


def _decode_png(data, head):
    """uint8 (H, W, 3) of a PNG; 16-bit greyscale saturates at 255 as PIL's ``I;16`` -> RGB does."""
    import tensorflow as tf

    grey16 = tf.logical_and(tf.equal(head[24], 16), tf.equal(head[25], 0))

    def saturated():
        return tf.cast(tf.minimum(tf.io.decode_png(data, channels=3, dtype=tf.uint16), 255), tf.uint8)

    return tf.cond(grey16, saturated, lambda: tf.io.decode_png(data, channels=3))


def _check_declared(size, height, width, max_pixels: int):
    """Assertion ops: the declared ``height`` x ``width`` is at most ``max_pixels`` and the file's
    ``size`` in bytes is plausible for it (:data:`MAX_BYTES_PER_PIXEL`, :data:`HEADER_SLACK_BYTES`)."""
    import tensorflow as tf

    small = _refuse(height * width <= max_pixels, tf.strings.format(
        "{}x{} pixels, above the limit of {} megapixels; downscale the file",
        (width, height, max_pixels // 1_000_000)))
    plausible = _refuse(size <= MAX_BYTES_PER_PIXEL * height * width + HEADER_SLACK_BYTES, tf.strings.format(
        "{} bytes for a {}x{} image, far more than such an image holds; re-save the file", (size, width, height)))
    return [small, plausible]


def _header_checker():
    """One traced function (first bytes, file size) -> () that fails as :func:`decode_image_tensor`
    would on the header: unknown format, too many pixels, implausible size."""
    global _HEADER_CHECK
    if _HEADER_CHECK is None:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)], autograph=False)
        def check(head_bytes, size):
            head = _header(head_bytes)
            kind = _kind(head)
            known = _refuse(tf.not_equal(kind, _OTHER), tf.constant(UNDECODABLE))
            with tf.control_dependencies([known]):
                height, width = _declared_size(head_bytes, head, kind)
            with tf.control_dependencies(_check_declared(size, height, width, MAX_PIXELS)):
                return tf.constant(True)

        _HEADER_CHECK = check
    return _HEADER_CHECK


_HEADER_CHECK = None


def image_file_problem(path) -> str | None:
    """Why ``path`` cannot be opened as an image, from ``stat`` alone (nothing is read), or None:
    missing, not a regular file (a folder, a device such as ``/dev/zero``, a pipe that would wait
    for a writer) or larger than :data:`MAX_FILE_BYTES`."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as error:
        return getattr(error, "strerror", None) or str(error)
    if not stat.S_ISREG(info.st_mode):
        return "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
    if info.st_size > MAX_FILE_BYTES:
        return f"{info.st_size} bytes, above the limit of {MAX_FILE_BYTES // 2**20} MiB for an image file"
    return None


def read_image_file(path) -> bytes:
    """The bytes of an image file, read only once its header is checked: a regular file of at most
    :data:`MAX_FILE_BYTES` (:func:`image_file_problem`, on the opened file); its first
    :data:`HEAD_BYTES` must declare a known format of at most :data:`MAX_PIXELS` pixels for which
    the file's size is plausible. A JPEG whose size is not within its first :data:`HEAD_BYTES` is
    refused as undecodable.

    Raises:
        BadImageError: naming the file and the reason.
    """
    import tensorflow as tf

    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError) as error:
        raise BadImageError(path, getattr(error, "strerror", None) or str(error)) from None
    problem = image_file_problem(fd)
    if problem:
        os.close(fd)
        raise BadImageError(path, problem)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(fd).st_size
        head = handle.read(HEAD_BYTES)
        try:
            _header_checker()(tf.constant(head), tf.constant(size, tf.int64))
        except (tf.errors.InvalidArgumentError, ValueError) as error:
            raise BadImageError(path, decode_error_reason(error)) from None
        return head + handle.read(MAX_FILE_BYTES)


def decode_image_tensor(data, max_pixels: int = MAX_PIXELS):
    """tf string scalar (JPEG/PNG/BMP/GIF bytes) -> uint8 (H, W, 3), PIL's ``convert("RGB")``
    pixels. Graph-safe.

    A file whose header declares more than ``max_pixels`` pixels, an unsupported BMP variant or
    bytes of no known format fail with a TensorFlow error whose reason
    :func:`decode_error_reason` extracts.
    """
    import tensorflow as tf

    head = _header(data)
    kind = _kind(head)
    known = _refuse(tf.not_equal(kind, _OTHER), tf.constant(UNDECODABLE))
    with tf.control_dependencies([known]):
        complete = _refuse(tf.cond(tf.equal(kind, _JPEG), lambda: _jpeg_complete(data), lambda: tf.constant(True)),
                           tf.constant(UNDECODABLE))
    with tf.control_dependencies([complete]):
        height, width = _declared_size(data, head, kind)
    small = _check_declared(tf.cast(tf.strings.length(data), tf.int64), height, width, max_pixels)
    with tf.control_dependencies(small):
        image = tf.switch_case(kind, [
            lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
            lambda: _decode_png(data, head),
            lambda: _decode_bmp(data, head),
            lambda: tf.io.decode_gif(data)[0],
            lambda: tf.zeros([0, 0, 3], tf.uint8),
        ])
    image.set_shape([None, None, 3])
    return image


# -------------------------------------------------------------- eager loading
_LOADER = None


def _loader():
    """One traced function (string scalar, int32 [2]) -> float32 (h, w, 3), shared by every call."""
    global _LOADER
    if _LOADER is None:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([2], tf.int32)],
                     autograph=False)
        def load(data, size):
            image = decode_image_tensor(data)
            return resample(image, size[0], size[1])

        _LOADER = load
    return _LOADER


def load_image(path, size) -> np.ndarray:
    """Read one image file -> float32 (h, w, 3) in [0, 255] at ``size`` = (h, w): PIL's
    ``Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)``, bit for bit.

    Raises:
        BadImageError: the file is missing, truncated, not an image, an unsupported variant or
            above :data:`MAX_PIXELS`.
    """
    import tensorflow as tf

    path = os.fspath(path)
    try:
        data = read_image_file(path)
    except OSError as error:
        raise BadImageError(path, error.strerror or str(error)) from None
    return image_from_bytes(data, size, path)


def image_from_bytes(data: bytes, size, name: str = "upload") -> np.ndarray:
    """Encoded file bytes -> float32 (h, w, 3) in [0, 255] at ``size`` = (h, w), exactly as
    :func:`load_image` reads a file holding them (an upload to ``mpanet-tf serve``).

    Raises:
        BadImageError: the bytes are truncated, not an image, an unsupported variant or above
            :data:`MAX_PIXELS` (naming ``name``).
    """
    import tensorflow as tf

    try:
        return _loader()(tf.constant(data), tf.constant([int(size[0]), int(size[1])], tf.int32)).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        # TensorFlow's message names its kernel and device, not the file: say what it means.
        raise BadImageError(name, decode_error_reason(error)) from None
