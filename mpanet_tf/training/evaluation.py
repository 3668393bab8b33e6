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


def make_embed_fn(model, jit: bool = False):
    """``images (N, H, W, 3) float32 in [0, 255] -> (N, D) float32 numpy``, traced once."""
    import tensorflow as tf

    height, width = model.image_size
    spec = tf.TensorSpec([None, height, width, 3], tf.float32)

    @tf.function(input_signature=[spec], jit_compile=bool(jit))
    def embed(images):
        return model(images, training=False)

    return lambda images: embed(tf.convert_to_tensor(images, tf.float32)).numpy()


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
        embed_fn: reuse an embedding function from :func:`make_embed_fn`.

    Returns:
        ``{"summary": {rank1, rank5, rank10, rank20, mAP, mINP, settings}, "results": [result
        dicts of mpanet_tf.eval.report], "seconds": float}``, or None when the protocol cannot run
        (SYSU without ``rand_perm_cam.mat``).
    """
    from mpanet_tf.eval.features import extract_feature_set

    start = time.time()
    embed_fn = embed_fn or make_embed_fn(model, config.train.jit)
    size = model.image_size
    skip = bool(config.data.skip_bad_images)
    if config.data.dataset == "sysu":
        from mpanet_tf.eval.sysu_protocol import ALL_SETTINGS, evaluate_sysu_settings

        if not dataset.has_rand_perm:
            log(f"evaluation skipped: {dataset.rand_perm_path} is missing; download rand_perm_cam.mat from "
                "the official SYSU-MM01 repository (github.com/wuancong/SYSU-MM01, evaluation/data_split/) "
                "into the dataset's exp/ folder")
            return None
        features = extract_feature_set(embed_fn, dataset.query_records(), dataset.gallery_records("all"), size,
                                       EVAL_BATCH_SIZE, progress=progress, skip_bad_images=skip)
        settings = ALL_SETTINGS if final else (("all", 1),)
        results = evaluate_sysu_settings(features, settings=settings, trials=10, sampling="official",
                                         perm=dataset)
        summary = summarize(results[:1])
    else:
        from mpanet_tf.eval.regdb_protocol import evaluate_regdb

        features = extract_feature_set(embed_fn, dataset.test_thermal(), dataset.test_visible(), size,
                                       EVAL_BATCH_SIZE, progress=progress, skip_bad_images=skip)
        results = [evaluate_regdb(features, direction, trial=config.data.trial) for direction in ("i2v", "v2i")]
        summary = summarize(results)
    return {"summary": summary, "results": results, "seconds": time.time() - start}
