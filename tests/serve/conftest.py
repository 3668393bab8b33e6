"""Fixtures of the service tests: a tiny MPANet run, a synthetic SYSU tree, its index, and
``mpanet-tf serve`` started for real (a subprocess running uvicorn on a free loopback port)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")

#: Seconds a server may take to import TensorFlow and load the model on a busy 2-core machine
#: (3 minutes were not enough at load average 23).
START_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``mpanet-tf serve`` in a subprocess; ``url``, ``get``/``post`` (with the token if any)."""

    def __init__(self, folder: Path, model, index, *extra, token: str | None = None):
        self.port, self.token, self.folder = free_port(), token, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.args = [sys.executable, "-m", "mpanet_tf.cli.main", "serve", "--model", str(model), "--index",
                     str(index), "--port", str(self.port), *extra]
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        self.log_file = self.folder / f"server-{time.time_ns()}.log"
        self.log = open(self.log_file, "w")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        self.process = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still loading the model
                pass
            time.sleep(0.3)
        self.process.kill()
        raise AssertionError(f"serve did not answer /healthz within {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        return self.log_file.read_text()

    def headers(self, token=None) -> dict:
        token = self.token if token is None else token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, token=None, headers=None, **kwargs):
        return requests.get(self.url + path, headers={**self.headers(token), **(headers or {})}, timeout=120,
                            **kwargs)

    def post(self, path, token=None, headers=None, **kwargs):
        return requests.post(self.url + path, headers={**self.headers(token), **(headers or {})}, timeout=120,
                             **kwargs)

    def stop(self, sig=signal.SIGTERM, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    from tests.export.test_savedmodel import write_tiny_run

    run, _ = write_tiny_run(tmp_path_factory.mktemp("serve-run") / "run", seed=5)
    return run


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory):
    """A synthetic SYSU-MM01 tree: 4 persons x 6 cameras x 2 images of 96x48 (minus absent cells)."""
    from mpanet_tf.data.synthetic import generate_sysu

    return generate_sysu(tmp_path_factory.mktemp("serve-synth") / "synth", ids=4, images_per_camera=2, seed=3,
                         size=(96, 48))


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, tiny_run, synth_tree):
    """The index of every image of the tree (identity, camera and modality known)."""
    from mpanet_tf.data.registry import get_dataset
    from mpanet_tf.index import build_index

    output = tmp_path_factory.mktemp("serve-index") / "gallery.mpidx"
    build_index(tiny_run, output, dataset=get_dataset("sysu"), data_root=synth_tree, split="all", batch_size=16, progress=False)
    return output


@pytest.fixture(scope="session")
def embedder(tiny_run):
    from mpanet_tf.runtimes.embedder import load_embedder

    return load_embedder(tiny_run)


def copy_index(built_index, folder: Path) -> Path:
    """A private copy of the session's index (a test may add to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(built_index, folder / "gallery.mpidx"))


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jpg"))
