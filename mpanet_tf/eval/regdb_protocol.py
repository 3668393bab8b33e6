"""RegDB evaluation (design.md §5.3, MPANet utils/eval_regdb.py; decision 7).

- ``"i2v"``: thermal query (cam 3) against the visible gallery (cam 2); ``"v2i"``: roles swapped.
- No camera filtering (the two sides never share a camera).
- Plain squared Euclidean on the raw BN-neck features by default (the authors' evaluator leaves
  its normalisation commented out); ``normalize=True`` L2-normalises first, as AGW does.
- Unique-id CMC, mAP and mINP as for SYSU (:mod:`mpanet_tf.eval.metrics`).

One call evaluates one model on one trial's test split; the ten per-trial models of the usual
10-trial average are combined with :func:`mpanet_tf.eval.report.combine_trials`.
:class:`RegDBProtocol` (options :class:`RegDBOptions`) is the protocol of the ``regdb``
:class:`~mpanet_tf.data.registry.DatasetSpec`, :data:`REGDB` (declared at the bottom). Its "trials" are train/test splits
(``RegDBOptions.splits``, ``--trial``), unlike SYSU's repeated gallery samplings
(``SYSUOptions.gallery_trials``, ``--trials``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpanet_tf.data.registry import DatasetSpec
from mpanet_tf.data.regdb import THERMAL_CAMERA, TRIALS, VISIBLE_CAMERA, RegDBDataset
from mpanet_tf.data.synthetic import synthesize_regdb
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.metrics import evaluate_ranking, l2_normalize, no_junk, pairwise_squared_distance
from mpanet_tf.eval.protocol import DIRECTION_OPTION, DIRECTIONS, CliOption, EvalProtocol
from mpanet_tf.eval.report import make_result


def _thermal_query(features: FeatureSet) -> FeatureSet:
    """The feature set arranged as I->V (thermal query, visible gallery), whichever way it was saved."""
    query_cams, gallery_cams = set(features.query_cams.tolist()), set(features.gallery_cams.tolist())
    if query_cams == {THERMAL_CAMERA} and gallery_cams == {VISIBLE_CAMERA}:
        return features
    if query_cams == {VISIBLE_CAMERA} and gallery_cams == {THERMAL_CAMERA}:
        return features.swapped()
    raise DatasetError(
        f"RegDB features must pair thermal (camera 3) with visible (camera 2) images, got query cameras "
        f"{sorted(query_cams)} and gallery cameras {sorted(gallery_cams)}; were they extracted from SYSU-MM01?")


def evaluate_regdb(features: FeatureSet, direction: str = "i2v", normalize: bool = False,
                   rerank: bool = False, rerank_params: dict | None = None, trial: int | None = None) -> dict:
    """Evaluate one RegDB direction on one trial's test features.

    Args:
        features: thermal and visible test features of one trial (either side may be the query).
        direction: ``"i2v"`` (thermal query) or ``"v2i"`` (visible query).
        normalize: L2-normalise before the distance (off by default, as the authors).
        rerank: k-reciprocal re-ranking (:mod:`mpanet_tf.eval.rerank`).
        trial: the RegDB trial number, stored in the per-trial entry.

    Returns:
        a result dict (:mod:`mpanet_tf.eval.report`) with one trial.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"RegDB direction must be 'i2v' or 'v2i', got {direction!r}")
    arranged = _thermal_query(features)
    if direction == "v2i":
        arranged = arranged.swapped()
    prepare = l2_normalize if normalize else (lambda x: np.asarray(x, dtype=np.float32))
    query, gallery = prepare(arranged.query_features), prepare(arranged.gallery_features)
    if rerank:
        from mpanet_tf.eval.rerank import k_reciprocal_rerank  # deferred: scipy, only for --rerank

        dist = k_reciprocal_rerank(query, gallery, **(rerank_params or {}))
    else:
        dist = pairwise_squared_distance(query, gallery)
    metrics = evaluate_ranking(dist, arranged.query_ids, arranged.query_cams,
                               arranged.gallery_ids, arranged.gallery_cams, junk=no_junk)
    entry = {"trial": trial, **metrics.as_dict(), "gallery_size": int(len(gallery)),
             "valid_queries": metrics.num_valid}
    return make_result([entry], regdb_mode=direction, normalize=bool(normalize), rerank=bool(rerank))


# ---------------------------------------------------------------- the protocol
def parse_splits(text) -> tuple:
    """``--trial``: ``"all"`` -> 1..10; ``"3"`` -> (3,); ``"1,2,5"`` -> (1, 2, 5). ConfigError otherwise."""
    if isinstance(text, tuple):
        return text
    text = str(text).strip().lower()
    if text == "all":
        return TRIALS
    try:
        splits = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--trial must be 1..10, a comma list such as 1,2,3, or 'all'; got {text!r}") from None
    if not splits or any(t not in TRIALS for t in splits):
        raise ConfigError(f"--trial must be 1..10, a comma list such as 1,2,3, or 'all'; got {text!r}")
    return splits


@dataclass
class RegDBOptions:
    """The RegDB test protocol's options; the defaults are the authors' (design.md §5.3, decision 7).

    Attributes:
        direction: ``"i2v"`` (thermal query, visible gallery) or ``"v2i"``; results store it as
            ``regdb_mode``.
        splits: the RegDB train/test splits to evaluate ("trials" 1..10), one model each
            (``{trial}`` in the model path); several are combined into mean ± std.
        normalize: L2-normalise before the distance (None/False: off, as the authors).
    """

    direction: str = "i2v"
    splits: tuple = (1,)
    normalize: bool | None = None


class RegDBProtocol(EvalProtocol):
    """RegDB: one split's thermal and visible test images, I->V and V->I, one model per split."""

    options_type = RegDBOptions
    visualize_options = (DIRECTION_OPTION,)
    cli_options = (
        CliOption(("--regdb-mode",), "direction", "RegDB direction: i2v = thermal query, visible gallery; "
                  "v2i = the reverse.", default="i2v", choices=DIRECTIONS, show_default=True),
        CliOption(("--trial",), "splits", "RegDB trial: 1..10, a list such as 1,2,3, or 'all' (one model per "
                  "trial via {trial} in --model).", default="1", show_default=True, parse=parse_splits),
        CliOption(("--normalize/--no-normalize",), "normalize",
                  "RegDB: L2-normalise the features before the distance [default: off, as the authors; "
                  "SYSU always normalises]."),
    )

    def test_split(self, reader):
        """The thermal and the visible test images (the i2v roles; v2i swaps them at evaluation)."""
        return reader.test_thermal(), reader.test_visible()

    def model_splits(self, options: RegDBOptions) -> tuple:
        return tuple(options.splits)

    def settings(self, options: RegDBOptions, all_settings: bool = False) -> list:
        return list(DIRECTIONS) if all_settings else [options.direction]

    def score(self, features, options: RegDBOptions, *, all_settings=False, rerank=False, context=None,
              split=None, source="features") -> list[dict]:
        return [evaluate_regdb(features, direction, normalize=bool(options.normalize), rerank=rerank, trial=split)
                for direction in self.settings(options, all_settings)]

    def setting_name(self, result: dict) -> str:
        direction = {"i2v": "infrared->visible", "v2i": "visible->infrared"}.get(result.get("regdb_mode"), "?")
        return f"RegDB {direction}"

    def evaluate_during_training(self, features, reader, config, final: bool):
        """The run's split, both directions on the raw BN-neck features, summarised by their mean
        (as the authors' engine logs), during and at the end of training."""
        results = self.evaluate(features, RegDBOptions(), all_settings=True, split=config.data.trial)
        return results, results

    def ranked_list_sources(self, reader, options: dict):
        """One split's test images in ``--direction``, raw features, no camera rule."""
        direction = options["direction"]
        if direction not in DIRECTIONS:
            raise ConfigError(f"RegDB direction must be 'i2v' or 'v2i', got {direction!r}")
        thermal, visible = reader.test_thermal(), reader.test_visible()
        queries, gallery = (thermal, visible) if direction == "i2v" else (visible, thermal)
        label = "thermal -> visible" if direction == "i2v" else "visible -> thermal"
        return queries, gallery, f"RegDB trial {reader.trial}, {label} ({len(gallery)} gallery images)", False, None


REGDB = DatasetSpec(
    name="regdb", title="RegDB", open=RegDBDataset, protocol=RegDBProtocol,
    # The authors' configs/RegDB.yml (design.md §3).
    preset={"model": {"image_height": 256, "image_width": 128},
            "data": {"data_root": "datasets/RegDB", "batch_ids": 12, "images_per_id": 10},
            "train": {"milestones": [110], "epochs": 140}},
    info_keys=("trial", "train_ids", "train_visible", "train_thermal", "test_ids", "test_visible", "test_thermal"),
    splits=TRIALS, cache_all_records=True, synthesize=synthesize_regdb,
)
