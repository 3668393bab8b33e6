"""Evaluation of a manifest's query rows against its gallery rows (:mod:`mpanet_tf.data.manifest`).

- Cross-modality by default: each query is ranked against the gallery entries of the *other*
  modality only (an infrared query against visible images and vice versa); with
  ``cross_modality=False`` every gallery entry is ranked.
- Gallery entries of the same person *and* the same camera as the query are removed (a camera
  name filming in both modalities is one camera, as LLCM's camera numbers).
- Features L2-normalised, squared Euclidean distance (the SYSU and LLCM ranking).
- Unique-id CMC (R1/R5/R10/R20), mAP and mINP over the kept list
  (:func:`mpanet_tf.eval.metrics.evaluate_ranking`); queries with no kept true match are skipped.
- ``gallery_sampling="all"``: one evaluation on the whole gallery. ``"single-shot"``: ``trials``
  seeded draws (10); trial t draws one image per (person, camera, modality) cell of the gallery
  exactly as LLCM's and AGW's galleries are drawn (:func:`~mpanet_tf.eval.llcm_protocol.seeded_single_shot`):
  ``random.seed(t)``, cells in ascending (person number, camera number, visible-before-infrared)
  order, ``random.choice`` over the cell's relative paths sorted as strings. Mean over the trials.

The :class:`~mpanet_tf.eval.features.FeatureSet` must carry the modality flags
(``query_infrared``/``gallery_infrared``), which :func:`~mpanet_tf.eval.features.feature_set_from_records`
fills in and feature files keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpanet_tf.data.manifest import ManifestDataset
from mpanet_tf.data.registry import DatasetSpec
from mpanet_tf.data.synthetic_folders import synthesize_manifest
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.llcm_protocol import seeded_single_shot
from mpanet_tf.eval.metrics import evaluate_ranking, normalized_squared_distance
from mpanet_tf.eval.protocol import CliOption, EvalProtocol
from mpanet_tf.eval.report import make_result

GALLERY_SAMPLINGS = ("all", "single-shot")
TRIALS = 10


@dataclass(frozen=True)
class ManifestProtocolOptions:
    """Options of the manifest protocol.

    Attributes:
        cross_modality: rank each query against the other modality only (default) or against all.
        gallery_sampling: ``"all"`` (one evaluation) or ``"single-shot"`` (seeded draws).
        trials: number of single-shot draws (ignored for ``"all"``).
    """

    cross_modality: bool = True
    gallery_sampling: str = "all"
    trials: int = TRIALS

    def __post_init__(self):
        if self.gallery_sampling not in GALLERY_SAMPLINGS:
            raise ConfigError(f"gallery sampling must be 'all' or 'single-shot', got {self.gallery_sampling!r}")
        if isinstance(self.trials, bool) or not isinstance(self.trials, (int, np.integer)) or self.trials < 1:
            raise ConfigError(f"trials must be an integer >= 1, got {self.trials!r}")


def manifest_trial_galleries(features: FeatureSet, options: ManifestProtocolOptions) -> list[np.ndarray]:
    """Gallery row indices (ascending) of every evaluation: all rows once, or one per single-shot trial."""
    rows = np.arange(len(features.gallery_ids), dtype=np.int64)
    if options.gallery_sampling == "all":
        return [rows]
    cells: dict[tuple[int, int, bool], list] = {}
    for row, pid, camera, infrared, path in zip(rows.tolist(), features.gallery_ids.tolist(),
                                               features.gallery_cams.tolist(), features.gallery_infrared.tolist(),
                                               features.gallery_paths.tolist()):
        cells.setdefault((pid, camera, infrared), []).append((path, row))
    return [np.array(sorted(seeded_single_shot(cells, trial)), dtype=np.int64) for trial in range(options.trials)]


def _junk_rule(features: FeatureSet, rows: np.ndarray, cross_modality: bool):
    """(query codes, gallery codes, junk rule) for :func:`evaluate_ranking`.

    Each entry is coded by its index into one table of (person, camera, infrared); the rule drops a
    gallery entry with the query's person and camera, and, across modalities, the query's modality.
    """
    ids = np.concatenate([features.query_ids, features.gallery_ids[rows]])
    cams = np.concatenate([features.query_cams, features.gallery_cams[rows]])
    infrared = np.concatenate([features.query_infrared, features.gallery_infrared[rows]])
    codes = np.arange(len(ids))

    def junk(query_codes, gallery_codes):
        q, g = np.asarray(query_codes), np.asarray(gallery_codes)
        drop = (ids[q][:, None] == ids[g][None, :]) & (cams[q][:, None] == cams[g][None, :])
        if cross_modality:
            drop |= infrared[q][:, None] == infrared[g][None, :]
        return drop

    return codes[:len(features.query_ids)], codes[len(features.query_ids):], junk


def evaluate_manifest(features: FeatureSet, options: ManifestProtocolOptions = ManifestProtocolOptions(),
                      compute_dtype=np.float32) -> dict:
    """Evaluate a manifest's query features against its gallery features.

    Args:
        features: query and gallery features with ids, camera numbers, paths and modality flags.
        options: cross-modality, gallery sampling and trials.
        compute_dtype: dtype of the normalisation and distance products (float32).

    Returns:
        a result dict (:mod:`mpanet_tf.eval.report`):
        ``sampling`` = the gallery sampling, ``shots`` 1 for single-shot, ``cross_modality``;
        R1/R5/R10/R20/mAP/mINP in percent, mean/std over the trials.

    Raises:
        DatasetError: the features lack modality flags, or no query has a kept true match.
    """
    if features.query_infrared is None or features.gallery_infrared is None:
        raise DatasetError("the manifest protocol needs the modality of every image, and these features do not "
                           "carry it (a feature file from an older version?); extract them again")
    galleries = manifest_trial_galleries(features, options)
    distance = normalized_squared_distance(features.query_features, features.gallery_features, compute_dtype)
    per_trial = []
    for trial, rows in enumerate(galleries):
        query_codes, gallery_codes, junk = _junk_rule(features, rows, options.cross_modality)
        metrics = evaluate_ranking(distance[:, rows], features.query_ids, query_codes,
                                   features.gallery_ids[rows], gallery_codes, junk=junk)
        per_trial.append({"trial": trial, **metrics.as_dict(), "gallery_size": int(len(rows)),
                          "valid_queries": metrics.num_valid})
    single = options.gallery_sampling == "single-shot"
    return make_result(per_trial, shots=1 if single else None,
                       sampling=options.gallery_sampling, cross_modality=bool(options.cross_modality))


# --------------------------------------------------------------- the registry's protocol

class ManifestProtocol(EvalProtocol):
    """A manifest's query rows against its gallery rows (:func:`evaluate_manifest`)."""

    options_type = ManifestProtocolOptions
    cli_options = (
        CliOption(("--gallery-sampling",), "gallery_sampling", "Manifest gallery: all = every gallery row once; "
                  "single-shot = 10 seeded draws of one image per (person, camera, modality).", default="all",
                  choices=GALLERY_SAMPLINGS, show_default=True),
        CliOption(("--cross-modality/--any-modality",), "cross_modality", "Manifest: rank each query against "
                  "the other modality only (default) or against the whole gallery.", default=True),
    )

    def options_from_cli(self, params: dict) -> ManifestProtocolOptions:
        cross = params.get("cross_modality")
        return ManifestProtocolOptions(cross_modality=True if cross is None else bool(cross),
                                       gallery_sampling=params.get("gallery_sampling") or "all")

    def test_split(self, reader):
        """The manifest's query rows and gallery rows."""
        return reader.query_records(), reader.gallery_records()

    def settings(self, options: ManifestProtocolOptions, all_settings: bool = False) -> list:
        return [options.gallery_sampling]

    def score(self, features, options: ManifestProtocolOptions, *, all_settings=False, rerank=False,
              context=None, split=None, source="features") -> list[dict]:
        if rerank:
            raise ConfigError("--rerank is not implemented for the manifest protocol; drop it")
        return [evaluate_manifest(features, options)]

    def setting_name(self, result: dict) -> str:
        modality = "cross-modality" if result.get("cross_modality", True) else "any-modality"
        return f"Manifest {modality} {result.get('sampling') or 'all'}"

    def ranked_list_sources(self, reader, options: dict):
        queries, gallery = self.test_split(reader)
        return queries, gallery, f"{reader.path.name}: query vs gallery ({len(gallery)} images)", True, None


MANIFEST = DatasetSpec(
    name="manifest", title="manifest", open=ManifestDataset, protocol=ManifestProtocol,
    # Your own cameras: the SYSU training preset; --data-root names the CSV file.
    preset={"model": {"image_height": 384, "image_width": 128},
            "data": {"data_root": "datasets/manifest.csv", "batch_ids": 16, "images_per_id": 8},
            "train": {"milestones": [80, 120], "epochs": 140}},
    info_keys=("train_ids", "train_visible", "train_infrared", "test_ids", "query_visible", "query_infrared",
               "gallery_visible", "gallery_infrared", "cameras"),
    synthesize=synthesize_manifest,
)
