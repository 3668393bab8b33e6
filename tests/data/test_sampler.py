"""IdentityPairSampler: batch layout, full-pass epoch length, determinism (design.md §3.2, §3.6)."""

from __future__ import annotations

import numpy as np
import pytest

from mpanet_tf.data.sampler import IdentityPairSampler
from mpanet_tf.errors import ConfigError, DatasetError


def make_labels(counts):
    """counts: list of (n_ir, n_vis) per identity -> (labels, infrared), records interleaved by id."""
    labels, infrared = [], []
    for label, (n_ir, n_vis) in enumerate(counts):
        labels += [label] * (n_ir + n_vis)
        infrared += [True] * n_ir + [False] * n_vis
    # Shuffle the record order so the sampler cannot rely on grouping.
    order = np.random.default_rng(123).permutation(len(labels))
    return np.array(labels)[order], np.array(infrared)[order]


def expected_chunks(n_ir, n_vis, k):
    """Independent count of K-blocks per identity, from the authors' loop (design.md §3.2)."""
    half = k // 2
    if n_ir == 0:
        return 0  # not in the pool
    if n_ir < half and n_vis < half:
        return 1 if n_vis > 0 else 0
    return min(n_ir, n_vis) // half


# K/2 = 2. Identity 7 has IR only, identity 8 VIS only; identity 9 has 1 IR + 3 VIS: not both
# below K/2, so VIS is cut to 1 and the single pair makes no chunk. Identity 10 has 1 IR + 1 VIS:
# both below K/2, so 2 of each are drawn with replacement (one chunk).
COUNTS = [(9, 14), (6, 6), (12, 5), (4, 20), (7, 7), (10, 11), (5, 8), (6, 0), (0, 6), (1, 3), (1, 1)]
P, K = 3, 4


@pytest.fixture(scope="module")
def sampler():
    labels, infrared = make_labels(COUNTS)
    return IdentityPairSampler(labels, infrared, batch_ids=P, images_per_id=K, seed=5)


def test_batch_composition(sampler):
    for epoch in range(4):
        batches = sampler.epoch_batches(epoch)
        assert batches.shape[1] == P * K and batches.dtype == np.int64
        for batch in batches:
            blocks = batch.reshape(P, K)
            block_labels = sampler.labels[blocks]
            assert np.all(block_labels == block_labels[:, :1]), "each block is one identity"
            assert len(set(block_labels[:, 0].tolist())) == P, "P distinct identities"
            ir = sampler.infrared[blocks]
            assert np.all(ir[:, 0::2]) and not np.any(ir[:, 1::2]), "IR, VIS, IR, VIS, ..."
            np.testing.assert_array_equal(sampler.labels_of(batch), sampler.labels[batch])


def test_identities_without_both_modalities_never_drawn(sampler):
    seen = set()
    for epoch in range(5):
        seen |= set(np.unique(sampler.labels[sampler.epoch_batches(epoch)]).tolist())
    assert not seen & {7, 8, 9}
    assert seen == {0, 1, 2, 3, 4, 5, 6, 10}


def test_epoch_is_a_full_pass(sampler):
    chunks = {i: expected_chunks(n_ir, n_vis, K) for i, (n_ir, n_vis) in enumerate(COUNTS)}
    for epoch in range(6):
        batches = sampler.epoch_batches(epoch)
        used = np.bincount(sampler.labels[batches[:, ::K]].reshape(-1), minlength=len(COUNTS))
        left = {i: chunks[i] - used[i] for i in chunks}
        assert all(v >= 0 for v in left.values())
        # The pass stops only when fewer than P identities still have chunks.
        assert sum(1 for v in left.values() if v > 0) < P
        assert len(batches) * P == sum(chunks.values()) - sum(left.values())
        assert sampler.num_batches(epoch) == len(batches)


def test_no_image_repeats_when_enough_images(sampler):
    batches = sampler.epoch_batches(0)
    for label in range(7):  # identities with >= K/2 of each modality draw without replacement
        members = batches[sampler.labels[batches] == label]
        assert len(members) == len(set(members.tolist()))
    # Identity 10 (1 IR + 1 VIS) is drawn with replacement: its one block repeats both images.
    block = batches[sampler.labels[batches] == 10]
    assert len(block) == K and len(set(block.tolist())) == 2


def test_exact_length_when_every_identity_is_drawn_each_time():
    # P identities, each with 6 IR + 9 VIS and K/2 = 2: min(6, 9) // 2 = 3 chunks -> exactly 3 batches.
    labels, infrared = make_labels([(6, 9)] * 3)
    sampler = IdentityPairSampler(labels, infrared, batch_ids=3, images_per_id=4, seed=0)
    assert sampler.num_batches(0) == 3
    batches = sampler.epoch_batches(0)
    ir_used = batches[sampler.infrared[batches]]
    assert len(set(ir_used.tolist())) == 18  # every IR image once


def test_sysu_like_length_near_twice_ir_estimate():
    rng = np.random.default_rng(0)
    counts = [(int(rng.integers(20, 40)), int(rng.integers(40, 70))) for _ in range(64)]
    labels, infrared = make_labels(counts)
    sampler = IdentityPairSampler(labels, infrared, batch_ids=16, images_per_id=8, seed=1)
    estimate = sum(max(n_ir, 8) - max(n_ir, 8) % 8 for n_ir, _ in counts)
    assert sampler.estimated_len_ir_only == estimate
    assert sampler.estimated_iterations_ir_only == estimate // 128
    total_chunks = sum(min(a, b) // 4 for a, b in counts)
    n = sampler.num_batches(0)
    most_left = 15 * max(min(a, b) // 4 for a, b in counts)  # < P identities keep their chunks
    assert (total_chunks - most_left) / 16 <= n <= total_chunks / 16
    assert n > 1.5 * sampler.estimated_iterations_ir_only


def test_determinism(sampler):
    labels, infrared = make_labels(COUNTS)
    other = IdentityPairSampler(labels, infrared, batch_ids=P, images_per_id=K, seed=5)
    np.testing.assert_array_equal(sampler.epoch_batches(3), other.epoch_batches(3))
    a, b = sampler.epoch_batches(1), sampler.epoch_batches(2)
    assert a.shape != b.shape or not np.array_equal(a, b)
    reseeded = IdentityPairSampler(labels, infrared, batch_ids=P, images_per_id=K, seed=6)
    c = reseeded.epoch_batches(1)
    assert a.shape != c.shape or not np.array_equal(a, c)
    # Asking again (cached) gives an equal, independent copy.
    again = sampler.epoch_batches(1)
    again[:] = -1
    np.testing.assert_array_equal(sampler.epoch_batches(1), a)


def test_replica_slices_hold_whole_blocks():
    labels, infrared = make_labels([(8, 8)] * 6)
    sampler = IdentityPairSampler(labels, infrared, batch_ids=4, images_per_id=4, seed=2, num_replicas=2)
    for batch in sampler.epoch_batches(0):
        for part in np.split(batch, 2):  # tf.distribute's contiguous per-replica slices
            part_labels = sampler.labels[part].reshape(-1, 4)
            assert np.all(part_labels == part_labels[:, :1])
            assert sampler.infrared[part].sum() == len(part) // 2
    with pytest.raises(ConfigError, match="multiple of the number of replicas"):
        IdentityPairSampler(labels, infrared, batch_ids=3, images_per_id=4, num_replicas=2)


def test_worker_slice(sampler):
    batches = sampler.epoch_batches(0)
    labels, infrared = make_labels([(8, 8)] * 6)
    four = IdentityPairSampler(labels, infrared, batch_ids=4, images_per_id=4)
    rows = four.epoch_batches(0)
    parts = [four.worker_slice(rows, w, 2) for w in range(2)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), rows)
    np.testing.assert_array_equal(four.worker_slice(rows[0], 1, 2), rows[0, 8:])
    with pytest.raises(ConfigError, match="multiple of the number of workers"):
        sampler.worker_slice(batches, 0, 2)  # P = 3 is not divisible by 2
    with pytest.raises(ConfigError, match="worker_index"):
        four.worker_slice(rows, 2, 2)


def test_invalid_arguments():
    labels, infrared = make_labels([(4, 4)] * 3)
    with pytest.raises(ConfigError, match="even"):
        IdentityPairSampler(labels, infrared, batch_ids=2, images_per_id=3)
    with pytest.raises(ConfigError, match="shapes"):
        IdentityPairSampler(labels, infrared[:-1])
    with pytest.raises(DatasetError, match="only 3 identities"):
        IdentityPairSampler(labels, infrared, batch_ids=4, images_per_id=4)
