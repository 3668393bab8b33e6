"""Evaluation during and after training (``--eval-every``), with the eval engineers' protocols.

- SYSU-MM01 (facts §5.1, decision 6): the official ``rand_perm_cam.mat`` protocol, 10 trials.
  During training only all-search single-shot; at the end of training the four settings of the
  paper's table (all/indoor x single/multi-shot). Without ``exp/rand_perm_cam.mat`` the evaluation
  is skipped with one line saying where to get the file.
- RegDB (facts §5.3, decision 7): the run's trial, thermal->visible and visible->infrared on the
  raw BN-neck features; the summary is the mean of the two directions, as the authors' engine logs.

The model evaluated is always the current one (the last epoch's at the end): no checkpoint is
ever selected on the test set (facts §3.4, §8.15, decision 6). Features are the BN-neck output in
inference mode (facts §1.5) from a ``tf.function`` over ``model(images, training=False)`` on the
local device, so every worker of a distributed run can call it without collectives.
"""

from __future__ import annotations

import time

import numpy as np

from mpanet_tf.eval.report import METRIC_KEYS

EVAL_BATCH_SIZE = 64  # the authors' test batch (facts §1.5)


def summarize(results: list[dict]) -> dict:
    """The history's ``eval`` entry: the mean of ``results`` over each metric, plus their names."""
    from mpanet_tf.eval.report import setting_name

    summary = {key: float(np.mean([r[key] for r in results])) for key in METRIC_KEYS}
    summary["settings"] = [setting_name(r) for r in results]
    return summary


def evaluate_model(model, dataset, config, *, final: bool = False, embed_fn=None, progress: bool = False,
                   log=print) -> dict | None:
    """Evaluate ``model`` on the test split of ``dataset``.

    Args:
        model: the :class:`~mpanet_tf.model.MPANet` being trained.
        dataset: the :class:`~mpanet_tf.data.sysu.SYSUDataset` or
            :class:`~mpanet_tf.data.regdb.RegDBDataset` of the run.
        config: the run's :class:`~mpanet_tf.config.MPANetConfig`.
        final: the end-of-training evaluation (all four SYSU settings) instead of the periodic
            one (SYSU all-search single-shot).
        embed_fn: reuse an embedding function from
            :func:`mpanet_tf.inference.embedding_function` (``folded=False``).

    Returns:
        ``{"summary": {rank1, rank5, rank10, rank20, mAP, mINP, settings}, "results": [result
        dicts of mpanet_tf.eval.report], "seconds": float}``, or None when the protocol cannot run
        (SYSU without ``rand_perm_cam.mat``).
    """
    from mpanet_tf.eval.evaluate import EvalOptions, evaluate_features, test_split
    from mpanet_tf.eval.features import extract_feature_set
    from mpanet_tf.inference import embedding_function

    start = time.time()
    regdb = config.data.dataset == "regdb"
    if not regdb and not dataset.has_rand_perm:
        log(f"evaluation skipped: {dataset.rand_perm_path} is missing; download rand_perm_cam.mat from "
            "the official SYSU-MM01 repository (github.com/wuancong/SYSU-MM01, evaluation/data_split/) "
            "into the dataset's exp/ folder")
        return None
    # Not folded: the trainer reuses this function across epochs while the weights change.
    embed_fn = embed_fn or embedding_function(model, folded=False, jit=config.train.jit)
    query, gallery = test_split(dataset)
    features = extract_feature_set(embed_fn, query, gallery, model.image_size, EVAL_BATCH_SIZE,
                                   progress=progress, skip_bad_images=bool(config.data.skip_bad_images))
    # SYSU: all-search single-shot during training, the paper's four settings at the end (official
    # sampling, 10 trials); RegDB: both directions on raw BN features, summarised by their mean.
    options = EvalOptions(dataset=config.data.dataset, all_settings=final or regdb)
    results = evaluate_features(features, options, perm=None if regdb else dataset,
                                trial=config.data.trial if regdb else None)
    summary = summarize(results if regdb else results[:1])
    return {"summary": summary, "results": results, "seconds": time.time() - start}
