"""Where MPANet's train step spends its time: TensorFlow profiler, per phase and per op type.

The real step (``model.fit`` on the full model of ``benchmarks/train_throughput.py``: 384x128,
batch 16 = P4 x K4, every loss term, Adam with the coupled L2 term), profiled with
``tf.profiler.experimental`` over ``--steps`` steps after a warm-up. The trace (an XSpace protobuf)
is read directly: every TensorFlow op event ("name:Type") on the executor threads is summed

- per phase: backward = ops under the ``gradient_tape/`` scope, optimizer = ops of the Adam update
  (``adam/``, ``Adam`` or the optimizer's ``apply``/``iteration`` scopes), forward = the rest;
- per op type (``_MklNativeConv2D``, ``Conv2DBackpropFilter``, ``FusedBatchNormV3``, ``Mul``, ...).

Times are summed op durations per step (two inter-op threads may overlap, so the sum can exceed
the wall time). ``--torch-python`` also runs ``benchmarks/torch_mpanet.py --profile`` for the same
breakdown of the authors' PyTorch step.

``--roofline`` adds where the step stands against the machine: TensorFlow's FLOP count of the
forward pass x 3 (backward ~ 2x forward) x batch over the step's wall time, as a fraction of the
measured float32 (and bfloat16) dense-matmul rate of all cores (``machine.matmul_peak_gflops``).

    python benchmarks/train_profile.py [--steps 2] [--top 25] [--roofline] [--torch-python /tmp/torchvenv/bin/python]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train_throughput import IMAGES_PER_ID, build_for_training, make_batch, mode_policy  # noqa: E402


def phase_of(name: str) -> str:
    lowered = name.lower()
    if "gradient_tape/" in lowered:
        return "backward"
    if lowered.startswith(("adam/", "optimizer/")) or "/adam/" in lowered or "apply_grad" in lowered:
        return "optimizer"
    return "forward"


def read_op_events(logdir: str):
    """[(op name, op type, seconds)] of every TF op event in the newest trace under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    space.ParseFromString(Path(path).read_bytes())
    events = []
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU") and not plane.name.startswith("/device:"):
            continue
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                label = plane.event_metadata[event.metadata_id].name
                if ":" not in label or label.startswith(("ThreadpoolListener", "ExecutorState")):
                    continue
                name, _, kind = label.rpartition(":")
                events.append((name, kind, event.duration_ps * 1e-12))
    return events


def summarise(events, steps, top):
    by_phase, by_type = collections.Counter(), collections.Counter()
    for name, kind, seconds in events:
        by_phase[phase_of(name)] += seconds / steps
        by_type[(phase_of(name), kind)] += seconds / steps
    return by_phase, by_type.most_common(top)


def profile_tensorflow(batch, size, steps, mode):
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    with mode_policy(mode):
        model = build_for_training(batch, size, mode)
        data = tf.data.Dataset.from_tensors(make_batch(batch, size)).repeat()
        model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
        logdir = tempfile.mkdtemp(prefix="mpanet-profile-")
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        wall = (time.perf_counter() - start) / steps
        tf.profiler.experimental.stop()
    return wall, read_op_events(logdir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help=f"batch, a multiple of {IMAGES_PER_ID} (default 16)")
    parser.add_argument("--size", default="384x128", help="input HxW (default 384x128)")
    parser.add_argument("--steps", type=int, default=2, help="profiled steps (default 2)")
    parser.add_argument("--mode", default="fp32", help="fp32 | jit | bf16 (default fp32)")
    parser.add_argument("--unfused-bn", action="store_true",
                        help="backbone BN through moments + element-wise ops (Keras' own training path) "
                             "instead of the fused op, for comparison")
    parser.add_argument("--top", type=int, default=25, help="op types listed (default 25)")
    parser.add_argument("--torch-python", default="", help="python of a venv with torch: profile the PyTorch step too")
    parser.add_argument("--roofline", action="store_true",
                        help="also print the step's model FLOP/s as a fraction of the measured matmul rate")
    args = parser.parse_args(argv)

    from mpanet_tf.config import parse_image_size

    size = parse_image_size(args.size)
    if args.unfused_bn:
        from mpanet_tf.layers.batch_norm import TorchBatchNorm

        TorchBatchNorm._fusable = lambda self, inputs: False
    wall, events = profile_tensorflow(args.batch, size, args.steps, args.mode)
    by_phase, by_type = summarise(events, args.steps, args.top)
    total = sum(by_phase.values())
    print(f"TensorFlow {args.mode} step: {wall:.2f} s wall, {total:.2f} s summed op time per step")
    for phase in ("forward", "backward", "optimizer"):
        print(f"  {phase:<9} {by_phase[phase]:7.3f} s  {100 * by_phase[phase] / total:5.1f} %")
    print("  top op types (phase, type, s/step, % of op time):")
    for (phase, kind), seconds in by_type:
        print(f"    {phase:<9} {kind:<40} {seconds:7.3f}  {100 * seconds / total:5.1f} %")
    if args.roofline:
        from machine import describe, matmul_peak_gflops
        from train_throughput import forward_flops_per_image

        print(describe())
        step_flops = 3 * forward_flops_per_image(size) * args.batch
        achieved = step_flops / wall / 1e9
        for dtype in ("float32", "bfloat16"):
            peak = matmul_peak_gflops(dtype)
            print(f"  {dtype} matmul (2048^2, all cores): {peak:7.1f} GFLOP/s; the {args.mode} step's "
                  f"{step_flops / 1e9:.0f} GFLOP in {wall:.2f} s = {achieved:.1f} GFLOP/s = "
                  f"{100 * achieved / peak:.0f} % of it")
    if args.torch_python:
        out = subprocess.run([args.torch_python, str(HERE / "torch_mpanet.py"), "--batch", str(args.batch),
                              "--steps", "2", "--warmup", "1", "--profile"],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        ops = result["op_self_s"]
        total = sum(ops.values())
        print(f"\nPyTorch step: {sum(result['step_s']) / len(result['step_s']):.2f} s wall; phases "
              + ", ".join(f"{k} {v:.3f} s" for k, v in result["phase_s"].items()))
        print("  top ops (self CPU time per step, % of op time):")
        for name, seconds in list(ops.items())[: args.top]:
            print(f"    {name:<40} {seconds:7.3f}  {100 * seconds / total:5.1f} %")


if __name__ == "__main__":
    main()
