"""The longer fuzzing run of issue 26, item 8: every reader of ``fuzz_readers.targets()`` for a
while, counting inputs, outcomes and failures.

    python tests/robustness/fuzz_long.py --minutes 5            # split evenly over the readers
    python tests/robustness/fuzz_long.py --minutes 1 --only pickle

A failure is any exception other than the project's one-line error, or an input past the time or
memory bound; the script prints the minimal failing input hypothesis found and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests.robustness.fuzz_readers import targets  # noqa: E402


def run(name: str, strategy, read, seconds: float, batch: int = 100) -> tuple[Counter, str | None]:
    """Batches of ``batch`` examples (hypothesis seeds 0, 1, ...) until ``seconds`` have passed."""
    outcomes: Counter = Counter()
    stop = time.monotonic() + seconds
    number = 0
    while time.monotonic() < stop:
        @seed(number)
        @settings(max_examples=batch, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(strategy)
        def check(data):
            outcomes[str(read(data))] += 1

        try:
            check()
        except Exception as error:  # a falsifying example (hypothesis re-raises it after shrinking)
            return outcomes, f"{type(error).__name__}: {str(error)[:300]} (seed {number})"
        number += 1
    return outcomes, None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="total time, split over the readers")
    parser.add_argument("--only", action="append", help="fuzz only these readers (repeatable)")
    args = parser.parse_args(argv)
    chosen = {name: target for name, target in targets().items() if not args.only or name in args.only}
    seconds = 60.0 * args.minutes / len(chosen)
    failed, total = 0, 0
    for name, (strategy, read) in chosen.items():
        start = time.monotonic()
        outcomes, failure = run(name, strategy, read, seconds)
        tried = sum(outcomes.values())
        total += tried
        status = f"FAILED: {failure}" if failure else "no failure"
        detail = ", ".join(f"{key} {count}" for key, count in sorted(outcomes.items()))
        print(f"{name:13s} {tried:6d} inputs in {time.monotonic() - start:6.1f} s ({detail}); {status}", flush=True)
        failed += bool(failure)
    print(f"total: {total} inputs, {failed} readers with a failure")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
