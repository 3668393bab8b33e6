"""``mpanet-tf eval``: evaluate saved artifacts (run folders, exported models, feature files).

Unlike :mod:`mpanet_tf.training.live_eval` (the model being trained, in memory), this module works
from paths: it expands ``{trial}`` / ``seed-*`` into one job per model, embeds each model's test
split or reads its ``.npz`` features, and hands them to the dataset's protocol
(:mod:`mpanet_tf.eval.protocol`, found through :mod:`mpanet_tf.data.registry`).

- Features are extracted once per model (query + the whole gallery pool) and reused by every
  gallery trial and setting; ``save_features``/``features`` write and read them
  (:mod:`mpanet_tf.eval.features`).
- SYSU-MM01: the official ``rand_perm_cam.mat`` protocol by default (decision 6), AGW's seeded
  one on request; the four settings all/indoor x single/multi-shot with ``all_settings``.
- RegDB: one model per split (decision 7, AGW issue #19): ``{trial}`` in the model (or features)
  path names the split's model, e.g. ``runs/regdb-t{trial}``; splits combine into mean ± std.
- A model folder holding ``seed-*`` run folders (``train --repeat N``) is evaluated per seed and
  reported as mean ± std across seeds (:func:`mpanet_tf.eval.report.aggregate_repeats`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mpanet_tf.data.registry import dataset_names, get_dataset
from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.features import extract_feature_set, load_features, save_features as write_features
from mpanet_tf.eval.report import aggregate_repeats, combine_trials
from mpanet_tf.run_folder import seed_folders, seed_of
from mpanet_tf.runtimes.embedder import load_embedder


@dataclass
class EvalOptions:
    """What to evaluate, the options every dataset shares.

    Attributes:
        dataset: a registered dataset name (``"sysu"``, ``"regdb"``).
        data_root: dataset folder (None: the preset's, e.g. ``datasets/SYSU-MM01``).
        protocol: the dataset protocol's options (:class:`~mpanet_tf.eval.sysu_protocol.SYSUOptions`,
            :class:`~mpanet_tf.eval.regdb_protocol.RegDBOptions`, ...); None: its defaults, the
            paper's protocol.
        rerank: k-reciprocal re-ranking.
        all_settings: every setting of the paper's table (SYSU all/indoor x 1/10 shots, single-shot
            only with seeded sampling; both RegDB directions).
        batch_size: images per embedding batch.
        skip_bad_images: leave undecodable images out instead of stopping.
        progress: progress bars on stderr.
    """

    dataset: str
    data_root: str | None = None
    protocol: Any = None
    rerank: bool = False
    all_settings: bool = False
    batch_size: int = 64
    skip_bad_images: bool = False
    progress: bool = True

    def __post_init__(self):
        if self.protocol is None and self._known():
            self.protocol = self.spec().get_protocol().default_options()

    def _known(self) -> bool:
        return str(self.dataset).strip().lower() in dataset_names()

    def spec(self):
        """The dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`."""
        return get_dataset(self.dataset)

    def evaluator(self):
        """The dataset's :class:`~mpanet_tf.eval.protocol.EvalProtocol`."""
        return self.spec().get_protocol()

    def root(self) -> str:
        return self.data_root or self.spec().data_root

    def validate(self) -> None:
        protocol = self.evaluator()
        if not isinstance(self.protocol, protocol.options_type):
            raise ConfigError(f"the {self.dataset} protocol takes {protocol.options_type.__name__} options, "
                              f"got {type(self.protocol).__name__}")
        protocol.validate(self.protocol, self.all_settings)
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")


@dataclass
class ModelJob:
    """One model (or feature file) to evaluate: its seed label, dataset split and paths."""

    seed: str | None
    trial: int | None
    model: Path | None
    features: Path | None
    save_features: Path | None


def _fill(template: str, trial=None, seed=None) -> str:
    text = template
    if trial is not None:
        text = text.replace("{trial}", str(trial))
    if seed is not None:
        text = text.replace("{seed}", str(seed_of(seed)) if seed_of(seed) is not None else seed)
    return text


def plan_jobs(options: EvalOptions, model=None, features=None, save_features=None) -> list[ModelJob]:
    """Expand ``{trial}`` (one model per dataset split) and ``seed-*`` folders into one job per model."""
    if (model is None) == (features is None):
        raise ConfigError("pass exactly one of --model (extract features) and --features (a saved .npz)")
    template = os.fspath(model if model is not None else features)
    spec = options.spec()
    trials = options.evaluator().model_splits(options.protocol)
    if "{trial}" in template and trials == (None,):
        raise ConfigError(f"{{trial}} in {template} is for RegDB's per-trial models; {spec.title} has one model")
    if len(trials) > 1 and "{trial}" not in template:
        raise ConfigError(f"{spec.title} trials {','.join(map(str, trials))} need one model each (train and test "
                          f"on the same trial); put {{trial}} in the path, e.g. runs/{spec.name}-t{{trial}}, "
                          f"not {template}")
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


def extract_job_features(job: ModelJob, options: EvalOptions, log: Callable = print):
    """Embed the query set and the whole gallery pool of the job's dataset split."""
    embedder = load_embedder(job.model)
    dataset = options.spec().load(options.root(), trial=job.trial or 1)
    query, gallery = options.evaluator().test_split(dataset)
    log(f"extracting features of {len(query)} query and {len(gallery)} gallery images with {embedder.source}")
    return extract_feature_set(embedder, query, gallery, embedder.image_size, options.batch_size,
                               progress=options.progress, skip_bad_images=options.skip_bad_images, log=log)


def evaluate_artifacts(options: EvalOptions, model=None, features=None, save_features=None,
                       log: Callable = print) -> list[dict]:
    """Evaluate every job and aggregate: splits combined per seed, then mean ± std across seeds.

    Returns:
        one result dict per setting (:mod:`mpanet_tf.eval.report`).
    """
    options.validate()
    protocol = options.evaluator()
    jobs = plan_jobs(options, model, features, save_features)
    context = protocol.prepare(options.protocol, options.root())
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
        by_seed.setdefault(job.seed, []).append(
            protocol.evaluate(feature_set, options.protocol, all_settings=options.all_settings, rerank=options.rerank,
                              context=context, split=job.trial, source=source))

    per_seed = []
    for trial_results in by_seed.values():
        per_seed.append([combine_trials(list(setting)) if len(setting) > 1 else setting[0]
                         for setting in zip(*trial_results)])
    if list(by_seed) == [None]:
        return per_seed[0]
    return [aggregate_repeats(list(setting)) for setting in zip(*per_seed)]
