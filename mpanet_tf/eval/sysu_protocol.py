"""SYSU-MM01 evaluation: the official ``rand_perm_cam.mat`` protocol and AGW's seeded one.

Official protocol (design.md §5.1, MPANet utils/eval_sysu.py; the default, decision 6):

- query = every infrared test image (cams 3, 6), the same in every trial;
- gallery of trial t (0-based) = for each gallery camera (all-search 1, 2, 4, 5; indoor 1, 2) and
  each test id with a non-empty permutation cell: row t of that cell, its first N entries (N = 1
  single-shot, 10 multi-shot; fewer when the camera has fewer images), 1-based numbers naming
  ``cam{c}/{id:04d}/{n:04d}.jpg``. Empty or missing cells are skipped;
- same-location rule: query cam 3 counts as cam 2, so cam-3 queries ignore cam-2 gallery images;
- L2-normalised features, squared Euclidean distance, unique-id CMC, mAP (and mINP), 10 trials.

AGW protocol (``sampling="seed"``, design.md §5.2, AGW data_manager.process_gallery_sysu): for trial t,
``random.seed(t)``, then for every test id (sorted) and every gallery camera in order, one
``random.choice`` from the sorted files of ``cam{c}/{id:04d}`` when it has any. Single-shot only.

Features are extracted once for the query set and the whole visible gallery pool (a
:class:`~mpanet_tf.eval.features.FeatureSet`); each trial selects pool rows by path. Query-to-pool
distances are computed once, in float32, for the union of the rows all trials use.

:class:`SYSUProtocol` (options :class:`SYSUOptions`) is the protocol the
``sysu`` :class:`~mpanet_tf.data.registry.DatasetSpec` (:data:`SYSU`, declared at the bottom)
holds: its ``mpanet-tf eval`` and ``visualize`` options, the settings, the table labels and the
evaluation during training.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from mpanet_tf.data.registry import DatasetSpec
from mpanet_tf.data.synthetic import synthesize_sysu
from mpanet_tf.data.sysu import GALLERY_CAMERAS, INFRARED_CAMERAS, VISIBLE_CAMERAS, SYSUDataset, load_rand_perm_cam
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet, feature_set_from_records
from mpanet_tf.eval.metrics import evaluate_ranking, normalized_squared_distance, same_location_junk
from mpanet_tf.eval.protocol import CliOption, EvalProtocol
from mpanet_tf.eval.report import make_result

SAMPLINGS = ("official", "seed")
#: The four settings of the paper's SYSU table: (mode, shots).
ALL_SETTINGS = (("all", 1), ("all", 10), ("indoor", 1), ("indoor", 10))


def image_key(path) -> str:
    """``'cam{c}/{id:04d}/{n:04d}'``: the last three components of a path, extension removed."""
    parts = os.path.splitext(str(path).replace("\\", "/"))[0].split("/")
    return "/".join(parts[-3:])


def official_gallery_keys(perm, person_ids, cameras, trial: int, shots: int) -> list[str]:
    """Image keys of trial ``trial``'s official gallery (design.md §5.1).

    Args:
        perm: {(camera, person_id): (trials, n) 1-based image numbers} as
            :func:`mpanet_tf.data.sysu.load_rand_perm_cam` returns; absent or empty cells skipped.
        person_ids: the test ids.
        cameras: the gallery cameras.
        trial: 0-based row of every permutation.
        shots: images per (camera, id) (fewer when the row is shorter).
    """
    keys = []
    for camera in cameras:
        for pid in person_ids:
            cell = perm.get((int(camera), int(pid)))
            if cell is None or np.size(cell) == 0:
                continue
            numbers = np.asarray(cell)[trial, :shots]
            keys.extend(f"cam{camera}/{int(pid):04d}/{int(n):04d}" for n in numbers)
    return keys


def agw_gallery_keys(files, person_ids, cameras, trial: int) -> list[str]:
    """Image keys of AGW's seeded single-shot gallery for ``trial`` (design.md §5.2).

    Mirrors AGW's process_gallery_sysu: ``random.seed(trial)``; for id in sorted ids, for camera in
    ``cameras``: if the (camera, id) folder has files, ``random.choice(sorted files)``.

    Args:
        files: {(camera, person_id): image keys or paths of that folder}; sorted here.
    """
    rng = random.Random(trial)   # the same stream as random.seed(trial) + random.choice
    keys = []
    for pid in sorted(int(p) for p in person_ids):
        for camera in cameras:
            names = sorted(files.get((int(camera), pid), ()))
            if names:
                keys.append(image_key(rng.choice(names)))
    return keys


def _perm_from(perm):
    """A permutation mapping from a mapping, a ``.mat`` path, a dataset root or a SYSUDataset."""
    if perm is None:
        raise ConfigError("the official SYSU protocol needs rand_perm_cam.mat; pass perm= (the file, "
                          "the dataset or its root) or use sampling='seed' for the AGW protocol")
    if hasattr(perm, "load_rand_perm"):
        return perm.load_rand_perm()
    if isinstance(perm, (str, os.PathLike)):
        path = os.fspath(perm)
        if os.path.isdir(path):
            path = os.path.join(path, "exp", "rand_perm_cam.mat")
        return load_rand_perm_cam(path)
    return perm


def _check_setting(mode: str, shots: int, sampling: str, trials: int, perm) -> None:
    if mode not in GALLERY_CAMERAS:
        raise ConfigError(f"SYSU mode must be 'all' or 'indoor', got {mode!r}")
    if int(shots) < 1:
        raise ConfigError(f"shots must be >= 1, got {shots}")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"SYSU sampling must be 'official' or 'seed', got {sampling!r}")
    if sampling == "seed" and int(shots) != 1:
        raise ConfigError(f"the AGW seeded protocol is single-shot only (AGW issue #8), got shots={shots}; "
                          "use --sampling official for multi-shot")
    if int(trials) < 1:
        raise ConfigError(f"trials must be >= 1, got {trials}")
    if sampling == "official":
        rows = min((np.shape(cell)[0] for cell in perm.values() if np.size(cell)), default=0)
        if rows == 0:
            raise DatasetError("the gallery permutations hold no non-empty (camera, id) cell; "
                               "use the official rand_perm_cam.mat (SYSU-MM01 repository, evaluation/data_split/)")
        if trials > rows:
            raise ConfigError(f"rand_perm_cam.mat holds {rows} trials, asked for {trials}; use --trials {rows} or fewer")


def check_permutation_coverage(perm, features: FeatureSet) -> None:
    """Refuse a permutation file that leaves out test identities of the gallery pool.

    The official file has a cell for every test identity and camera holding images. A file that
    has no non-empty cell for some identity (in any gallery camera) silently drops that identity
    from every gallery: its queries are then skipped and the scores inflate (issue 14: rank-1
    50.00 instead of 19.05), so such a file raises :class:`DatasetError`. A single (camera, id)
    folder without a cell while its identity is covered elsewhere is skipped, as the official
    code skips empty cells, with one warning line.
    """
    pool = np.isin(features.gallery_cams, GALLERY_CAMERAS["all"])
    present = sorted(set(zip(features.gallery_cams[pool].tolist(), features.gallery_ids[pool].tolist())))
    covered = {(c, p) for c, p in present if np.size(perm.get((int(c), int(p)), ())) > 0}
    ids = sorted({p for _, p in present})
    uncovered_ids = [p for p in ids if not any((c, p) in covered for c in GALLERY_CAMERAS["all"])]
    if uncovered_ids:
        shown = ", ".join(str(p) for p in uncovered_ids[:5]) + (" ..." if len(uncovered_ids) > 5 else "")
        raise DatasetError(
            f"the gallery permutation file has no cell for {len(uncovered_ids)} of the {len(ids)} test ids with "
            f"gallery images (ids {shown}), so their queries would be skipped and the scores inflated; use the "
            "official rand_perm_cam.mat (SYSU-MM01 repository, evaluation/data_split/) or --sampling seed")
    missing = [(c, p) for c, p in present if (c, p) not in covered]
    if missing:
        camera, pid = missing[0]
        warnings.warn(f"the gallery permutation file has no cell for {len(missing)} (camera, id) folders with "
                      f"images (first: cam{camera}/{int(pid):04d}); they are left out, as the official code "
                      "skips empty cells")


def sysu_trial_galleries(features: FeatureSet, mode: str = "all", shots: int = 1, trials: int = 10,
                         sampling: str = "official", perm=None) -> list[np.ndarray]:
    """Pool row indices (ascending, i.e. in pool order, as MPANet's ``np.in1d``) of every trial's gallery."""
    if sampling == "official":
        perm = _perm_from(perm)
    _check_setting(mode, shots, sampling, trials, perm)
    cameras = GALLERY_CAMERAS[mode]
    in_mode = np.isin(features.gallery_cams, cameras)
    rows = np.flatnonzero(in_mode)
    keys = [image_key(p) for p in features.gallery_paths[rows].tolist()]
    row_of = dict(zip(keys, rows.tolist()))
    person_ids = np.unique(features.gallery_ids[rows])
    files = defaultdict(list)
    if sampling == "seed":
        for key, camera, pid in zip(keys, features.gallery_cams[rows].tolist(), features.gallery_ids[rows].tolist()):
            files[(camera, pid)].append(key)

    if sampling == "official":
        check_permutation_coverage(perm, features)
    galleries, missing = [], []
    for trial in range(trials):
        if sampling == "official":
            chosen = official_gallery_keys(perm, person_ids, cameras, trial, shots)
        else:
            chosen = agw_gallery_keys(files, person_ids, cameras, trial)
        missing.extend(k for k in chosen if k not in row_of)
        galleries.append(np.array(sorted({row_of[k] for k in chosen if k in row_of}), dtype=np.int64))
    if missing:
        warnings.warn(f"{len(set(missing))} gallery images named by the permutation file are not in the feature "
                      f"set (first: {missing[0]}); they are left out, as MPANet's eval_sysu does")
    return galleries


def evaluate_sysu_settings(features: FeatureSet, settings=(("all", 1),), trials: int = 10,
                           sampling: str = "official", perm=None, rerank: bool = False,
                           rerank_params: dict | None = None, compute_dtype=np.float32) -> list[dict]:
    """Evaluate several (mode, shots) settings on one feature set; one result dict per setting.

    The query-to-gallery distances are computed once for the union of every trial's gallery rows
    over all settings: (Q, D) x (U, D) products in ``compute_dtype`` (float32, as the authors'
    GPU code; float64 for exact comparisons), no per-query loop.
    """
    if sampling == "official":
        perm = _perm_from(perm)
    plans = [(mode, int(shots), sysu_trial_galleries(features, mode, shots, trials, sampling, perm))
             for mode, shots in settings]
    union = np.unique(np.concatenate([rows for _, _, galleries in plans for rows in galleries]))
    query = features.query_features
    gallery = features.gallery_features[union]
    if rerank:
        from mpanet_tf.eval.rerank import k_reciprocal_rerank_distances  # deferred: scipy, only for --rerank

        query_query = normalized_squared_distance(query, query, compute_dtype)
        gallery_gallery = normalized_squared_distance(gallery, gallery, compute_dtype)
    distance = normalized_squared_distance(query, gallery, compute_dtype)       # (Q, U), L2-normalised rows

    results = []
    for mode, shots, galleries in plans:
        per_trial = []
        for trial, rows in enumerate(galleries):
            cols = np.searchsorted(union, rows)
            dist = distance[:, cols]
            if rerank:
                dist = k_reciprocal_rerank_distances(dist, query_query, gallery_gallery[np.ix_(cols, cols)],
                                                     **(rerank_params or {}))
            metrics = evaluate_ranking(dist, features.query_ids, features.query_cams,
                                       features.gallery_ids[rows], features.gallery_cams[rows],
                                       junk=same_location_junk)
            per_trial.append({"trial": trial, **metrics.as_dict(), "gallery_size": int(len(rows)),
                              "valid_queries": metrics.num_valid})
        results.append(make_result(per_trial, mode=mode, shots=shots, sampling=sampling, rerank=bool(rerank)))
    return results


def evaluate_sysu(features: FeatureSet, perm=None, mode: str = "all", shots: int = 1, trials: int = 10,
                  sampling: str = "official", rerank: bool = False, rerank_params: dict | None = None,
                  compute_dtype=np.float32) -> dict:
    """Evaluate one SYSU setting (design.md §5.1 official, §5.2 with ``sampling="seed"``).

    Args:
        features: query = infrared test images, gallery = the visible pool of the test ids.
        perm: for ``sampling="official"``: the permutation mapping, the ``rand_perm_cam.mat`` path,
            the dataset root or a :class:`~mpanet_tf.data.sysu.SYSUDataset`.
        mode: ``"all"`` (cams 1, 2, 4, 5) or ``"indoor"`` (cams 1, 2).
        shots: 1 (single-shot) or 10 (multi-shot); the seeded protocol allows 1 only.
        trials: number of trials (10).
        sampling: ``"official"`` or ``"seed"``.
        rerank: k-reciprocal re-ranking of each trial's distances (:mod:`mpanet_tf.eval.rerank`).
        rerank_params: ``k1``, ``k2``, ``lambda_value`` overrides (20, 6, 0.3).
        compute_dtype: dtype of the normalisation and the distance products (float32).

    Returns:
        a result dict (:mod:`mpanet_tf.eval.report`), metrics in percent, mean/std over trials.
    """
    return evaluate_sysu_settings(features, ((mode, shots),), trials, sampling, perm, rerank, rerank_params,
                                  compute_dtype)[0]


# ---------------------------------------------------------------- the protocol
_PERM_SOURCE_HINT = ("(or pass --rand-perm FILE; --sampling seed runs the AGW protocol, which is not "
                     "comparable with the paper)")


@dataclass
class SYSUOptions:
    """The SYSU-MM01 test protocol's options; the defaults are the paper's (design.md §5.1).

    Attributes:
        mode: gallery cameras, ``"all"`` (1, 2, 4, 5) or ``"indoor"`` (1, 2).
        shots: gallery images per (camera, identity): 1 single-shot, 10 multi-shot.
        gallery_trials: how many gallery samplings to average (the paper's 10 "trials"; one test
            split and one model, unlike RegDB's trials).
        sampling: ``"official"`` (``rand_perm_cam.mat``) or ``"seed"`` (AGW's ``random.seed(trial)``).
        rand_perm: the ``rand_perm_cam.mat`` file (None: ``DATA_ROOT/exp/rand_perm_cam.mat``).
    """

    mode: str = "all"
    shots: int = 1
    gallery_trials: int = 10
    sampling: str = "official"
    rand_perm: str | None = None


def check_sysu_features(features, source) -> None:
    """SYSU features must pair infrared queries (cams 3, 6) with the visible pool (cams 1, 2, 4, 5)."""
    query, gallery = set(features.query_cams.tolist()), set(features.gallery_cams.tolist())
    if not query <= set(INFRARED_CAMERAS) or not gallery <= set(VISIBLE_CAMERAS):
        raise DatasetError(f"features {source} are not SYSU-MM01 query/gallery features (query cameras "
                           f"{sorted(query)}, gallery cameras {sorted(gallery)}); pass --dataset regdb for RegDB")


MODE_OPTION = CliOption(("--mode",), "mode", "SYSU gallery cameras: all = 1,2,4,5; indoor = 1,2.", default="all",
                        choices=tuple(GALLERY_CAMERAS), show_default=True)


class SYSUProtocol(EvalProtocol):
    """SYSU-MM01: infrared queries against sampled visible galleries (official or AGW sampling)."""

    options_type = SYSUOptions
    visualize_options = (MODE_OPTION,)
    cli_options = (
        MODE_OPTION,
        CliOption(("--shots",), "shots", "SYSU gallery images per identity and camera: 1 single-shot, 10 multi-shot.",
                  default="1", choices=("1", "10"), show_default=True, parse=int),
        CliOption(("--trials",), "gallery_trials", "SYSU gallery samplings to average.", default=10, type=int,
                  show_default=True),
        CliOption(("--sampling",), "sampling",
                  "SYSU gallery sampling: official rand_perm_cam.mat (comparable with the paper) or seed "
                  "(AGW's random.seed(trial), single-shot only).",
                  default="official", choices=SAMPLINGS, show_default=True),
        CliOption(("--rand-perm",), "rand_perm", "SYSU rand_perm_cam.mat [default: DATA_ROOT/exp/rand_perm_cam.mat]."),
    )

    def options_from_cli(self, params: dict) -> SYSUOptions:
        # RegDB's options given with --dataset sysu are refused rather than ignored.
        if params.get("normalize") is False:
            raise ConfigError("the SYSU protocol always L2-normalises the features (design.md §5.1); "
                              "--no-normalize applies to RegDB only")
        if tuple(params.get("splits") or (1,)) != (1,):
            raise ConfigError("--trial selects a RegDB trial; SYSU-MM01 has one test split (use --trials N "
                              "for the number of gallery samplings)")
        return super().options_from_cli(params)

    def validate(self, options: SYSUOptions, all_settings: bool = False) -> None:
        if options.sampling == "seed" and options.shots != 1 and not all_settings:
            raise ConfigError(f"the AGW seeded protocol is single-shot only, got --shots {options.shots}; "
                              "use --sampling official for multi-shot")

    def test_split(self, reader):
        """The infrared test images and the whole visible pool of the test ids (all four cameras)."""
        return reader.query_records(), reader.gallery_records("all")

    def prepare(self, options: SYSUOptions, data_root):
        """The official permutations, read before any feature is extracted (None for AGW sampling)."""
        if options.sampling != "official":
            return None
        path = options.rand_perm or os.path.join(data_root, "exp", "rand_perm_cam.mat")
        try:
            return load_rand_perm_cam(path)
        except DatasetError as error:
            raise DatasetError(f"{error} {_PERM_SOURCE_HINT}") from None

    def settings(self, options: SYSUOptions, all_settings: bool = False) -> list:
        """(mode, shots) pairs: the chosen one, or the paper's four (single-shot only when seeded)."""
        if not all_settings:
            return [(options.mode, int(options.shots))]
        return [s for s in ALL_SETTINGS if options.sampling == "official" or s[1] == 1]

    def score(self, features, options: SYSUOptions, *, all_settings=False, rerank=False, context=None,
              split=None, source="features") -> list[dict]:
        check_sysu_features(features, source)
        return evaluate_sysu_settings(features, self.settings(options, all_settings), trials=options.gallery_trials,
                                      sampling=options.sampling, perm=context, rerank=rerank)

    def setting_name(self, result: dict) -> str:
        shots = {1: "single-shot", 10: "multi-shot"}.get(result.get("shots"), f"{result.get('shots')}-shot")
        name = f"SYSU {result.get('mode')}-search {shots}"
        if result.get("sampling") == "seed":
            name += " (AGW seeds)"
        return name

    def training_skip_reason(self, reader) -> str | None:
        if reader.has_rand_perm:
            return None
        return (f"{reader.rand_perm_path} is missing; download rand_perm_cam.mat from the official SYSU-MM01 "
                "repository (github.com/wuancong/SYSU-MM01, evaluation/data_split/) into the dataset's exp/ folder")

    def evaluate_during_training(self, features, reader, config, final: bool):
        """All-search single-shot during training, the paper's four settings at the end (official
        sampling, 10 gallery trials); the summary is the all-search single-shot result."""
        results = self.evaluate(features, SYSUOptions(), all_settings=final, context=reader)
        return results, results[:1]

    def ranked_list_sources(self, reader, options: dict):
        """The test queries and the first official single-shot gallery of ``--mode`` (the whole
        pool without ``rand_perm_cam.mat``), with the same-location camera rule."""
        mode = options["mode"]
        queries, pool = reader.query_records(), reader.gallery_records(mode)
        if not queries or not pool:
            raise DatasetError(f"SYSU-MM01 at {reader.root} has no test {'queries' if not queries else 'gallery'} "
                               "images; check exp/test_id.txt and the camera folders")
        if not reader.has_rand_perm:
            return (queries, pool, f"SYSU-MM01 {mode}-search, whole gallery pool ({len(pool)} images)", True,
                    same_location_junk)
        # Only paths, ids and cameras decide the trial's gallery; placeholder features avoid embedding the pool.
        placeholder = feature_set_from_records(queries, np.zeros((len(queries), 1), np.float32),
                                               pool, np.zeros((len(pool), 1), np.float32))
        rows = sysu_trial_galleries(placeholder, mode=mode, shots=1, trials=1, sampling="official", perm=reader)[0]
        gallery = [pool[i] for i in rows]
        return (queries, gallery,
                f"SYSU-MM01 {mode}-search, official single-shot gallery of trial 1 ({len(gallery)} images)", True,
                same_location_junk)


SYSU = DatasetSpec(
    name="sysu", title="SYSU-MM01", open=SYSUDataset, protocol=SYSUProtocol,
    # The authors' configs/SYSU.yml (design.md §3).
    preset={"model": {"image_height": 384, "image_width": 128},
            "data": {"data_root": "datasets/SYSU-MM01", "batch_ids": 16, "images_per_id": 8},
            "train": {"milestones": [80, 120], "epochs": 140}},
    info_keys=("train_ids", "train_visible", "train_infrared", "test_ids", "query", "gallery_all",
               "gallery_indoor", "has_rand_perm"),
    synthesize=synthesize_sysu,
)
