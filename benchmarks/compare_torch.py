"""mpanet-tf's float32 train step against the authors' PyTorch step: each side alone, A B A B.

    python benchmarks/train_throughput.py --compare-torch --torch-python /tmp/torchvenv/bin/python \
        [--batches 16] [--steps 8] [--rounds 2]

Both sides train the full MPANet (``benchmarks/torch_mpanet.py`` is the PyTorch side, run by the
given interpreter) on a fixed 384x128 batch of 16 (P4 x K4) with every loss term and Adam with
coupled L2. Each run is a fresh process that warms up (2 steps), then times ``--steps`` steps as
one whole call that ends with the results in hand: TensorFlow one ``model.fit`` of N steps (it
returns after the last step's loss is fetched), PyTorch N steps each ending in ``float(loss)``.
The sides run one after the other, never at once (``--rounds`` rounds of TF then PyTorch), so
neither side's idle, spinning thread pool takes CPU from the other.

Why (issue 25): Keras calls ``on_train_batch_end`` when a step is *dispatched*, so timing from the
first batch's begin to the last batch's end missed the steps still running (4.27-4.45 against 3.13
images/s for the same steps timed as a whole call), and two warm processes taking turns let the
idle one's thread pool spin on the cores the other needed.

Reported per side: images/s, images per CPU-second of its own process (all threads) and cores busy
(CPU seconds / wall seconds); the ratio is the sum of images over the sum of seconds. The CPU
(model, SIMD flags) and the load average before, between and after the runs are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def tensorflow_side(batch, size, warmup, steps) -> dict:
    """Time ``steps`` float32 train steps of mpanet-tf as one ``fit`` call, in this process."""
    import mpanet_tf  # noqa: F401  (before TensorFlow: sets its oneDNN default)
    import tensorflow as tf

    from train_throughput import build_for_training, make_batch

    model = build_for_training(batch, size, "fp32")
    data = tf.data.Dataset.from_tensors(make_batch(batch, size)).repeat()
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=warmup, epochs=1, verbose=0)
    warmup_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    history = model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"side": "tf", "tf": tf.__version__, "steps": steps, "wall_s": wall, "cpu_s": cpu,
            "warmup_s": warmup_s, "loss": float(history.history["loss"][-1])}


def summary(results, batch) -> dict:
    """images/s, images/CPU-s and cores busy over every run of one side."""
    images = batch * sum(r["steps"] for r in results)
    wall, cpu = sum(r["wall_s"] for r in results), sum(r["cpu_s"] for r in results)
    return {"images_per_s": images / wall, "images_per_cpu_s": images / cpu, "cores_busy": cpu / wall}


def compare(torch_python, batch, size, steps, rounds, warmup=2):
    """Run the A B A B comparison and print it; returns the dict of results."""
    from machine import alternate, describe, load_average

    print(describe(), flush=True)
    print(f"full MPANet train step, float32, batch {batch}, {size[0]}x{size[1]}: each run a fresh process, "
          f"{warmup} warm-up steps, then {steps} steps timed as one call; {rounds} x (TF, PyTorch), one "
          "after the other", flush=True)
    common = ["--batch", str(batch), "--warmup", str(warmup), "--steps", str(steps)]
    sides = {"tf": [sys.executable, __file__, "--side", "tf", "--size", f"{size[0]}x{size[1]}", *common],
             "torch": [torch_python, str(HERE / "torch_mpanet.py"), *common]}
    runs = alternate(sides, rounds, report=lambda line: print(line, flush=True))
    result = {name: summary(
        [r if "wall_s" in r else {"steps": len(r["step_s"]), "wall_s": sum(r["step_s"]), "cpu_s": r["cpu_s"]}
         for r in results], batch) for name, results in runs.items()}
    result["ratio"] = result["tf"]["images_per_s"] / result["torch"]["images_per_s"]
    result["ratio_cpu"] = result["tf"]["images_per_cpu_s"] / result["torch"]["images_per_cpu_s"]
    for name in ("tf", "torch"):
        r = result[name]
        print(f"{name:<5} {r['images_per_s']:6.2f} images/s  {r['images_per_cpu_s']:6.2f} images/CPU-s  "
              f"{r['cores_busy']:.2f} cores busy", flush=True)
    print(f"mpanet-tf / PyTorch: {result['ratio']:.2f}x images/s, {result['ratio_cpu']:.2f}x per CPU-second; "
          f"load average after: {load_average()}", flush=True)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=["tf"], required=True, help="the side this process times")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", default="384x128")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args(argv)
    from mpanet_tf.config import parse_image_size

    print(json.dumps(tensorflow_side(args.batch, parse_image_size(args.size), args.warmup, args.steps)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
