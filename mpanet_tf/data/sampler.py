"""The identity/pair sampler of MPANet's training batches (design.md §3.2, §3.6), numpy only.

A batch is P identities x K images. Each identity contributes one contiguous block of K images,
K/2 infrared and K/2 visible, interleaved ``IR, VIS, IR, VIS, ...``. The authors' algorithm
(``RandomIdentitySampler`` of DoubtedSteam/MPANet ``data/sampler.py``), regenerated every epoch:

1. For every identity of the pool: shuffle its IR and VIS index lists; subsample the larger list
   without replacement down to the size of the smaller; if *both* hold fewer than K/2 images,
   draw K/2 of each with replacement instead. Zip into (IR, VIS) pairs and cut the pairs into
   chunks of K/2 pairs (one chunk = one K-block); leftover pairs are dropped.
2. Repeatedly draw P distinct identities uniformly without replacement among those that still
   have chunks and take one chunk from each: one draw is one batch. An identity leaves the pool
   when its chunks run out; the epoch ends when fewer than P identities remain.

The number of chunks of an identity is therefore a function of its counts only:
``1`` if ``0 < n_IR < K/2 and 0 < n_VIS < K/2``, else ``min(n_IR, n_VIS) // (K/2)``.

Where we differ from the authors' code (which would crash): an identity whose chunk count is 0
(IR images only, VIS images only, or one modality below K/2 while the other is not) is left out of
the pool instead of raising ``IndexError`` on ``pop(0)`` when drawn. SYSU-MM01 and RegDB have no
such identity. Identities with VIS images only were never in the authors' pool (it is built from
the identities that have IR images).

One epoch is one full pass of this regenerated list (design.md §3.6, decision 5): about
``2 * sum_id min(n_IR, n_VIS) / (P*K)`` batches, about twice the authors' IR-only ``__len__``
estimate (:attr:`IdentityPairSampler.estimated_len_ir_only`), which is kept for logging only.

Randomness: epoch ``e`` uses ``np.random.default_rng([seed, e])``, so the batches of an epoch are a
pure function of ``(seed, epoch)`` and a resumed run regenerates them exactly.
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.errors import ConfigError, DatasetError


class IdentityPairSampler:
    """Batches of record indices for one epoch, P identities x (K/2 IR, K/2 VIS) interleaved.

    Args:
        labels: int array (N,), the training label 0..C-1 of every record.
        infrared: bool array (N,), True for infrared records (cameras 3 and 6).
        batch_ids: P, identities per batch (16 for SYSU, 12 for RegDB).
        images_per_id: K, images per identity, even (8 for SYSU, 10 for RegDB).
        seed: base seed; epoch ``e`` uses ``np.random.default_rng([seed, e])``.
        num_replicas: replicas in sync. ``tf.distribute`` cuts a global batch into this many
            contiguous slices, so ``batch_ids`` must be a multiple of it: every slice then holds
            whole identity blocks with both modalities (design.md §11, "Per-replica batch
            layout").

    Example::

        sampler = IdentityPairSampler(labels, infrared, batch_ids=16, images_per_id=8)
        batches = sampler.epoch_batches(0)       # (num_batches, 128) record indices
    """

    def __init__(self, labels, infrared, batch_ids=16, images_per_id=8, seed=1, num_replicas=1):
        labels = np.asarray(labels)
        infrared = np.asarray(infrared)
        if labels.ndim != 1 or infrared.shape != labels.shape:
            raise ConfigError(
                f"labels and infrared must be 1-D arrays of one length, got shapes {labels.shape} "
                f"and {infrared.shape}")
        if batch_ids < 1:
            raise ConfigError(f"batch_ids must be >= 1, got {batch_ids}")
        if images_per_id < 2 or images_per_id % 2:
            raise ConfigError(f"images_per_id must be even and >= 2, got {images_per_id}")
        if num_replicas < 1 or batch_ids % num_replicas:
            raise ConfigError(
                f"batch_ids ({batch_ids}) must be a multiple of the number of replicas "
                f"({num_replicas}) so every replica gets whole identity blocks; change --batch-ids")
        self.labels = labels.astype(np.int64)
        self.infrared = infrared.astype(bool)
        self.batch_ids = int(batch_ids)
        self.images_per_id = int(images_per_id)
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self._cache: tuple[int, np.ndarray] | None = None

        half = self.images_per_id // 2
        self._ir = {}
        self._vis = {}
        for label in np.unique(self.labels):
            members = np.flatnonzero(self.labels == label)
            self._ir[int(label)] = members[self.infrared[members]]
            self._vis[int(label)] = members[~self.infrared[members]]
        # The authors' pool: identities with IR images, in label order.
        self.pool_ids = np.array(sorted(k for k, v in self._ir.items() if len(v)), np.int64)
        self.chunks_per_id = {int(k): _num_chunks(len(self._ir[k]), len(self._vis[k]), half)
                              for k in self.pool_ids}
        eligible = sum(1 for c in self.chunks_per_id.values() if c > 0)
        if eligible < self.batch_ids:
            raise DatasetError(
                f"only {eligible} identities have at least {half} infrared and {half} visible "
                f"images (or both fewer than {half}); a batch needs {self.batch_ids}: lower "
                "--batch-ids or check the dataset")

    @classmethod
    def from_records(cls, records, batch_ids=16, images_per_id=8, seed=1, num_replicas=1):
        """Build from ``ImageRecord``-like objects with ``label`` and ``infrared`` attributes."""
        labels = np.array([r.label for r in records], np.int64)
        if len(labels) and labels.min() < 0:
            raise DatasetError("training records need labels >= 0; use the dataset's train_records()")
        infrared = np.array([r.infrared for r in records], bool)
        return cls(labels, infrared, batch_ids, images_per_id, seed, num_replicas)

    @property
    def batch_size(self) -> int:
        """P * K, the global batch size."""
        return self.batch_ids * self.images_per_id

    @property
    def estimated_len_ir_only(self) -> int:
        """The authors' ``__len__``: sum over the pool of max(n_IR, K) rounded down to a multiple of K.

        Counted in images, from IR counts only, so it is about half of what an epoch really holds
        (design.md §3.6). ignite >= 0.4 used ``estimated_len_ir_only // batch_size`` iterations per
        epoch; we log it next to :meth:`num_batches` and never use it to size an epoch.
        """
        k = self.images_per_id
        total = 0
        for label in self.pool_ids:
            num = max(len(self._ir[int(label)]), k)
            total += num - num % k
        return total

    @property
    def estimated_iterations_ir_only(self) -> int:
        """``estimated_len_ir_only // batch_size``: the iterations per epoch under ignite >= 0.4."""
        return self.estimated_len_ir_only // self.batch_size

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """Record indices of every batch of ``epoch``: int64 (num_batches, P*K).

        Row ``b`` is batch ``b``: P contiguous blocks of K indices, each block one identity in the
        order IR, VIS, IR, VIS, .... A pure function of ``(seed, epoch)``.
        """
        epoch = int(epoch)
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1].copy()
        rng = np.random.default_rng([self.seed, epoch])
        half = self.images_per_id // 2
        chunks = {}
        for label in self.pool_ids:
            blocks = self._identity_blocks(rng, int(label), half)
            if blocks:
                chunks[int(label)] = blocks
        available = sorted(chunks)
        batches = []
        while len(available) >= self.batch_ids:
            chosen = rng.choice(np.array(available, np.int64), self.batch_ids, replace=False)
            batch = []
            for label in chosen.tolist():
                batch.extend(chunks[label].pop(0))
                if not chunks[label]:
                    available.remove(label)
            batches.append(batch)
        result = np.array(batches, np.int64).reshape(len(batches), self.batch_size)
        self._cache = (epoch, result)
        return result.copy()

    def _identity_blocks(self, rng, label, half):
        """The K-blocks of one identity for this epoch: list of lists of K indices (IR, VIS, ...)."""
        ir = rng.permutation(self._ir[label])
        vis = rng.permutation(self._vis[label])
        if len(ir) < half and len(vis) < half:
            if len(ir) == 0 or len(vis) == 0:
                return []
            ir = rng.choice(ir, half, replace=True)
            vis = rng.choice(vis, half, replace=True)
        # Shuffled, then cut: a subsample of the larger list without replacement.
        n = min(len(ir), len(vis))
        pairs = np.stack([ir[:n], vis[:n]], axis=1).reshape(-1)  # IR, VIS, IR, VIS, ...
        k = 2 * half
        return [pairs[i:i + k].tolist() for i in range(0, len(pairs) - k + 1, k)]

    def num_batches(self, epoch: int) -> int:
        """Iterations of ``epoch``: one full pass of the regenerated list (design.md §3.6)."""
        return len(self.epoch_batches(epoch))

    def labels_of(self, batch) -> np.ndarray:
        """Labels of the records in ``batch`` (any shape of indices), same shape."""
        return self.labels[np.asarray(batch, np.int64)]

    def worker_slice(self, batch, worker_index: int, num_workers: int) -> np.ndarray:
        """The contiguous part of a global batch (or of every row of ``(S, P*K)``) that a worker feeds.

        Worker ``w`` of ``n`` gets columns ``[w*P*K/n, (w+1)*P*K/n)``: whole identity blocks,
        because ``batch_ids`` must be a multiple of ``num_workers``.
        """
        if num_workers < 1 or self.batch_ids % num_workers:
            raise ConfigError(
                f"batch_ids ({self.batch_ids}) must be a multiple of the number of workers "
                f"({num_workers}); change --batch-ids")
        if not 0 <= worker_index < num_workers:
            raise ConfigError(f"worker_index must be in 0..{num_workers - 1}, got {worker_index}")
        batch = np.asarray(batch)
        width = self.batch_size // num_workers
        return batch[..., worker_index * width:(worker_index + 1) * width]


def _num_chunks(n_ir: int, n_vis: int, half: int) -> int:
    """K-blocks an identity yields per epoch (design.md §3.2), from its counts only."""
    if n_ir == 0 or n_vis == 0:
        return 0
    if n_ir < half and n_vis < half:
        return 1
    return min(n_ir, n_vis) // half
