"""Where an exported ONNX model (float32 or int8) spends its time: ONNX Runtime's profiler, per op type.

Runs ``--runs`` calls of the model on one batch of random uint8-range images with
``SessionOptions.enable_profiling`` and sums the profiler's kernel times per op type (``QLinearConv``, ``Conv``, ``Transpose``...): the share of each is how
benchmarks/RESULTS.md explains the int8 speed-up. ONNX Runtime writes its trace (a JSON file,
~1 MB) under ``--trace-dir``; without it, into a temporary folder that is deleted afterwards, so
no ``onnxruntime_profile__*.json`` ever lands in the working folder.

    mpanet-tf export runs/qs --format onnx --format int8 --output /tmp/exp
    python benchmarks/ort_profile.py /tmp/exp/int8/1/model.onnx --batch 32 --runs 3 [--trace-dir DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import numpy as np


def op_type_times(trace: list[dict]) -> dict[str, float]:
    """Microseconds per op type of the ``*_kernel_time`` events of an ONNX Runtime trace."""
    totals = collections.Counter()
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"].get("op_name", "?")] += float(event["dur"])
    return dict(totals)


def profile(model: str, batch: int, runs: int, trace_dir: str, threads: int | None = None) -> Path:
    """Run ``model`` ``runs`` times under the profiler; returns the trace file (in ``trace_dir``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(trace_dir) / "onnxruntime_profile")
    if threads:
        options.intra_op_num_threads = int(threads)
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    shape = [batch, *(int(d) for d in feed.shape[1:])]
    images = np.random.default_rng(0).integers(0, 256, shape).astype(np.float32)
    for _ in range(runs):
        session.run(None, {feed.name: images})
    return Path(session.end_profiling())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an .onnx file (an export's model.onnx, float32 or int8)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3, help="profiled calls (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: ORT's)")
    parser.add_argument("--top", type=int, default=12, help="op types listed (default 12)")
    parser.add_argument("--trace-dir", default=None, help="keep the ORT trace here (default: deleted)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mpanet-ort-profile-") as scratch:
        folder = Path(args.trace_dir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        trace = profile(args.model, args.batch, args.runs, folder, args.threads)
        times = op_type_times(json.loads(trace.read_text()))
        if args.trace_dir:
            print(f"trace: {trace}")
    total = sum(times.values()) or 1.0
    print(f"{args.model}, batch {args.batch}, {args.runs} runs: {total / 1e3 / args.runs:.1f} ms of kernels per run")
    print("| op type | ms per run | share |\n|---|---:|---:|")
    for name, micros in sorted(times.items(), key=lambda item: -item[1])[:args.top]:
        print(f"| {name} | {micros / 1e3 / args.runs:.2f} | {100 * micros / total:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
