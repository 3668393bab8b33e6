"""Peak memory of the ONNX conversion (issue 26, item 7): converting the tests' tiny MPANet
(ResNet-50 + PAM, 64x32 input, 97 MB of weights) stays under :data:`BOUND` above the resident
memory before it.

Measured on a loaded 2-core AMD EPYC: ~0.4 GiB with :mod:`mpanet_tf.runtimes.onnx_conversion`;
~4.5 GiB through ``tf2onnx.convert.from_function`` (``benchmarks/RESULTS.md``). The conversion runs
in a fresh interpreter, which resets its high-water mark (``VmHWM``) just before it; ~40 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GIB = 2 ** 30
#: Allowed growth of the peak resident set over the RSS before the conversion (about ten times
#: the tiny model's 97 MB of weights).
BOUND = 1 * GIB

SCRIPT = r"""
import gc, json, sys

import keras

from mpanet_tf.model import build_model
from mpanet_tf.runtimes.onnx import write_onnx
from tests.export.test_savedmodel import tiny_config


def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024


keras.utils.set_random_seed(0)
model = build_model(tiny_config(), num_classes=4)
gc.collect()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # VmHWM := VmRSS (Linux >= 4.0)
write_onnx(model, sys.argv[1])
print(json.dumps({"before": before, "peak": status("VmHWM")}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_the_onnx_conversion_peak_stays_bounded(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "model.onnx")], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    growth = report["peak"] - report["before"]
    assert (tmp_path / "model.onnx").stat().st_size > 90e6  # the weights are in the file
    assert growth < BOUND, (f"the ONNX conversion peaked {growth / GIB:.2f} GiB above the "
                            f"{report['before'] / GIB:.2f} GiB before it (bound {BOUND / GIB:.1f} GiB)")


def test_write_model_writes_the_bytes_of_serialize_to_string(tmp_path):
    """One initialiser at a time, the file is byte for byte the canonical encoding (fields on both
    sides of ``graph`` and of ``initializer`` included, a tensor of more than 2**14 bytes for a
    multi-byte length)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from mpanet_tf.runtimes.onnx_conversion import write_model

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w", (64, 300)), ("b", (300,)), ("s", ()))]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "b"], ["z"]),
         helper.make_node("Mul", ["z", "s"], ["out"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 300])], initializer=weights,
        doc_string="after the initialisers", value_info=[helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, producer_name="test", doc_string="before the graph",
                              opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"after": "the graph"})
    expected = model.SerializeToString()
    write_model(model, tmp_path / "model.onnx")
    assert (tmp_path / "model.onnx").read_bytes() == expected
    onnx.checker.check_model(onnx.load(str(tmp_path / "model.onnx")))
