"""The tf.data training pipeline: sampler order -> decode (or cache) -> augment -> batch (design.md §3.3).

:func:`build_train_dataset` turns one epoch of :class:`~mpanet_tf.data.sampler.IdentityPairSampler`
batches into a ``tf.data.Dataset`` of ``(images, labels, infrared)``:

- images: float32 (B, H, W, 3) in [0, 255], augmented (the model normalises inside);
- labels: int32 (B,); infrared: bool (B,);

in the sampler's order (P identity-contiguous blocks of K, IR/VIS interleaved), batched with
``drop_remainder=True``. The augmentation seed of every sample is derived from
``(config.train.seed, epoch, step, position in the global batch)`` with stateless fold-ins, so the
order *and* the pixels of an epoch are deterministic, independent of ``num_parallel_calls`` and of
the number of workers, and a resume at ``start_step`` yields exactly the batches ``start_step, ...``
of the uninterrupted stream.

Distribution. Without ``input_context`` the dataset yields global batches; ``tf.distribute`` (e.g.
``fit`` under ``MirroredStrategy``) cuts each into contiguous per-replica slices, which hold whole
identity blocks because the sampler requires ``batch_ids % num_replicas == 0``. With an
``input_context`` (``strategy.distribute_datasets_from_function``, multi-worker), worker ``w``
reads only its contiguous slice of every global batch and yields it as consecutive per-replica
batches (``input_context.get_per_replica_batch_size``), which its local replicas take in order;
auto-sharding is switched off because the sharding is done here.

Undecodable images. tf.data cannot catch a decode error per element, and its message does not
name the file. :func:`iterate_checked` iterates a dataset and turns a decode failure into
:class:`~mpanet_tf.errors.BadImageError` naming the file, found by
:func:`~mpanet_tf.data.bad_images.locate_bad_image` (the images of the failing batch first, then
all of them); :mod:`mpanet_tf.data.bad_images` is the one place that finds bad images.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mpanet_tf.data.augment import augment
from mpanet_tf.data.cache import ImageCache, open_cache
from mpanet_tf.data.bad_images import locate_bad_image
from mpanet_tf.data.images import decode_image_tensor, resize_image_tensor
from mpanet_tf.data.records import file_name_bytes
from mpanet_tf.errors import ConfigError

#: Errors a broken or missing image file raises inside tf.data.
DECODE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError)

PREFETCH_BATCHES = 2


def iterations_per_epoch(sampler, epoch: int) -> int:
    """Batches of ``epoch``: one full pass of the regenerated sampler list (design.md §3.6, decision 5)."""
    return sampler.num_batches(epoch)


def sample_seed(train_seed, epoch, step, position):
    """The augmentation seed, int64 [2], of one sample: stateless fold-ins of its coordinates."""
    base = tf.stack([tf.cast(train_seed, tf.int64), tf.cast(epoch, tf.int64)])
    seed = tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int64), alg="philox")
    return tf.random.experimental.stateless_fold_in(seed, tf.cast(position, tf.int64), alg="philox")


def build_train_dataset(records, sampler, epoch, config, *, start_step=0, input_context=None,
                        cache=None) -> tf.data.Dataset:
    """The training batches of ``epoch`` from ``start_step`` on.

    Args:
        records: the training ``ImageRecord`` list the sampler indexes (``path``, ``relpath``).
        sampler: :class:`~mpanet_tf.data.sampler.IdentityPairSampler` over those records.
        epoch: 0-based epoch; selects the sampler's batches and the augmentation seeds.
        config: :class:`~mpanet_tf.config.MPANetConfig` (image size, augmentation, train seed).
        start_step: batches of this epoch already trained (resume); they are skipped.
        input_context: ``tf.distribute.InputContext`` for per-worker input, or None.
        cache: an :class:`~mpanet_tf.data.cache.ImageCache` or a cache folder; None decodes files.

    Returns:
        ``tf.data.Dataset`` of ``(images float32 (b, H, W, 3), labels int32 (b,), infrared bool
        (b,))`` with b = P*K (or the per-replica batch size with ``input_context``).
    """
    if len(records) != len(sampler.labels):
        raise ConfigError(f"the sampler indexes {len(sampler.labels)} records but {len(records)} were given")
    size = (int(config.model.image_height), int(config.model.image_width))
    batches = sampler.epoch_batches(epoch)
    if not 0 <= start_step <= len(batches):
        raise ConfigError(f"start_step must be in 0..{len(batches)} for epoch {epoch}, got {start_step}")
    batches = batches[start_step:]
    steps = np.arange(start_step, start_step + len(batches), dtype=np.int64)
    positions = np.arange(sampler.batch_size, dtype=np.int64)
    batch_size = sampler.batch_size
    if input_context is not None:
        replicas = input_context.num_replicas_in_sync
        if sampler.batch_ids % replicas:
            raise ConfigError(f"batch_ids ({sampler.batch_ids}) must be a multiple of the {replicas} "
                              "replicas; change --batch-ids")
        worker, workers = input_context.input_pipeline_id, input_context.num_input_pipelines
        batches = sampler.worker_slice(batches, worker, workers)
        positions = sampler.worker_slice(positions, worker, workers)
        batch_size = input_context.get_per_replica_batch_size(sampler.batch_size)

    flat = batches.reshape(-1)
    labels = sampler.labels[flat].astype(np.int32)
    infrared = sampler.infrared[flat]
    step_of = np.repeat(steps, batches.shape[1])
    position_of = np.tile(positions, len(batches))
    if cache is not None:
        if not isinstance(cache, ImageCache):
            cache = open_cache(cache, records, size)
        elif tuple(cache.size) != size:
            raise ConfigError(f"the image cache holds {cache.size[0]}x{cache.size[1]} images, the model "
                              f"needs {size[0]}x{size[1]}; rerun `mpanet-tf prepare --image-size`")
        source = cache.rows_for(records)[flat]
        load = _cache_loader(cache, size)
    else:
        source = tf.constant(file_name_bytes(records[i].path for i in flat.tolist()), tf.string)
        load = _file_loader(size)

    data_config, train_seed = config.data, int(config.train.seed)

    def load_and_augment(src, label, ir, step, position):
        image = load(src)
        image = augment(image, sample_seed(train_seed, epoch, step, position), data_config)
        return image, label, ir

    dataset = tf.data.Dataset.from_tensor_slices((source, labels, infrared, step_of, position_of))
    dataset = dataset.map(load_and_augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=True).prefetch(PREFETCH_BATCHES)
    options = tf.data.Options()
    options.deterministic = True
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def _file_loader(size):
    def load(path):
        return resize_image_tensor(decode_image_tensor(tf.io.read_file(path)), size)

    return load


def _cache_loader(cache, size):
    images = cache.images

    def read(row):
        return np.asarray(images[int(row)])

    def load(row):
        image = tf.numpy_function(read, [row], tf.uint8, stateful=False)
        image.set_shape([size[0], size[1], 3])
        return tf.cast(image, tf.float32)

    return load


def iterate_checked(dataset, records, sampler=None, epoch=None, start_step=0):
    """Iterate ``dataset``; a decode failure becomes :class:`BadImageError` naming the file.

    With ``sampler`` and ``epoch`` the images of the failing batch are checked first (the error
    surfaces at that batch because the map is deterministic); otherwise every record is checked.
    An error that no image explains is re-raised unchanged.
    """
    step = start_step
    iterator = iter(dataset)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except DECODE_ERRORS as error:
            candidates = None
            if sampler is not None and epoch is not None:
                batches = sampler.epoch_batches(epoch)
                if step < len(batches):
                    candidates = batches[step]
            bad = locate_bad_image(records, candidates)
            if bad is None:
                raise
            raise bad from error
        yield batch
        step += 1
