"""Evaluation of the model being trained (``--eval-every`` and the run's final evaluation).

Unlike :mod:`mpanet_tf.eval.artifacts` (``mpanet-tf eval`` over saved models and feature files),
this evaluates a model held in memory, with the protocol's default (the paper's) options as the
dataset's protocol defines them for training (:meth:`~mpanet_tf.eval.protocol.EvalProtocol.evaluate_during_training`):

- SYSU-MM01 (design.md §5.1, decision 6): the official ``rand_perm_cam.mat`` protocol, 10 gallery
  trials. During training only all-search single-shot; at the end of training the four settings
  of the paper's table (all/indoor x single/multi-shot). Without ``exp/rand_perm_cam.mat`` the
  evaluation is skipped with one line saying where to get the file.
- RegDB (design.md §5.3, decision 7): the run's split, thermal->visible and visible->infrared on the
  raw BN-neck features; the summary is the mean of the two directions, as the authors' engine logs.

The model evaluated is always the current one (the last epoch's at the end): no checkpoint is
ever selected on the test set (design.md §3.4, §8.15, decision 6). Features are the BN-neck output in
inference mode (design.md §1.5) from a ``tf.function`` over ``model(images, training=False)`` on the
local device, so every worker of a distributed run can call it without collectives.
"""

from __future__ import annotations

import time

import numpy as np

from mpanet_tf.eval.features import extract_feature_set
from mpanet_tf.eval.report import METRIC_KEYS, setting_name

EVAL_BATCH_SIZE = 64  # the authors' test batch (design.md §1.5)


def summarize(results: list[dict]) -> dict:
    """The history's ``eval`` entry: the mean of ``results`` over each metric, plus their names."""
    summary = {key: float(np.mean([r[key] for r in results])) for key in METRIC_KEYS}
    summary["settings"] = [setting_name(r) for r in results]
    return summary


def evaluate_live_model(model, spec, dataset, config, *, final: bool = False, embed_fn=None, progress: bool = False,
                        log=print) -> dict | None:
    """Evaluate the in-memory ``model`` on the test split of ``dataset``.

    Args:
        model: the :class:`~mpanet_tf.model.MPANet` being trained.
        spec: the :class:`~mpanet_tf.data.registry.DatasetSpec` of the run's dataset (its protocol).
        dataset: the run's reader (:class:`~mpanet_tf.data.sysu.SYSUDataset`,
            :class:`~mpanet_tf.data.regdb.RegDBDataset`, ...), of ``spec``.
        config: the run's :class:`~mpanet_tf.config.MPANetConfig`.
        final: the end-of-training evaluation (every setting of the paper's table) instead of the
            periodic one (SYSU all-search single-shot).
        embed_fn: reuse an embedding function from
            :func:`mpanet_tf.inference.embedding_function` (``folded=False``).

    Returns:
        ``{"summary": {rank1, rank5, rank10, rank20, mAP, mINP, settings}, "results": [result
        dicts of mpanet_tf.eval.report], "seconds": float}``, or None when the protocol cannot run
        (SYSU without ``rand_perm_cam.mat``).
    """
    start = time.time()
    protocol = spec.get_protocol()
    reason = protocol.training_skip_reason(dataset)
    if reason:
        log(f"evaluation skipped: {reason}")
        return None
    from mpanet_tf.inference import embedding_function  # deferred: TensorFlow; `mpanet-tf --help` and quickstart's CLI stay light

    # Not folded: the trainer reuses this function across epochs while the weights change.
    embed_fn = embed_fn or embedding_function(model, folded=False, jit=config.train.jit)
    query, gallery = protocol.test_split(dataset)
    features = extract_feature_set(embed_fn, query, gallery, model.image_size, EVAL_BATCH_SIZE,
                                   progress=progress, skip_bad_images=bool(config.data.skip_bad_images))
    results, summarized = protocol.evaluate_during_training(features, dataset, config, final)
    return {"summary": summarize(summarized), "results": results, "seconds": time.time() - start}
