"""``GET /metrics``: the service's counters in the Prometheus text format (version 0.0.4).

- ``mpanet_requests_total{endpoint, status}``: requests answered;
- ``mpanet_request_seconds{endpoint}``: a latency histogram per endpoint;
- ``mpanet_batch_images``: a histogram of images per embedder call, and
  ``mpanet_batch_seconds``: of the time per batch (embedding, adding, searching);
- ``mpanet_gallery_entries``: the index size.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    """Cumulative-bucket histogram (``le`` upper bounds, plus ``+Inf``), sum and count."""

    def __init__(self, buckets):
        self.buckets, self.counts, self.sum, self.count = tuple(buckets), [0] * (len(buckets) + 1), 0.0, 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, "+Inf"), self.counts):
            running += count
            le = bound if bound == "+Inf" else f"{bound:g}"
            out.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{le}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        return out + [f"{name}_sum{suffix} {self.sum:.6f}", f"{name}_count{suffix} {self.count}"]


class Metrics:
    """Thread-safe counters of the service (module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}
        self.batch_images = Histogram(BATCH_BUCKETS)
        self.batch_seconds = Histogram(LATENCY_BUCKETS)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] = self.requests.get((endpoint, status), 0) + 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, images: int, seconds: float) -> None:
        with self._lock:
            self.batch_images.observe(images)
            self.batch_seconds.observe(seconds)

    def render(self, gallery_entries: int) -> str:
        with self._lock:
            lines = ["# HELP mpanet_requests_total Requests answered, by endpoint and status.",
                     "# TYPE mpanet_requests_total counter"]
            lines += [f'mpanet_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP mpanet_request_seconds Request latency, by endpoint.",
                      "# TYPE mpanet_request_seconds histogram"]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("mpanet_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP mpanet_batch_images Images per embedder batch.", "# TYPE mpanet_batch_images histogram",
                      *self.batch_images.lines("mpanet_batch_images"),
                      "# HELP mpanet_batch_seconds Time per batch (embed, add, search).",
                      "# TYPE mpanet_batch_seconds histogram", *self.batch_seconds.lines("mpanet_batch_seconds"),
                      "# HELP mpanet_gallery_entries Entries in the gallery index.",
                      "# TYPE mpanet_gallery_entries gauge", f"mpanet_gallery_entries {gallery_entries}"]
        return "\n".join(lines) + "\n"
