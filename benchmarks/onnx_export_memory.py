"""Peak resident memory of ``export --format onnx``, stage by stage (issue 26, item 7).

    python benchmarks/onnx_export_memory.py [--model RUN_OR_KERAS] [--size 64x32] [--from-function]

Without ``--model`` a tiny random MPANet (``--size`` input, ResNet-50 backbone, as the tests'
``write_tiny_run``) is built first. The export's stages are wrapped, and each one's peak is the
kernel's high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs`` at every stage
boundary, so no spike is missed): tracing and freezing the embedding (with grappler), tf2onnx's
conversion (``process_tf_graph``), its optimizer passes, building the ``ModelProto`` and writing it.
``--from-function`` converts the way the project did before (``tf2onnx.convert.from_function``,
unguarded passes) for comparison. The figure RESULTS.md and the README state is the peak during
the export and its growth over the RSS before it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GIB = 2 ** 30


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Stages:
    """Peak resident memory per named stage (nested stages count in their callers too)."""

    def __init__(self):
        self.peaks, self.order, self.active = {}, [], []

    def _mark(self):
        """Credit the high-water mark since the last boundary to every active stage, then reset it."""
        high = _status("VmHWM")
        for name in self.active:
            self.peaks[name] = max(self.peaks.get(name, 0), high)
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # VmHWM := VmRSS (Linux >= 4.0)

    @contextlib.contextmanager
    def during(self, name: str):
        self._mark()
        self.active.append(name)
        if name not in self.order:
            self.order.append(name)
        try:
            yield
        finally:
            self._mark()
            self.active.remove(name)

    def wrap(self, owner, attribute: str, name: str):
        original = getattr(owner, attribute)

        def wrapped(*args, **kwargs):
            with self.during(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)


def from_function(model, path, opset: int = 17) -> None:
    """The conversion before issue 26 item 7: ``tf2onnx.convert.from_function``, unguarded passes."""
    import tensorflow as tf
    import tf2onnx.convert

    from mpanet_tf.inference import embedding_function

    embedding = embedding_function(model)

    @tf.function(input_signature=embedding.input_signature, autograph=False)
    def function(images):
        return {"embeddings": embedding.tensor(images)}

    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset,
                                  output_path=os.fspath(path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run folder or .keras file (default: a tiny random MPANet)")
    parser.add_argument("--size", default="64x32", help="input HxW of the tiny model")
    parser.add_argument("--from-function", action="store_true",
                        help="convert with tf2onnx.convert.from_function (the former way)")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf2onnx.convert
    import tf2onnx.graph
    import tf2onnx.optimizer
    import tf2onnx.tf_loader
    import tf2onnx.tfonnx

    from mpanet_tf.export import export_model
    from mpanet_tf.model import load_model
    from mpanet_tf.runtimes import onnx_conversion

    work = Path(tempfile.mkdtemp(prefix="onnx-memory-"))
    model = args.model
    if model is None:
        from tests.export.test_savedmodel import tiny_config, write_tiny_run
        from mpanet_tf.config import parse_image_size

        config = tiny_config()
        config.model.image_height, config.model.image_width = parse_image_size(args.size)
        import tests.export.test_savedmodel as helpers

        helpers.tiny_config = lambda: config
        model = write_tiny_run(work / "run")[0]
    model = load_model(model)

    stages = Stages()
    if args.from_function:
        stages.wrap(tf2onnx.tf_loader, "from_function", "freeze + grappler (tf_loader.from_function)")
        stages.wrap(tf2onnx.convert, "process_tf_graph", "convert (process_tf_graph)")
        stages.wrap(tf2onnx.utils, "save_protobuf", "write (save_protobuf)")
    else:
        stages.wrap(onnx_conversion, "freeze", "freeze + grappler (onnx_conversion.freeze)")
        stages.wrap(tf2onnx.tfonnx, "process_tf_graph", "convert (process_tf_graph)")
        stages.wrap(onnx_conversion, "write_model", "write (write_model)")
    stages.wrap(tf2onnx.optimizer, "optimize_graph", "optimizer passes (optimize_graph)")
    stages.wrap(tf2onnx.graph.Graph, "make_model", "build the ModelProto (make_model)")

    import gc

    gc.collect()
    baseline = _status("VmRSS")
    start = time.monotonic()
    with stages.during("the whole export"):
        if args.from_function:
            from_function(model, work / "model.onnx")
            onnx_file = work / "model.onnx"
        else:
            export_model(model, work / "out", formats=("onnx",))
            onnx_file = work / "out" / "onnx" / "1" / "model.onnx"
    seconds = time.monotonic() - start
    way = "tf2onnx.convert.from_function" if args.from_function else "export_model (onnx_conversion)"
    print(f"{way}: model.onnx {onnx_file.stat().st_size / 1e6:.1f} MB in {seconds:.1f} s; "
          f"RSS before the export {baseline / GIB:.2f} GiB")
    for name in stages.order:
        peak = stages.peaks.get(name, 0)
        print(f"  peak RSS during {name:48s} {peak / GIB:6.2f} GiB  (+{(peak - baseline) / GIB:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
