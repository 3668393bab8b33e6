"""The machine a figure was measured on, and fresh-process A B A B runs (shared by the benchmarks).

Every figure in RESULTS.md names the CPU (model and the SIMD flags that decide which kernels run),
the load average around the run, and compares implementations as ratios of runs made one after
the other, each in a fresh process (A B A B): never two sides at once, so that neither side's idle
thread pool or warm caches take CPU or memory bandwidth from the other.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

#: The /proc/cpuinfo flags that decide which float, bfloat16 and int8 kernels oneDNN, Eigen and
#: ONNX Runtime's MLAS can use.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "amx_tile", "amx_int8", "amx_bf16")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """``model name`` of /proc/cpuinfo (with family/model numbers), else the platform's name."""
    fields = {}
    for line in _cpuinfo():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if "model name" in fields:
        return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """All flags of the first CPU in /proc/cpuinfo."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def int8_dot_product(flags: set[str] | None = None) -> str:
    """Which single-instruction int8 dot product the CPU has: AMX, AVX-512 VNNI, AVX-VNNI or none."""
    flags = cpu_flags() if flags is None else flags
    found = [name for flag, name in (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"),
                                     ("avx_vnni", "AVX-VNNI")) if flag in flags]
    return ", ".join(found) if found else "none (no AMX-INT8, AVX-512 VNNI or AVX-VNNI)"


def matmul_peak_gflops(dtype: str = "float32", size: int = 2048, seconds: float = 3.0) -> float:
    """The machine's measured dense-matmul rate (GFLOP/s, all cores, TensorFlow with oneDNN): a
    ``size`` x ``size`` matmul repeated for about ``seconds`` in a ``tf.function``, best of 3
    repetitions. The practical peak a convolution-bound step is compared with."""
    import time

    import tensorflow as tf

    a = tf.random.normal((size, size), dtype=tf.float32)
    a = tf.cast(a, dtype)

    @tf.function
    def repeat(x, count):
        total = tf.zeros((), tf.float32)
        for _ in tf.range(count):
            total += tf.cast(tf.reduce_sum(tf.matmul(x, x)[0, :1]), tf.float32)
        return total

    repeat(a, tf.constant(2)).numpy()
    start = time.perf_counter()
    repeat(a, tf.constant(4)).numpy()
    count = max(4, int(4 * seconds / max(time.perf_counter() - start, 1e-3)))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        repeat(a, tf.constant(count)).numpy()
        best = max(best, 2 * size**3 * count / (time.perf_counter() - start) / 1e9)
    return best


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def describe() -> str:
    """One line: CPU model, cores, the SIMD flags present, the load average now."""
    flags = cpu_flags()
    simd = " ".join(flag for flag in SIMD_FLAGS if flag in flags) or "none"
    return f"CPU: {cpu_model()}, {os.cpu_count()} cores; SIMD: {simd}; load average {load_average()}"


def run_worker(command: list[str], timeout: float | None = None) -> dict:
    """Run ``command`` (an interpreter and its arguments) in a fresh process; its last stdout line
    is a JSON object, returned."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def alternate(sides: dict[str, list[str]], rounds: int, timeout: float | None = None, report=print) -> dict:
    """A B A B: ``rounds`` rounds, each running every side's command (interpreter and arguments)
    once, one after the other, each in a fresh process. Returns {side: [result dict per round]}; ``report`` gets a line per run."""
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for index in range(rounds):
        for name, argv in sides.items():
            result = run_worker(argv, timeout)
            results[name].append(result)
            report(f"  round {index + 1} {name}: {json.dumps(result)} (load {load_average()})")
    return results
