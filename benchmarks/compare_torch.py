"""mpanet-tf's float32 train step against the authors' PyTorch step, back to back in one run.

    python benchmarks/train_throughput.py --compare-torch --torch-python /tmp/torchvenv/bin/python \
        [--batches 16] [--steps 3] [--rounds 2]

Both sides train the full MPANet (``benchmarks/torch_mpanet.py`` is the PyTorch side, run by the
given interpreter as a subprocess that stays warm) on a fixed 384x128 batch of 16 (P4 x K4) with
every loss term and Adam with coupled L2. After each side's warm-up, the two take turns A B A B
(``--rounds`` rounds of ``--steps`` steps each), so load from other processes falls on both about
equally; the ratio is the sum of images over the sum of seconds, per side. "CPU" columns divide by
each process's own CPU time (all threads), the load-independent figure. The load average before
and after and the CPU model are printed with the result.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class TorchSide:
    """``torch_mpanet.py --serve`` in a subprocess: warm once, then time ``steps`` on request."""

    def __init__(self, python, batch, warmup):
        self.process = subprocess.Popen(
            [python, str(HERE / "torch_mpanet.py"), "--serve", "--batch", str(batch), "--warmup", str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch side exited (code {self.process.wait()}); run "
                               f"benchmarks/torch_mpanet.py with that interpreter to see why")
        return json.loads(line)

    def run(self, steps):
        self.process.stdin.write(f"{steps}\n")
        self.process.stdin.flush()
        result = self._read()
        return result["wall_s"], result["cpu_s"]

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write("\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


class TensorFlowSide:
    """The compiled float32 model of ``train_throughput.py``, warmed up by ``warmup`` steps."""

    def __init__(self, batch, size, warmup):
        import keras
        import tensorflow as tf

        from train_throughput import build_for_training, make_batch

        self.keras = keras
        self.model = build_for_training(batch, size, "fp32")
        self.data = tf.data.Dataset.from_tensors(make_batch(batch, size)).repeat()
        start = time.perf_counter()
        self.model.fit(self.data, steps_per_epoch=warmup, epochs=1, verbose=0)
        self.warmup_s = time.perf_counter() - start

    def run(self, steps):
        """(wall s, CPU s) from the first step's start to the last step's end (fit's set-up excluded)."""
        marks = {}

        class Marks(self.keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                if batch == 0:
                    marks["start"] = (time.perf_counter(), time.process_time())

            def on_train_batch_end(self, batch, logs=None):
                marks["end"] = (time.perf_counter(), time.process_time())

        self.model.fit(self.data, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Marks()])
        return marks["end"][0] - marks["start"][0], marks["end"][1] - marks["start"][1]


def compare(torch_python, batch, size, steps, rounds, warmup=2):
    """Run the interleaved comparison and print it; returns the dict of results."""
    import tensorflow as tf
    from tensorflow.python.util import _pywrap_util_port

    load_before = os.getloadavg()
    onednn = "on" if _pywrap_util_port.IsMklEnabled() else "off"
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; TensorFlow {tf.__version__} (oneDNN {onednn}); "
          f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}", flush=True)
    print(f"full MPANet train step, float32, batch {batch}, {size[0]}x{size[1]}: {warmup} warm-up steps, then "
          f"{rounds} x (TF {steps} steps, PyTorch {steps} steps)", flush=True)
    torch_side = TorchSide(torch_python, batch, warmup)
    try:
        print(f"PyTorch {torch_side.info['torch']} ({torch_side.info['threads']} threads) warm-up "
              f"{torch_side.info['warmup_s']:.1f} s", flush=True)
        tf_side = TensorFlowSide(batch, size, warmup)
        print(f"TensorFlow warm-up (trace, optimise, {warmup} steps) {tf_side.warmup_s:.1f} s", flush=True)
        totals = {"tf": [0.0, 0.0], "torch": [0.0, 0.0]}
        for index in range(rounds):
            for name, side in (("tf", tf_side), ("torch", torch_side)):
                wall, cpu = side.run(steps)
                totals[name][0] += wall
                totals[name][1] += cpu
                print(f"  round {index + 1} {name:<5} {batch * steps / wall:6.2f} images/s  "
                      f"{batch * steps / cpu:6.2f} images/CPU-s", flush=True)
    finally:
        torch_side.close()
    images = batch * steps * rounds
    rate = {name: images / wall for name, (wall, _) in totals.items()}
    per_cpu = {name: images / cpu for name, (_, cpu) in totals.items()}
    load_after = os.getloadavg()
    result = {"cpu": cpu_model(), "onednn": onednn, "load_before": load_before[0], "load_after": load_after[0],
              "tf_images_per_s": rate["tf"], "torch_images_per_s": rate["torch"],
              "ratio": rate["tf"] / rate["torch"], "ratio_cpu": per_cpu["tf"] / per_cpu["torch"],
              "tf_warmup_s": tf_side.warmup_s, "torch_warmup_s": torch_side.info["warmup_s"]}
    print(f"mpanet-tf {rate['tf']:.2f} images/s vs PyTorch {rate['torch']:.2f}: ratio {result['ratio']:.2f}x "
          f"(per CPU-second {per_cpu['tf']:.2f} vs {per_cpu['torch']:.2f}: {result['ratio_cpu']:.2f}x); "
          f"load average after: {load_after[0]:.2f}", flush=True)
    return result
