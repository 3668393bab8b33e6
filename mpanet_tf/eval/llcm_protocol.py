"""LLCM evaluation (design.md §12 "Test protocol"; the authors' DEEN data_manager.py, eval_metrics.py).

- ``"i2v"``: query = every near-infrared test image, gallery = visible; ``"v2i"``: roles swapped.
- Gallery of trial t (t = 0..T-1): ``random.seed(t)``, then for every test id (sorted as DEEN sorts
  its ``"%04d"`` strings) and every gallery camera in order, one ``random.choice`` from the sorted
  file names of ``test_*/cam<c>/<id:04d>/`` when that folder has images. Single-shot only.
- Features L2-normalised; ranking by squared Euclidean distance of the normalised features (the
  same order as the dot product).
- For each query, gallery entries with the same identity *and* the same camera number are removed
  (a visible cam2 and an infrared cam2 count as the same camera, as the reference code does).
- Unique-id CMC, mAP and mINP over the kept list (:func:`mpanet_tf.eval.metrics.evaluate_ranking`);
  queries with no kept true match are skipped. Mean over the trials (10).

The :class:`~mpanet_tf.eval.features.FeatureSet` holds one modality as query and the whole test set
of the other modality as the gallery pool (either way round: the modality is read from the
``test_vis/`` / ``test_nir/`` prefix of the relative paths); each trial selects pool rows by path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from mpanet_tf.data.llcm import MODALITIES, MODES, LLCMDataset, check_mode
from mpanet_tf.data.registry import DatasetSpec
from mpanet_tf.data.synthetic_llcm import synthesize_llcm
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.metrics import evaluate_ranking, normalized_squared_distance
from mpanet_tf.eval.protocol import DIRECTION_OPTION, CliOption, EvalProtocol
from mpanet_tf.eval.report import make_result

TRIALS = 10
_FOLDER_MODALITY = {folder: modality for modality, (folder, _, _) in MODALITIES.items()}


@dataclass(frozen=True)
class LLCMProtocolOptions:
    """Options of the LLCM protocol.

    Attributes:
        mode: ``"i2v"`` (infrared query, visible gallery) or ``"v2i"`` (visible query, infrared gallery).
        trials: number of seeded gallery draws, trials 0..trials-1 (10 in the reference code).
    """

    mode: str = "i2v"
    trials: int = TRIALS

    def __post_init__(self):
        check_mode(self.mode)
        if isinstance(self.trials, bool) or not isinstance(self.trials, (int, np.integer)) or self.trials < 1:
            raise ConfigError(f"LLCM trials must be an integer >= 1, got {self.trials!r}")


def parse_test_path(path: str) -> tuple[str, int, int, str]:
    """``'test_nir/cam4/0012/x.jpg'`` -> (``"infrared"``, camera 4, id 12, ``"x.jpg"``).

    Raises:
        DatasetError: the path is not ``test_vis|test_nir/cam<N>/<id>/<file>`` (features of another dataset).
    """
    parts = str(path).replace("\\", "/").split("/")
    if (len(parts) >= 4 and parts[-4] in _FOLDER_MODALITY and parts[-3].startswith("cam")
            and parts[-3][3:].isdigit() and parts[-2].isdigit()):
        return _FOLDER_MODALITY[parts[-4]], int(parts[-3][3:]), int(parts[-2]), parts[-1]
    raise DatasetError(f"feature path {path!r} is not an LLCM test image (test_vis|test_nir/cam<N>/<id:04d>/<file>); "
                       "were the features extracted from another dataset?")


def _side_modality(paths) -> str:
    modalities = {parse_test_path(p)[0] for p in paths.tolist()}
    if len(modalities) != 1:
        raise DatasetError(f"LLCM features mix modalities on one side ({sorted(modalities)}); "
                           "extract one modality as the query and the other as the gallery")
    return modalities.pop()


def arrange(features: FeatureSet, mode: str) -> FeatureSet:
    """The feature set with the query modality of ``mode`` as the query side (swapped if needed)."""
    query_modality, gallery_modality = check_mode(mode)
    sides = (_side_modality(features.query_paths), _side_modality(features.gallery_paths))
    if sides == (query_modality, gallery_modality):
        return features
    if sides == (gallery_modality, query_modality):
        return features.swapped()
    raise DatasetError(f"LLCM features hold {sides[0]} queries and a {sides[1]} gallery; one side must be "
                       "visible and the other infrared")


def seeded_single_shot(cells: dict, trial: int) -> list:
    """One item per cell, drawn as DEEN's ``process_gallery_llcm`` (and AGW's SYSU gallery) draws it.

    ``random.seed(trial)``; for every key of ``cells`` in sorted order, ``random.choice`` over the
    cell's sorted entries. A private :class:`random.Random` gives the same stream without touching
    the global generator.

    Args:
        cells: {sortable key: list of (sort name, item)}; empty cells are skipped.
        trial: the seed.

    Returns:
        the chosen items, in key order.
    """
    rng = random.Random(trial)
    chosen = []
    for key in sorted(cells):
        entries = sorted(cells[key], key=lambda entry: entry[0])
        if entries:
            chosen.append(rng.choice(entries)[1])
    return chosen


def llcm_trial_galleries(features: FeatureSet, trials: int = TRIALS) -> list[np.ndarray]:
    """Gallery-pool row indices of every trial's single-shot draw (ascending), for an arranged feature set."""
    cells: dict[tuple[str, int], list] = {}
    for row, path in enumerate(features.gallery_paths.tolist()):
        _, camera, pid, name = parse_test_path(path)
        cells.setdefault((f"{pid:04d}", camera), []).append((name, row))
    return [np.array(sorted(seeded_single_shot(cells, trial)), dtype=np.int64) for trial in range(int(trials))]


def same_id_same_camera(query_ids, query_cams, gallery_ids, gallery_cams):
    """(query codes (Q,), gallery codes (G,), junk rule): equal codes <=> same identity and same camera number.

    :func:`~mpanet_tf.eval.metrics.evaluate_ranking` hands the junk rule only the two code arrays,
    so each (identity, camera) pair is coded as one integer.
    """
    pairs = np.concatenate([np.stack([query_ids, query_cams], 1), np.stack([gallery_ids, gallery_cams], 1)])
    _, codes = np.unique(pairs, axis=0, return_inverse=True)
    codes = codes.reshape(-1)
    return codes[:len(query_ids)], codes[len(query_ids):], lambda q, g: q[:, None] == g[None, :]


def evaluate_llcm(features: FeatureSet, options: LLCMProtocolOptions = LLCMProtocolOptions(),
                  compute_dtype=np.float32) -> dict:
    """Evaluate one LLCM mode over ``options.trials`` seeded galleries.

    Args:
        features: the infrared and visible test features (either side may be the query), paths
            relative to the LLCM root.
        options: mode and number of trials.
        compute_dtype: dtype of the normalisation and distance products (float32, as on a GPU).

    Returns:
        a result dict (:mod:`mpanet_tf.eval.report`): ``mode`` = the LLCM mode,
        ``shots=1``, ``sampling="seed"``; R1/R5/R10/R20/mAP/mINP in percent, mean/std over trials.
    """
    arranged = arrange(features, options.mode)
    galleries = llcm_trial_galleries(arranged, options.trials)
    union = np.unique(np.concatenate(galleries))
    distance = normalized_squared_distance(arranged.query_features, arranged.gallery_features[union], compute_dtype)
    per_trial = []
    for trial, rows in enumerate(galleries):
        cols = np.searchsorted(union, rows)
        query_codes, gallery_codes, junk = same_id_same_camera(
            arranged.query_ids, arranged.query_cams, arranged.gallery_ids[rows], arranged.gallery_cams[rows])
        metrics = evaluate_ranking(distance[:, cols], arranged.query_ids, query_codes,
                                   arranged.gallery_ids[rows], gallery_codes, junk=junk)
        per_trial.append({"trial": trial, **metrics.as_dict(), "gallery_size": int(len(rows)),
                          "valid_queries": metrics.num_valid})
    return make_result(per_trial, mode=options.mode, shots=1, sampling="seed")


def evaluate_llcm_settings(features: FeatureSet, modes=tuple(MODES), trials: int = TRIALS,
                           compute_dtype=np.float32) -> list[dict]:
    """One result per mode (``--all-settings``: both directions) on one feature set."""
    return [evaluate_llcm(features, LLCMProtocolOptions(mode, trials), compute_dtype) for mode in modes]


# --------------------------------------------------------------- the registry's protocol
_DIRECTION_NAMES = {"i2v": "infrared->visible", "v2i": "visible->infrared"}


class LLCMProtocol(EvalProtocol):
    """LLCM: near-infrared and visible test images, IR->VIS and VIS->IR, 10 seeded single-shot
    galleries (:func:`evaluate_llcm`)."""

    options_type = LLCMProtocolOptions
    visualize_options = (DIRECTION_OPTION,)
    cli_options = (
        CliOption(("--llcm-mode",), "llcm_mode", "LLCM direction: i2v = near-infrared query, visible gallery; "
                  "v2i = the reverse (--all-settings: both).", default="i2v", choices=tuple(MODES),
                  show_default=True),
    )

    def options_from_cli(self, params: dict) -> LLCMProtocolOptions:
        return LLCMProtocolOptions(mode=params.get("llcm_mode") or "i2v")

    def test_split(self, reader):
        """Every near-infrared and every visible test image (the i2v roles; v2i swaps them)."""
        return reader.test_infrared(), reader.test_visible()

    def settings(self, options: LLCMProtocolOptions, all_settings: bool = False) -> list:
        return list(MODES) if all_settings else [options.mode]

    def score(self, features, options: LLCMProtocolOptions, *, all_settings=False, rerank=False, context=None,
              split=None, source="features") -> list[dict]:
        if rerank:
            raise ConfigError("--rerank is not implemented for the LLCM protocol; drop it")
        return [evaluate_llcm(features, LLCMProtocolOptions(mode, options.trials))
                for mode in self.settings(options, all_settings)]

    def setting_name(self, result: dict) -> str:
        return f"LLCM {_DIRECTION_NAMES.get(result.get('mode'), '?')}"

    def ranked_list_sources(self, reader, options: dict):
        """The whole test set of one direction (``--direction``), L2-normalised (the picture keeps
        every gallery image: a ranked-list junk rule sees cameras only, not identities)."""
        direction = options["direction"]
        check_mode(direction)
        infrared, visible = reader.test_infrared(), reader.test_visible()
        queries, gallery = (infrared, visible) if direction == "i2v" else (visible, infrared)
        return queries, gallery, f"LLCM {_DIRECTION_NAMES[direction]} ({len(gallery)} gallery images)", True, None


LLCM = DatasetSpec(
    name="llcm", title="LLCM", open=LLCMDataset, protocol=LLCMProtocol,
    # No MPANet preset exists for LLCM: the SYSU one (design.md §12: keep 384x128 unless a reason appears).
    preset={"model": {"image_height": 384, "image_width": 128},
            "data": {"data_root": "datasets/LLCM", "batch_ids": 16, "images_per_id": 8},
            "train": {"milestones": [80, 120], "epochs": 140}},
    info_keys=("train_ids", "train_visible", "train_infrared", "test_ids", "test_visible", "test_infrared"),
    synthesize=synthesize_llcm,
)
