"""Reliability of ``mpanet-tf serve``: SIGTERM answers the requests in flight, then exits 0; after
``kill -9`` during a stream of adds, a restarted service opens the index and holds every
acknowledged add."""

from __future__ import annotations

import hashlib
import io
import signal
import threading
import time

import numpy as np
import requests

from tests.serve.conftest import Server, copy_index, image_files


def test_sigterm_drains_requests_in_flight_then_exits_0(tmp_path, tiny_run, built_index, synth_tree):
    # a 3 s batch window keeps the search in flight when SIGTERM arrives
    server = Server(tmp_path, tiny_run, copy_index(built_index, tmp_path), "--batch-timeout-ms", "3000")
    query = image_files(synth_tree)[0]
    answers = []
    thread = threading.Thread(target=lambda: answers.append(server.post("/v1/search?top_k=2", data=query.read_bytes())))
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive(), "the search was answered before SIGTERM; the batch window did not hold it"
    assert server.stop(signal.SIGTERM) == 0, server.output()
    thread.join(60)
    assert len(answers) == 1 and answers[0].status_code == 200, answers
    assert answers[0].json()["results"][0]["source"] == str(query)
    assert "stopped: every request in flight was answered" in server.output()


def _png(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def test_every_acknowledged_add_survives_kill_9(tmp_path, tiny_run, built_index):
    from mpanet_tf.index import GalleryIndex

    index = copy_index(built_index, tmp_path)
    before = GalleryIndex.open(index).count
    server = Server(tmp_path, tiny_run, index)
    acknowledged, stop = {}, threading.Event()

    def adder(first: int):
        for seed in range(first, first + 1000, 4):
            if stop.is_set():
                return
            image = _png(seed)
            try:
                answer = requests.post(server.url + "/v1/gallery", data=image, params={"camera": "k"}, timeout=60)
            except requests.RequestException:
                return  # the server was killed
            if answer.status_code == 200:
                acknowledged[answer.json()["added"][0]] = image

    threads = [threading.Thread(target=adder, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 300
    while len(acknowledged) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.process.kill()  # SIGKILL while the adders keep sending
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 8 and len(set(acknowledged)) == len(acknowledged)

    restarted = Server(tmp_path, tiny_run, index)
    try:
        count = restarted.get("/v1/gallery").json()["count"]
        assert before + len(acknowledged) <= count
        reopened = GalleryIndex.open(index)  # clean: no pending add, no trailing bytes
        assert reopened.count == count and reopened.meta["pending"] is None
        for entry_id, image in acknowledged.items():
            assert reopened.entries[entry_id]["path"].endswith(hashlib.sha256(image).hexdigest() + ".png")
            top = restarted.post("/v1/search?top_k=1&camera=k", data=image).json()["results"][0]
            assert top["entry_id"] == entry_id and top["distance"] < 1e-4
    finally:
        assert restarted.stop() == 0
