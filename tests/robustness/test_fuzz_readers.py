"""Issue 26, item 8: every reader of user-supplied text and bytes, fuzzed (bounded example counts).

Each reader must end in a result or one :class:`~mpanet_tf.errors.MPANetError` line within a time
and memory bound, never another exception (targets: ``tests/robustness/fuzz_readers.py``; a
longer run: ``python tests/robustness/fuzz_long.py --minutes 5``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.robustness.fuzz_readers import targets

TARGETS = targets()
#: Examples per reader in the default suite: about a minute for all eight on a loaded 2-core machine.
EXAMPLES = {"manifest": 60, "list file": 60, "id file": 80, "meta.json": 60, "config.json": 60, "state.json": 60,
            "feature file": 60, "pickle": 100}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reader_ends_in_a_result_or_one_line(name):
    strategy, read = TARGETS[name]

    @settings(max_examples=EXAMPLES[name], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(strategy)
    def check(data):
        read(data)

    check()
