"""How the two modalities mix in feature space: a t-SNE of M test identities (paper Fig. 4).

The features of the chosen identities' test images (SYSU-MM01: infrared queries and the visible
gallery pool; RegDB: thermal and visible test images of one trial) are the test-time embeddings
(BN-neck output, design.md §1.5), L2-normalised (the SYSU evaluator's geometry, design.md §5.1) and
projected to 2-D with ``sklearn.manifold.TSNE`` (PCA initialisation, perplexity clipped to n - 1,
as scikit-learn requires perplexity < n). One colour per identity, circles for visible and
triangles for infrared images. A model that aligns the modalities puts each identity's circles and
triangles in one cluster.
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.features import extract_features
from mpanet_tf.eval.metrics import l2_normalize
from mpanet_tf.viz.common import (
    VisualizationError, check_output, check_size, identity_colours, new_figure, open_embedding, require_sklearn_tsne,
    save_png,
)

DEFAULT_SIZE = (720, 640)
VISIBLE_MARKER = "o"
INFRARED_MARKER = "^"


def evaluation_records(dataset, data_root, trial: int = 1) -> list:
    """Every test image of a dataset (both modalities) as :class:`~mpanet_tf.data.records.ImageRecord`:
    the query and gallery records of its protocol's test split.

    Args:
        dataset: the dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`.
        trial: its split (datasets with :attr:`~mpanet_tf.data.registry.DatasetSpec.splits`).
    """
    query, gallery = dataset.get_protocol().test_split(dataset.load(data_root, trial=dataset.check_split(trial)))
    return query + gallery


def select_records(records, ids: int = 8, per_modality: int = 10, seed: int = 0, person_ids=None) -> list:
    """The records of M identities, at most ``per_modality`` images of each modality per identity.

    Only identities with images of both modalities are eligible. ``person_ids`` names them; else
    ``ids`` of them are drawn at random with ``seed`` (all of them when there are fewer). Within an
    identity and modality, images are taken evenly spaced in path order.

    Raises:
        VisualizationError: fewer than 2 eligible identities, or a named identity is not eligible.
    """
    by_key: dict[tuple[int, bool], list] = {}
    for record in sorted(records, key=lambda r: r.relpath):
        by_key.setdefault((record.person_id, bool(record.infrared)), []).append(record)
    eligible = sorted({pid for pid, infrared in by_key if infrared and (pid, False) in by_key})
    if person_ids:
        missing = [int(p) for p in person_ids if int(p) not in eligible]
        if missing:
            raise VisualizationError(f"identity {missing[0]} has no test images of both modalities; choose among "
                                     f"{', '.join(map(str, eligible[:20]))}{' ...' if len(eligible) > 20 else ''}")
        chosen = sorted({int(p) for p in person_ids})
    else:
        if int(ids) < 2:
            raise ConfigError(f"--ids must be >= 2 to compare identities, got {ids}")
        rng = np.random.default_rng(seed)
        chosen = sorted(int(p) for p in rng.choice(eligible, size=min(int(ids), len(eligible)), replace=False)) \
            if eligible else []
    if len(chosen) < 2:
        raise VisualizationError(f"only {len(chosen)} test identities have images of both modalities; "
                                 "the t-SNE needs at least 2")
    if int(per_modality) < 1:
        raise ConfigError(f"--per-id must be >= 1, got {per_modality}")
    picked = []
    for pid in chosen:
        for infrared in (False, True):
            group = by_key[(pid, infrared)]
            take = np.unique(np.linspace(0, len(group) - 1, min(int(per_modality), len(group))).round().astype(int))
            picked.extend(group[i] for i in take)
    return picked


def tsne_points(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of L2-normalised features: (N, D) -> (N, 2) float64 (perplexity clipped to N - 1)."""
    TSNE = require_sklearn_tsne()
    features = l2_normalize(features)
    count = len(features)
    if count < 3:
        raise VisualizationError(f"t-SNE needs at least 3 images, got {count}; pass more --ids or --per-id")
    tsne = TSNE(n_components=2, perplexity=float(min(perplexity, count - 1)), init="pca",
                random_state=int(seed), metric="euclidean")
    return np.asarray(tsne.fit_transform(features.astype(np.float64)), dtype=np.float64)


def tsne_figure(points, person_ids, infrared, width: int, height: int, title: str = ""):
    """Scatter figure: one colour per identity (sorted ids), circle = visible, triangle = infrared.

    Each (identity, modality) is one scatter collection, drawn identities first in sorted order,
    visible before infrared, labelled ``"id <pid> VIS"`` / ``"id <pid> IR"``.
    """
    points = np.asarray(points, dtype=np.float64)
    person_ids = np.asarray(person_ids, dtype=np.int64)
    infrared = np.asarray(infrared, dtype=bool)
    figure = new_figure(width, height)
    axes = figure.add_axes((0.06, 0.06, 0.70, 0.86 if title else 0.90))
    if title:
        figure.text(0.5, 1 - 6 / height, title, ha="center", va="top", fontsize=9)
    identities = np.unique(person_ids)
    colours = identity_colours(len(identities))
    for colour, pid in zip(colours, identities):
        for is_ir, marker, name in ((False, VISIBLE_MARKER, "VIS"), (True, INFRARED_MARKER, "IR")):
            where = (person_ids == pid) & (infrared == is_ir)
            if where.any():
                axes.scatter(points[where, 0], points[where, 1], s=34, marker=marker, color=colour,
                             edgecolors="black", linewidths=0.4, label=f"id {pid} {name}")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title("circles: visible, triangles: infrared; one colour per identity", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linestyle="", marker="s", markersize=7, color=c, label=f"id {pid}")
               for c, pid in zip(colours, identities)][:24]
    handles += [Line2D([], [], linestyle="", marker=VISIBLE_MARKER, color="#555555", label="visible"),
                Line2D([], [], linestyle="", marker=INFRARED_MARKER, color="#555555", label="infrared")]
    figure.legend(handles=handles, loc="center left", bbox_to_anchor=(0.78, 0.5), fontsize=7, frameon=False)
    return figure


def visualize_tsne(model, dataset, data_root, output, ids: int = 8, per_modality: int = 10,
                   person_ids=None, trial: int = 1, perplexity: float = 30.0, seed: int = 0,
                   width: int | None = None, height: int | None = None, batch_size: int = 64,
                   progress: bool = False) -> dict:
    """``mpanet-tf visualize tsne``: embed M identities' test images and draw their t-SNE.

    Args:
        model: a loaded model or embedder, or a run folder / ``.keras`` / SavedModel / ``.onnx`` path
            (:func:`~mpanet_tf.viz.common.open_embedding`).
        dataset, data_root: a dataset's :class:`~mpanet_tf.data.registry.DatasetSpec` and its folder
            (``trial``: its split, for datasets that ship several).
        output: ``.png`` path.
        ids, per_modality, person_ids, seed: which images (:func:`select_records`).
        perplexity: t-SNE perplexity (clipped to n - 1).
        width, height: picture size in pixels (default 720 x 640).

    Returns:
        ``{"points": (N, 2), "person_ids": (N,), "infrared": (N,), "records": [...]}``.
    """
    output = check_output(output)
    width, height = check_size(width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1])
    require_sklearn_tsne()
    records = select_records(evaluation_records(dataset, data_root, trial), ids, per_modality, seed, person_ids)
    embed_fn, size = open_embedding(model)

    features = extract_features(embed_fn, records, size, batch_size, progress)
    points = tsne_points(features, perplexity, seed)
    person = np.array([r.person_id for r in records], dtype=np.int64)
    infrared = np.array([r.infrared for r in records], dtype=bool)
    name = f"{dataset.title} trial {trial}" if dataset.splits else dataset.title
    title = f"t-SNE of {len(np.unique(person))} {name} test identities ({len(records)} images)"
    save_png(tsne_figure(points, person, infrared, width, height, title), output, width, height)
    return {"points": points, "person_ids": person, "infrared": infrared, "records": records}
