"""Serving latency of the exported MPANet embedding: TF SavedModel vs ONNX Runtime, on CPU.

Builds a randomly initialised full-size SYSU model (384x128 input, 14336-d embedding; weights do
not change the cost), exports it with :func:`mpanet_tf.export.export_model` (SavedModel + ONNX,
opset 17) into a temporary folder and times:

- ``savedmodel``: the ``serving_default`` signature on uint8 (B, 384, 128, 3), which includes the
  (identity-size) resize, loaded with plain ``tf.saved_model.load``;
- ``onnxruntime``: the ONNX file on float32 (B, 384, 128, 3), CPUExecutionProvider.

For each batch size: ``--warmup`` untimed calls, then ``--repeats`` timed calls; the median and the
90th percentile of the per-call wall time are reported, with images/s at the median. Also reports
max |ONNX - SavedModel| on the same random batch (the full-size parity check).

Usage::

    python benchmarks/serving_latency.py --repeats 20 --output serving.md   # then paste into benchmarks/RESULTS.md
    nice -n 19 python benchmarks/serving_latency.py        # on a shared machine

The Markdown written to ``--output`` names the machine (``nproc``, ``lscpu | head -15``, load).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU serving latency
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _shell(command: str) -> str:
    try:
        return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(unavailable)"


def time_calls(fn, warmup: int, repeats: int) -> np.ndarray:
    """Seconds per call of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per batch size (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--ort-threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads (default 0 = ORT's choice, all cores)")
    parser.add_argument("--export-dir", default=None,
                        help="reuse/keep the export here instead of a temporary folder")
    parser.add_argument("--output", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.export import export_model
    from mpanet_tf.model import build_model
    from mpanet_tf.runtimes import format_names, get_runtime
    from mpanet_tf.runtimes.onnx import onnx_session

    load_at_start = _shell("cat /proc/loadavg")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    config = MPANetConfig()  # SYSU preset: 384 x 128
    height, width = config.model.image_height, config.model.image_width
    with tempfile.TemporaryDirectory() as temporary:
        base = Path(args.export_dir or Path(temporary) / "mpanet")
        started = time.perf_counter()
        export_seconds = None
        # every --format runtime of the registry ("all"), each found in the export folder as a user's
        # path would be
        found = {name: get_runtime(name).find(base) for name in format_names()}
        if None in found.values():
            model = build_model(config, num_classes=395)
            export_model(model, base, formats="all", force=True)
            export_seconds = time.perf_counter() - started
            del model
            found = {name: get_runtime(name).find(base) for name in format_names()}
        loaded = tf.saved_model.load(str(found["savedmodel"]))
        serve = loaded.signatures["serving_default"]
        session = onnx_session(found["onnx"], threads=args.ort_threads or None)

        rng = np.random.default_rng(0)
        rows, parity = [], None
        sizes = {get_runtime(name).label: sum(f.stat().st_size for f in (p if p.is_dir() else p.parent).rglob("*")
                                              if f.is_file()) / 2**20
                 for name, p in found.items()}
        for batch in batch_sizes:
            images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
            uint8_images = tf.constant(images)
            floats = images.astype(np.float32)  # the resize is an identity at the model's own size
            runners = {
                "savedmodel (uint8, serving_default)": lambda: serve(images=uint8_images)["embeddings"].numpy(),
                "onnxruntime (float32)": lambda: session.run(["embeddings"], {"images": floats})[0],
            }
            if parity is None:
                reference = runners["savedmodel (uint8, serving_default)"]()
                parity = (float(np.abs(runners["onnxruntime (float32)"]() - reference).max()),
                          float(np.abs(reference).max()))
            for name, run in runners.items():
                seconds = time_calls(run, args.warmup, args.repeats)
                median, p90 = np.median(seconds), np.percentile(seconds, 90)
                rows.append((name, batch, 1000 * median, 1000 * p90, batch / median))
                print(f"{name:38s} batch {batch:3d}: median {1000 * median:9.1f} ms  p90 {1000 * p90:9.1f} ms  "
                      f"{batch / median:7.1f} img/s", flush=True)

    import onnxruntime

    lines = [
        "# Serving latency: SavedModel vs ONNX Runtime (CPU)",
        "",
        f"Command: `python benchmarks/serving_latency.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Model: randomly initialised full-size MPANet (SYSU preset), input {height}x{width}, embedding "
        f"{config.model.feature_dim}-d. {args.warmup} warm-up calls, {args.repeats} timed calls per row.",
        f"Versions: TensorFlow {tf.__version__}, ONNX Runtime {onnxruntime.__version__}, Python "
        f"{platform.python_version()}. ONNX intra-op threads: {args.ort_threads or 'default'}; TF threads: default.",
        f"Full-size parity on a random batch: max |ONNX - SavedModel| = {parity[0]:.2e} "
        f"(max |embedding| {parity[1]:.1f}; a random network is less well conditioned than a trained one).",
        f"Artifact sizes: SavedModel {sizes['SavedModel']:.0f} MiB, ONNX {sizes['ONNX']:.0f} MiB.",
    ]
    if export_seconds is not None:
        lines.append(f"Export (SavedModel + ONNX) took {export_seconds:.0f} s.")
    lines += [
        "",
        "| runtime | batch | median ms | p90 ms | images/s (median) |",
        "|---|---:|---:|---:|---:|",
        *[f"| {name} | {batch} | {median:.1f} | {p90:.1f} | {rate:.1f} |" for name, batch, median, p90, rate in rows],
        "",
        "## Machine",
        "",
        f"`nproc`: {_shell('nproc')}; load average at the start: {load_at_start}; at the end: "
        f"{_shell('cat /proc/loadavg')}. On a shared machine the figures move with the load: "
        "compare rows of one run, not runs.",
        "",
        "```",
        _shell("lscpu | head -15"),
        "```",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        Path(args.output).write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
