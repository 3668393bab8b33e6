"""Load on ``mpanet-tf serve`` over loopback: does dynamic batching make the service as fast as
its embedder, and does a mixed search/add load lose anything?

1. The embedder's own throughput on batches of 32 decoded images (images/s), measured in this
   process while the server idles (after its start-up and a warm-up): the ceiling of the service.
2. 1, 8, 32 and 64 concurrent clients (threads, one keep-alive connection each) searching for
   ``--duration`` seconds (at most ``--max-requests`` per phase): p50/p95/p99 latency, requests/s,
   and requests/s over the embedder's batch-32 throughput (the batching efficiency).
3. A mixed phase: 32 clients, each request a search (80%) or an add of a new image (20%). After
   it, the index must count exactly the acknowledged adds more, and each added image must find
   itself at rank 1.

The server is ``mpanet-tf serve`` in a subprocess on a free 127.0.0.1 port (nothing leaves the
machine). Without ``--model``/``--index`` a synthetic SYSU tree, a random MPANet at
``--image-size`` (untrained: the cost is the architecture's) and its index are made in
``--workdir``. Example::

    python benchmarks/serve_load.py --image-size 96x48 --duration 20
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(workdir: Path, image_size: tuple[int, int]) -> tuple[Path, Path, Path]:
    """(run folder, index, tree) made in ``workdir`` when missing."""
    import keras

    from mpanet_tf.config import MPANetConfig
    from mpanet_tf.data.synthetic import generate_sysu
    from mpanet_tf.data.registry import get_dataset
    from mpanet_tf.index import build_index
    from mpanet_tf.model import build_model

    run, tree, index = workdir / "run", workdir / "synth", workdir / "gallery.mpidx"
    if not (run / "model.keras").is_file():
        keras.utils.set_random_seed(0)
        config = MPANetConfig()
        config.model.image_height, config.model.image_width = image_size
        config.model.backbone_weights = "none"
        model = build_model(config, num_classes=8)
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(config.to_json())
        (run / "run.json").write_text(json.dumps({"num_classes": 8}))
        model.save(run / "model.keras")
    if not tree.is_dir():
        generate_sysu(tree, ids=8, images_per_camera=2, seed=0, size=image_size)
    if not index.is_dir():
        build_index(run, index, dataset=get_dataset("sysu"), data_root=tree, split="all", batch_size=32, progress=False)
    return run, index, tree


def embedder_throughput(model, images: list[bytes], seconds: float) -> float:
    """Images/s of the embedder alone on batches of 32 decoded images."""
    from mpanet_tf.data.images import image_from_bytes
    from mpanet_tf.runtimes.embedder import load_embedder

    embedder = load_embedder(model)
    batch = np.stack([image_from_bytes(images[i % len(images)], embedder.image_size) for i in range(32)])
    embedder(batch)  # warm-up (graph tracing)
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < seconds:
        embedder(batch)
        calls += 1
    return 32 * calls / (time.perf_counter() - started)


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        self.connection.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())


def run_phase(port: int, clients: int, seconds: float, max_requests: int, queries: list[bytes],
              add_share: float = 0.0, seed: int = 0) -> dict:
    """``clients`` threads sending requests until ``seconds`` or ``max_requests``."""
    latencies, errors, added = [], [], []
    lock, count = threading.Lock(), [0]
    stop_at = time.perf_counter() + seconds

    def work(number: int):
        client, rng = Client(port), np.random.default_rng([seed, number])
        while time.perf_counter() < stop_at:
            with lock:
                if count[0] >= max_requests:
                    return
                count[0] += 1
            adding = rng.random() < add_share
            body = new_image(rng) if adding else queries[int(rng.integers(len(queries)))]
            started = time.perf_counter()
            status, answer = client.post("/v1/gallery" if adding else "/v1/search?top_k=10", body)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(answer)
                elif adding:
                    added.append((answer["added"][0], body))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "seconds": wall,
            "rps": len(latencies) / wall, "p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "added": added}


def new_image(rng) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 48, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model artifact (default: a random MPANet made in --workdir)")
    parser.add_argument("--index", help="its gallery index (default: made in --workdir; it is copied, not changed)")
    parser.add_argument("--queries", help="folder of query images (default: the synthetic tree)")
    parser.add_argument("--workdir", default=None, help="where the defaults are made (default: a temporary folder)")
    parser.add_argument("--image-size", default="96x48", help="HxW of the made model (default 96x48)")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase at most")
    parser.add_argument("--max-requests", type=int, default=2000, help="requests per phase at most")
    parser.add_argument("--batch-timeout-ms", type=float, default=5.0)
    args = parser.parse_args(argv)

    import shutil

    from mpanet_tf.data.image_files import find_images

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="serve-load-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.model and args.index:
        run, index, tree = Path(args.model), Path(args.index), Path(args.queries or args.index)
    else:
        run, index, tree = prepare(workdir, tuple(int(v) for v in args.image_size.split("x")))
    served = workdir / "served.mpidx"
    shutil.rmtree(served, ignore_errors=True)
    shutil.rmtree(workdir / "served.mpidx.uploads", ignore_errors=True)
    shutil.copytree(index, served)
    queries = [p.read_bytes() for p in find_images(args.queries or tree, "query")][:64]

    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    server = subprocess.Popen([sys.executable, "-m", "mpanet_tf.cli.main", "serve", "--model", str(run), "--index",
                               str(served), "--port", str(port), "--batch-timeout-ms", str(args.batch_timeout_ms)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(600):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                base = json.loads(connection.getresponse().read())["entries"]
                break
            except (OSError, ValueError, KeyError):
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        run_phase(port, 4, 3.0, 64, queries)  # warm-up: traces the embedder at a few batch sizes
        # measured once the server has started and idles (its start-up, model loading and tracing,
        # would otherwise take CPU from this measurement and inflate every ratio below)
        ceiling = embedder_throughput(run, queries, max(5.0, args.duration / 2))
        print(f"embedder alone, batch 32: {ceiling:.1f} images/s")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
              f"{'batch':>5} {'ratio':>5}")
        results = []
        for clients in (int(c) for c in args.clients.split(",")):
            before = _metrics_snapshot(port)
            phase = run_phase(port, clients, args.duration, args.max_requests, queries)
            phase["batch"] = _batch_between(before, _metrics_snapshot(port))
            phase["ratio"] = phase["rps"] / ceiling
            results.append(phase)
            print(f"{clients:>7} {phase['requests']:>8} {phase['rps']:>7.1f} {phase['p50']:>7.0f} {phase['p95']:>7.0f} "
                  f"{phase['p99']:>7.0f} {phase['batch']:>5.1f} {phase['ratio']:>5.2f}"
                  + (f"  ERRORS {phase['errors']}" if phase["errors"] else ""))
        mixed = run_phase(port, 32, args.duration, args.max_requests, queries, add_share=0.2, seed=1)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/v1/gallery")
        count = json.loads(connection.getresponse().read())["count"]
        client, selves = Client(port), 0
        for entry_id, image in mixed["added"]:
            status, answer = client.post("/v1/search?top_k=1", image)
            selves += status == 200 and answer["results"][0]["entry_id"] == entry_id
        print(f"mixed 32 clients (20% adds): {mixed['requests']} requests, {mixed['rps']:.1f} req/s, p50 "
              f"{mixed['p50']:.0f} ms, p95 {mixed['p95']:.0f} ms, p99 {mixed['p99']:.0f} ms, errors {mixed['errors']}")
        print(f"after the mixed run: {len(mixed['added'])} adds acknowledged, index count {count} = {base} + "
              f"{count - base}; {selves}/{len(mixed['added'])} added images find themselves at rank 1")
        ok = count == base + len(mixed["added"]) and selves == len(mixed["added"]) and not mixed["errors"]
        print("lost nothing" if ok else "LOST OR DUPLICATED ENTRIES")
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(120)


def _metrics_snapshot(port: int) -> tuple[float, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("mpanet_batch_images_sum", "mpanet_batch_images_count"))}
    return values["mpanet_batch_images_sum"], values["mpanet_batch_images_count"]


def _batch_between(before, after) -> float:
    """Mean images per embedder call between two /metrics snapshots."""
    return (after[0] - before[0]) / max(1.0, after[1] - before[1])


if __name__ == "__main__":
    sys.exit(main())
