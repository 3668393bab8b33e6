"""Dynamic batching: concurrent requests share embedder calls, results go to their own
submitters, a big request runs alone, and the event loop stays free while a batch computes."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import numpy as np
import pytest

from mpanet_tf.serve.batching import DynamicBatcher
from tests.export.test_savedmodel import write_images
from tests.index.conftest import make_embedder


def test_results_go_to_their_submitters_and_batches_respect_max_batch():
    calls = []

    def process(payloads):
        calls.append(list(payloads))
        return [ValueError(p) if p == "bad" else p * 2 for p in payloads]

    async def scenario():
        batcher = DynamicBatcher(process, max_batch=4, timeout_ms=200)
        await batcher.start()
        jobs = [asyncio.create_task(batcher.submit(p, size=s)) for p, s in
                [(1, 1), (2, 1), ("bad", 1), (3, 1), (4, 1), (5, 9)]]
        results = await asyncio.gather(*jobs, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results[:2] == [2, 4] and isinstance(results[2], ValueError) and results[3:] == [6, 8, 10]
    assert [len(c) for c in calls] == [4, 1, 1]  # 4 one-image jobs; then 1; the 9-image job alone
    assert calls[0] == [1, 2, "bad", 3]


def test_a_batch_waits_for_requests_still_being_decoded():
    """A request announced with arriving() (received, decoding) joins the batch although it is
    submitted after the window closed; one that is not announced starts the next batch."""
    calls = []

    def process(payloads):
        calls.append(list(payloads))
        return payloads

    async def late(batcher, name, announced):
        with batcher.arriving() if announced else contextlib.nullcontext():
            await asyncio.sleep(0.08)  # the decode: 8 windows of 10 ms
        return await batcher.submit(name)

    async def scenario(announced):
        batcher = DynamicBatcher(process, max_batch=4, timeout_ms=10)
        await batcher.start()
        results = await asyncio.gather(batcher.submit("first"), late(batcher, "late", announced))
        await batcher.stop()
        return results

    assert asyncio.run(scenario(True)) == ["first", "late"]
    assert calls == [["first", "late"]]
    calls.clear()
    assert asyncio.run(scenario(False)) == ["first", "late"]
    assert calls == [["first"], ["late"]]


def test_the_event_loop_answers_while_a_batch_computes():
    """The batch runs in the worker thread: other coroutines (the page, /healthz) run meanwhile."""
    release, started = threading.Event(), threading.Event()

    def process(payloads):
        started.set()
        assert release.wait(30)
        return payloads

    async def scenario():
        batcher = DynamicBatcher(process, max_batch=2, timeout_ms=0)
        await batcher.start()
        job = asyncio.create_task(batcher.submit("slow"))
        while not started.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)  # another request's turn: it runs although the batch is unfinished
        answered_before = not job.done()
        release.set()
        result = await job
        await batcher.stop()
        return answered_before, result

    assert asyncio.run(scenario()) == (True, "slow")


@pytest.fixture
def service(tmp_path):
    """A SearchService over a numpy embedder (counting its calls) and an index of 8 pictures."""
    from mpanet_tf.data.images import load_image
    from mpanet_tf.index import index_from_features
    from mpanet_tf.index.fingerprint import model_fingerprint
    from mpanet_tf.serve.service import SearchService

    embedder = make_embedder(tmp_path / "model.onnx")
    paths = write_images(tmp_path / "gallery", sizes=((40, 20),) * 8, seed=11)
    features = embedder(np.stack([load_image(p, embedder.image_size) for p in paths]))
    index_from_features(tmp_path / "g.mpidx", features, [{"path": str(p)} for p in paths],
                        model_fingerprint(embedder), source={"kind": "folder", "path": str(tmp_path / "gallery")})
    embedder.embed.calls = 0
    service = SearchService(embedder, tmp_path / "g.mpidx", max_batch=16, batch_timeout_ms=3000)
    return service, paths


def test_concurrent_requests_share_embedder_calls(service):
    """12 searches and 4 adds sent at once are embedded together (max_batch 16: the batch closes as
    soon as all 16 images are queued), and each gets the answer it gets alone."""
    from mpanet_tf.serve.service import Query, Upload

    service, paths = service
    queries = [p.read_bytes() for p in paths] + [paths[i].read_bytes() for i in range(4)]
    new = write_images(service.uploads.parent / "new", sizes=((48, 24),) * 4, seed=12)

    async def together():
        await service.start()
        found = await asyncio.gather(*[service.search(q, Query(top_k=3)) for q in queries[:12]],
                                     *[service.add([Upload(p.read_bytes(), camera="7")]) for p in new])
        calls = service.embedder.embed.calls
        alone = [await service.search(q, Query(top_k=3)) for q in queries[:12]]
        stored = service.store.count(), service.store.entries()  # a closed store is unusable
        await service.stop()
        return found, calls, alone, stored

    found, calls, alone, (count, entries) = asyncio.run(together())
    assert calls < 4, f"16 concurrent requests took {calls} embedder calls"
    assert service.batcher.max_batch == 16
    for together_hits, alone_hits in zip(found[:12], alone):
        assert [h.entry_id for h in together_hits] == [h.entry_id for h in alone_hits]
        np.testing.assert_allclose([h.distance for h in together_hits], [h.distance for h in alone_hits], atol=1e-6)
    for n, query in enumerate(found[:12]):
        assert query[0].entry_id == n % 8 and query[0].distance < 1e-5  # each picture finds itself
    added = sorted(i for ids in found[12:] for i in ids)
    assert added == [8, 9, 10, 11] and count == 12
    assert all(entries[i]["camera"] == "7" for i in added)
