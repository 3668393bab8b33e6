"""Dynamic batching: concurrent requests coalesced into one call of a batch function.

Requests are queued on the event loop (:meth:`DynamicBatcher.submit`); one collector task takes
the first waiting request, then keeps taking more until the batch holds ``max_batch`` images or
``timeout_ms`` has passed since the first, and runs ``process(items)`` in its one worker thread
(never on the event loop, so the page and ``/healthz`` answer while a batch is computed). While the
worker computes a batch the next one queues, so under load batches fill without waiting.

Requests already received but still being decoded are announced (:meth:`DynamicBatcher.arriving`):
while any are, a batch that is not yet full waits for them past ``timeout_ms`` (up to
:data:`ARRIVING_WAIT_S` after its first request). Without this, when 32 clients' next requests
reach the server spread over more than the window (one decode each, on a busy CPU), the window
closes a partial batch and the clients settle into two groups whose batches alternate, each
half-full: measured as a steady 16 images per call at 32 clients (benchmarks/RESULTS.md).

A request may carry several images (``size``); a batch never splits a request, and a request
larger than ``max_batch`` is a batch of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

#: The longest a batch that is not full waits, after its first request, for requests that were
#: received and are being decoded (an upload's decode is bounded by the upload and pixel limits).
ARRIVING_WAIT_S = 0.25


@dataclass
class Job:
    """One queued request: what ``process`` receives, and how many images it carries."""

    payload: Any
    size: int = 1
    future: asyncio.Future | None = field(default=None, repr=False)


class DynamicBatcher:
    """Coalesce concurrent :meth:`submit` calls into calls of ``process(payloads) -> results``.

    Args:
        process: list of payloads -> list of results (same length, same order); a result that is
            an exception is raised to its own submitter only. Runs in the worker thread.
        max_batch: images per call, at most (a single larger request runs alone).
        timeout_ms: longest wait for more requests after the first one of a batch.
        on_batch: called (in the worker) with (images, seconds) after each call (metrics).
    """

    def __init__(self, process: Callable[[list], list], max_batch: int = 32, timeout_ms: float = 5.0,
                 on_batch: Callable[[int, float], None] | None = None):
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.process, self.max_batch, self.timeout = process, int(max_batch), max(0.0, float(timeout_ms)) / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpanet-batch")
        self._held: Job | None = None  # taken from the queue but too big for the batch being built
        self._arriving = 0  # requests announced by arriving() and not yet submitted

    @contextlib.contextmanager
    def arriving(self):
        """Announce a request that will be submitted once it is decoded (enter on the event loop;
        submit right after leaving, with no ``await`` in between): a batch that is not full waits
        for it (module docstring)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._collect())

    async def submit(self, payload, size: int = 1):
        """Queue ``payload`` (``size`` images) and wait for its result."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        job = Job(payload, max(1, int(size)), asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def stop(self) -> None:
        """Finish every queued request, then stop the collector and the worker thread."""
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self._executor.shutdown(wait=True)

    async def _next(self, timeout: float | None) -> Job:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._next(None)]
            first = loop.time()
            images, deadline, latest = jobs[0].size, first + self.timeout, first + max(self.timeout, ARRIVING_WAIT_S)
            while images < self.max_batch:
                try:
                    job = self._queue.get_nowait() if self._held is None else await self._next(0)
                except asyncio.QueueEmpty:
                    now = loop.time()
                    if now < deadline:
                        remaining = deadline - now
                    elif self._arriving:
                        # past the window, wait only while announced requests are still being
                        # decoded; look again every window (an announced request may fail to decode)
                        remaining = min(latest - now, max(self.timeout, 0.002))
                    else:
                        break
                    if remaining <= 0:
                        break
                    try:
                        job = await self._next(remaining)
                    except asyncio.TimeoutError:
                        continue
                if images + job.size > self.max_batch:
                    self._held = job
                    break
                jobs.append(job)
                images += job.size
            await self._run(loop, jobs, images)

    async def _run(self, loop, jobs: list[Job], images: int) -> None:
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self.process, [j.payload for j in jobs])
        except Exception as error:  # the whole batch failed: every submitter gets the error
            results = [error] * len(jobs)
        if self.on_batch is not None:
            self.on_batch(images, time.perf_counter() - started)
        for job, result in zip(jobs, results):
            if not job.future.done():
                (job.future.set_exception if isinstance(result, BaseException) else job.future.set_result)(result)
            self._queue.task_done()
