"""One evaluation run (``mpanet-tf eval``): which models, which features, which settings.

- Features are extracted once per model (query + the whole gallery pool) and reused by every trial
  and setting; ``save_features``/``features`` write and read them (:mod:`mpanet_tf.eval.features`).
- SYSU-MM01: the official ``rand_perm_cam.mat`` protocol by default (decision 6), AGW's seeded
  one on request; the four settings all/indoor x single/multi-shot with ``all_settings``.
- RegDB: one model per trial (decision 7, AGW issue #19): ``{trial}`` in the model (or features)
  path names the trial's model, e.g. ``runs/regdb-t{trial}``; trials combine into mean ± std.
- A model folder holding ``seed-*`` run folders (``train --repeat N``) is evaluated per seed and
  reported as mean ± std across seeds (:func:`mpanet_tf.eval.report.aggregate_repeats`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.report import aggregate_repeats, combine_trials
from mpanet_tf.run_folder import seed_folders, seed_of

REGDB_TRIALS = tuple(range(1, 11))
SYSU_QUERY_CAMERAS = {3, 6}
SYSU_GALLERY_CAMERAS = {1, 2, 4, 5}


@dataclass
class EvalOptions:
    """What to evaluate; the defaults are the authors' protocols (facts §5).

    Attributes:
        dataset: ``"sysu"`` or ``"regdb"``.
        data_root: dataset folder (None: the preset's ``datasets/SYSU-MM01`` or ``datasets/RegDB``).
        mode, shots, trials, sampling: SYSU setting (``"all"``, 1, 10, ``"official"``).
        regdb_mode: ``"i2v"`` or ``"v2i"``.
        regdb_trials: RegDB trials, one model each.
        normalize: RegDB only: L2-normalise before the distance (default off, as the authors).
        rerank: k-reciprocal re-ranking.
        all_settings: SYSU all/indoor x 1/10 shots (single-shot only with seeded sampling), or
            both RegDB directions.
        rand_perm: SYSU ``rand_perm_cam.mat`` (None: ``data_root/exp/rand_perm_cam.mat``).
    """

    dataset: str
    data_root: str | None = None
    mode: str = "all"
    shots: int = 1
    trials: int = 10
    sampling: str = "official"
    regdb_mode: str = "i2v"
    regdb_trials: tuple = (1,)
    normalize: bool | None = None
    rerank: bool = False
    all_settings: bool = False
    batch_size: int = 64
    skip_bad_images: bool = False
    rand_perm: str | None = None
    progress: bool = True

    def root(self) -> str:
        if self.data_root:
            return self.data_root
        from mpanet_tf.config import MPANetConfig

        return MPANetConfig.preset(self.dataset).data.data_root

    def validate(self) -> None:
        if self.dataset not in ("sysu", "regdb"):
            raise ConfigError(f"--dataset must be sysu or regdb, got {self.dataset!r}")
        if self.dataset == "sysu" and self.normalize is False:
            raise ConfigError("the SYSU protocol always L2-normalises the features (facts §5.1); "
                              "--no-normalize applies to RegDB only")
        if self.dataset == "sysu" and self.sampling == "seed" and self.shots != 1 and not self.all_settings:
            raise ConfigError(f"the AGW seeded protocol is single-shot only, got --shots {self.shots}; "
                              "use --sampling official for multi-shot")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.dataset == "sysu" and self.regdb_trials != (1,):
            raise ConfigError("--trial selects a RegDB trial; SYSU-MM01 has one test split (use --trials N "
                              "for the number of gallery samplings)")


@dataclass
class ModelJob:
    """One model (or feature file) to evaluate: its seed label, RegDB trial and paths."""

    seed: str | None
    trial: int | None
    model: Path | None
    features: Path | None
    save_features: Path | None


def parse_trials(text) -> tuple:
    """``"all"`` -> 1..10; ``"3"`` -> (3,); ``"1,2,5"`` -> (1, 2, 5). ConfigError otherwise."""
    text = str(text).strip().lower()
    if text == "all":
        return REGDB_TRIALS
    try:
        trials = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError(f"--trial must be 1..10, a comma list such as 1,2,3, or 'all'; got {text!r}") from None
    if not trials or any(t not in REGDB_TRIALS for t in trials):
        raise ConfigError(f"--trial must be 1..10, a comma list such as 1,2,3, or 'all'; got {text!r}")
    return trials


def _fill(template: str, trial=None, seed=None) -> str:
    text = template
    if trial is not None:
        text = text.replace("{trial}", str(trial))
    if seed is not None:
        text = text.replace("{seed}", str(seed_of(seed)) if seed_of(seed) is not None else seed)
    return text


def plan_jobs(options: EvalOptions, model=None, features=None, save_features=None) -> list[ModelJob]:
    """Expand ``{trial}`` and ``seed-*`` folders into one job per model."""
    if (model is None) == (features is None):
        raise ConfigError("pass exactly one of --model (extract features) and --features (a saved .npz)")
    template = os.fspath(model if model is not None else features)
    trials = options.regdb_trials if options.dataset == "regdb" else (None,)
    if "{trial}" in template and options.dataset != "regdb":
        raise ConfigError(f"{{trial}} in {template} is for RegDB's per-trial models; SYSU-MM01 has one model")
    if len(trials) > 1 and "{trial}" not in template:
        raise ConfigError(f"RegDB trials {','.join(map(str, trials))} need one model each (train and test on the "
                          f"same trial); put {{trial}} in the path, e.g. runs/regdb-t{{trial}}, not {template}")
    jobs = []
    for trial in trials:
        path = Path(_fill(template, trial=trial))
        seeds = seed_folders(path) if model is not None else []
        for seed_path in seeds or [None]:
            seed = seed_path.name if seed_path is not None else None
            jobs.append(ModelJob(seed=seed, trial=trial,
                                 model=(seed_path or path) if model is not None else None,
                                 features=path if features is not None else None, save_features=None))
    if save_features is not None:
        template = os.fspath(save_features)
        if len(trials) > 1 and "{trial}" not in template:
            raise ConfigError(f"--save-features {template} is written once per trial; put {{trial}} in it")
        if any(job.seed for job in jobs) and "{seed}" not in template:
            raise ConfigError(f"--save-features {template} is written once per seed folder; put {{seed}} in it")
        for job in jobs:
            job.save_features = Path(_fill(template, trial=job.trial, seed=job.seed))
    return jobs


def settings_for(options: EvalOptions) -> list:
    """SYSU (mode, shots) pairs or RegDB directions to report."""
    if options.dataset == "regdb":
        return ["i2v", "v2i"] if options.all_settings else [options.regdb_mode]
    if not options.all_settings:
        return [(options.mode, int(options.shots))]
    from mpanet_tf.eval.sysu_protocol import ALL_SETTINGS

    return [s for s in ALL_SETTINGS if options.sampling == "official" or s[1] == 1]


def load_permutations(options: EvalOptions):
    """SYSU official: the permutation mapping, read before any feature is extracted."""
    if options.dataset != "sysu" or options.sampling != "official":
        return None
    from mpanet_tf.data.sysu import load_rand_perm_cam

    path = options.rand_perm or os.path.join(options.root(), "exp", "rand_perm_cam.mat")
    try:
        return load_rand_perm_cam(path)
    except DatasetError as error:
        raise DatasetError(f"{error} (or pass --rand-perm FILE; --sampling seed runs the AGW protocol, "
                           "which is not comparable with the paper)") from None


def test_split(dataset) -> tuple[list, list]:
    """(query, gallery) records whose features every protocol of the dataset reads: SYSU's infrared
    test images and the whole visible pool of the test ids (all cameras); RegDB's thermal and
    visible test images (the i2v roles; v2i swaps them at evaluation)."""
    from mpanet_tf.data.sysu import SYSUDataset

    if isinstance(dataset, SYSUDataset):
        return dataset.query_records(), dataset.gallery_records("all")
    return dataset.test_thermal(), dataset.test_visible()


def extract_job_features(job: ModelJob, options: EvalOptions, log: Callable = print):
    """Embed the query set and the whole gallery pool of the job's dataset split."""
    from mpanet_tf.data.records import load_dataset
    from mpanet_tf.eval.embedder import load_embedder
    from mpanet_tf.eval.features import extract_feature_set

    embedder = load_embedder(job.model)
    dataset = load_dataset(options.dataset, options.root(), trial=job.trial or 1)
    query, gallery = test_split(dataset)
    log(f"extracting features of {len(query)} query and {len(gallery)} gallery images with {embedder.source}")
    return extract_feature_set(embedder, query, gallery, embedder.image_size, options.batch_size,
                               progress=options.progress, skip_bad_images=options.skip_bad_images, log=log)


def check_sysu_features(features, source) -> None:
    """SYSU features must pair infrared queries (cams 3, 6) with the visible pool (cams 1, 2, 4, 5)."""
    query, gallery = set(features.query_cams.tolist()), set(features.gallery_cams.tolist())
    if not query <= SYSU_QUERY_CAMERAS or not gallery <= SYSU_GALLERY_CAMERAS:
        raise DatasetError(f"features {source} are not SYSU-MM01 query/gallery features (query cameras "
                           f"{sorted(query)}, gallery cameras {sorted(gallery)}); pass --dataset regdb for RegDB")


def evaluate_features(features, options: EvalOptions, perm=None, trial=None, source="features") -> list[dict]:
    """Result dicts, one per setting of :func:`settings_for`, for one feature set."""
    if options.dataset == "sysu":
        from mpanet_tf.eval.sysu_protocol import evaluate_sysu_settings

        check_sysu_features(features, source)
        return evaluate_sysu_settings(features, settings_for(options), trials=options.trials,
                                      sampling=options.sampling, perm=perm, rerank=options.rerank)
    from mpanet_tf.eval.regdb_protocol import evaluate_regdb

    return [evaluate_regdb(features, direction, normalize=bool(options.normalize), rerank=options.rerank,
                           trial=trial) for direction in settings_for(options)]


def run_evaluation(options: EvalOptions, model=None, features=None, save_features=None,
                   log: Callable = print) -> list[dict]:
    """Evaluate every job and aggregate: trials combined per seed, then mean ± std across seeds.

    Returns:
        one result dict per setting (:mod:`mpanet_tf.eval.report`).
    """
    from mpanet_tf.eval.features import load_features, save_features as write_features

    options.validate()
    jobs = plan_jobs(options, model, features, save_features)
    perm = load_permutations(options)
    by_seed: dict = {}
    for job in jobs:
        if job.features is not None:
            feature_set = load_features(job.features)
        else:
            feature_set = extract_job_features(job, options, log)
        if job.save_features is not None:
            write_features(job.save_features, feature_set)
            log(f"features written to {job.save_features}")
        source = job.features or job.model
        by_seed.setdefault(job.seed, []).append(evaluate_features(feature_set, options, perm, job.trial, source))

    per_seed = []
    for trial_results in by_seed.values():
        per_seed.append([combine_trials(list(setting)) if len(setting) > 1 else setting[0]
                         for setting in zip(*trial_results)])
    if list(by_seed) == [None]:
        return per_seed[0]
    return [aggregate_repeats(list(setting)) for setting in zip(*per_seed)]
