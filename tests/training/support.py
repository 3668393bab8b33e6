"""Helpers of the training tests: run ``tests.training.workers`` in a fresh process, tiny CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Image size of every training test (H, W): small enough for a CPU step in about a second.
IMAGE_SIZE = (64, 32)


def worker_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(*args, env=None, log=None) -> subprocess.Popen:
    """``python -m tests.training.workers ARGS`` in the repository root, output to ``log``."""
    stream = open(log, "wb") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "tests.training.workers", *map(str, args)], cwd=REPO,
                            env=env or worker_env(), stdout=stream, stderr=subprocess.STDOUT)


def tail(path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def train_args(root, output, *extra) -> list[str]:
    """CLI arguments of a tiny run: 64x32, P=2 x K=4, random init, no final evaluation."""
    return ["train", "--dataset", "sysu", "--data-root", str(root), "--output", str(output),
            "--image-size", f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}", "--batch-ids", "2", "--images-per-id", "4",
            "--backbone-weights", "none", "--no-final-eval", "--quiet", *map(str, extra)]
