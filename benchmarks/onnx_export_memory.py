"""Peak resident memory of ``export --format onnx``, stage by stage (issue 26, item 7).

    python benchmarks/onnx_export_memory.py [--model RUN_OR_KERAS] [--size 64x32]

Without ``--model`` a tiny random MPANet (``--size`` input, ResNet-50 backbone, as the tests'
``write_tiny_run``) is built first. A thread samples ``VmRSS`` every 10 ms while the export runs;
tf2onnx's stages are wrapped so each one's peak is reported: loading the model, tracing the
embedding, freezing the graph (``tf_loader.from_function``), importing the frozen GraphDef and
converting it (``process_tf_graph``), the optimizer passes, building and writing the ONNX proto.
``VmHWM`` (the kernel's high-water mark) is printed at the end; that is the figure RESULTS.md and
the README state.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Max VmRSS per named stage, sampled every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.stage, self.peaks, self.order = interval, "start", {}, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            rss = _status("VmRSS")
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            time.sleep(self.interval)

    @contextlib.contextmanager
    def during(self, name: str):
        outer = self.stage
        self.stage = name
        self.order.append(name) if name not in self.order else None
        try:
            yield
        finally:
            self.stage = outer

    def wrap(self, owner, attribute: str, name: str):
        original = getattr(owner, attribute)

        def wrapped(*args, **kwargs):
            with self.during(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, wrapped)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run folder or .keras file (default: a tiny random MPANet)")
    parser.add_argument("--size", default="64x32", help="input HxW of the tiny model")
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with Sampler() as sampler:
        with sampler.during("import tensorflow, tf2onnx"):
            import tf2onnx.convert
            import tf2onnx.optimizer
            import tf2onnx.tf_loader

            from mpanet_tf.export import export_model
        work = Path(tempfile.mkdtemp(prefix="onnx-memory-"))
        model = args.model
        if model is None:
            with sampler.during("build the tiny model"):
                from tests.export.test_savedmodel import tiny_config, write_tiny_run
                from mpanet_tf.config import parse_image_size

                config = tiny_config()
                config.model.image_height, config.model.image_width = parse_image_size(args.size)
                import tests.export.test_savedmodel as helpers

                helpers.tiny_config = lambda: config
                model = write_tiny_run(work / "run")[0]
        sampler.wrap(tf2onnx.tf_loader, "from_function", "freeze the graph (tf_loader.from_function)")
        sampler.wrap(tf2onnx.convert, "process_tf_graph", "convert (process_tf_graph)")
        sampler.wrap(tf2onnx.optimizer, "optimize_graph", "optimizer passes")
        sampler.wrap(tf2onnx.utils, "save_protobuf", "write the proto")
        baseline = _status("VmRSS")
        start = time.monotonic()
        with sampler.during("export (load, trace, make_model, rest)"):
            export_model(model, work / "out", formats=("onnx",))
        seconds = time.monotonic() - start
    size = (work / "out" / "onnx" / "1" / "model.onnx").stat().st_size
    print(f"model.onnx: {size / 1e6:.1f} MB; export took {seconds:.1f} s; RSS before the export "
          f"{baseline / 2**30:.2f} GiB")
    for name in sampler.order:
        print(f"  peak RSS during {name:45s} {sampler.peaks.get(name, 0) / 2**30:6.2f} GiB")
    print(f"VmHWM (peak resident set of the process): {_status('VmHWM') / 2**30:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
