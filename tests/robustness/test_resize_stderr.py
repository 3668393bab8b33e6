"""The exact resize prints nothing on stderr, in ``tf.data`` and in a ``tf.function`` (issue 25).

With oneDNN on (``import mpanet_tf`` sets ``TF_ENABLE_ONEDNN_OPTS=1``), a transpose of uint8 or
int32 makes TensorFlow print ``E... util.cc:131] oneDNN supports DT_UINT8 only on platforms with
AVX-512`` on CPUs without AVX-512, and a ``tf.cond`` holding a ``tf.while_loop`` made grappler
print a "topological sort failed" line; either breaks the CLI's one line on stderr
(test_truncated_jpeg_stderr.py). So a subprocess with TensorFlow's full logging resizes images of
odd sizes (upscale, mild and huge downscales, both of Pillow's pass orders, a batch) through both
and checks the pixels against PIL and that stderr has no error line. (On a CPU with AVX-512 the
uint8 line would not print; the test still checks the pixels.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

CHILD = r"""
import numpy as np
from PIL import Image

from mpanet_tf.tf_runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()  # as the CLI does: TensorFlow's start-up lines (cuInit...) silenced

from mpanet_tf.data.images import resize_image_tensor

rng = np.random.default_rng(0)
cases = [((288, 144), (384, 128)), ((121, 57), (384, 128)), ((600, 300), (384, 128)), ((178, 37), (99, 18)),
         ((3000, 2000), (384, 128))]
images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape, _ in cases]
expected = [np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
            for image, (_, size) in zip(images, cases)]
for (shape, size), image, want in zip(cases, images, expected):
    dataset = tf.data.Dataset.from_tensors(image).map(lambda x: resize_image_tensor(x, size))
    got = next(iter(dataset)).numpy()
    np.testing.assert_array_equal(got, want, err_msg=f"tf.data {shape} -> {size}")
    resize = tf.function(lambda x: resize_image_tensor(x, size), autograph=False,
                         input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    np.testing.assert_array_equal(resize(image).numpy(), want, err_msg=f"tf.function {shape} -> {size}")
batch = rng.integers(0, 256, (3, 50, 30, 3), dtype=np.uint8)
got = next(iter(tf.data.Dataset.from_tensors(batch).map(lambda x: resize_image_tensor(x, (9, 32))))).numpy()
for image, resized in zip(batch, got):
    np.testing.assert_array_equal(resized, Image.fromarray(image).resize((32, 9), Image.BILINEAR))
print("pixels equal")
"""

#: An absl/glog line of severity E (error) or F (fatal): ``E0000 00:00:...`` or ``E1202 12:59:...``.
ERROR_LINE = re.compile(r"^[EF]\d{4} ")


def test_resize_prints_no_error_line_in_tf_data_or_tf_function():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MPANET_TF_VERBOSE_TF")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    env["CUDA_VISIBLE_DEVICES"] = ""
    completed = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "pixels equal" in completed.stdout
    errors = [line for line in completed.stderr.splitlines() if ERROR_LINE.match(line)]
    assert not errors, "\n".join(errors)
