"""visualize tsne: the identities and modalities chosen are the ones plotted (paper Fig. 4)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.markers import MarkerStyle

from mpanet_tf.cli.main import cli
from mpanet_tf.data.records import make_record
from mpanet_tf.data.registry import get_dataset
from mpanet_tf.viz.common import VisualizationError
from mpanet_tf.viz.tsne import (
    INFRARED_MARKER, VISIBLE_MARKER, evaluation_records, select_records, tsne_figure, tsne_points, visualize_tsne,
)
from tests.viz.pictures import png_size


def _records(tmp_path):
    """ids 1..4 with 5 visible and 3 infrared images each; id 5 visible only."""
    records = []
    for pid in range(1, 6):
        for n in range(5):
            records.append(make_record(tmp_path, f"cam1/{pid:04d}/{n:04d}.jpg", pid, 1))
        if pid < 5:
            for n in range(3):
                records.append(make_record(tmp_path, f"cam3/{pid:04d}/{n:04d}.jpg", pid, 3))
    return records


def test_select_records_takes_whole_identities_of_both_modalities(tmp_path):
    picked = select_records(_records(tmp_path), ids=3, per_modality=2, seed=0)
    ids = sorted({r.person_id for r in picked})
    assert len(ids) == 3 and 5 not in ids          # id 5 has no infrared image
    for pid in ids:
        assert sum(r.person_id == pid and not r.infrared for r in picked) == 2
        assert sum(r.person_id == pid and r.infrared for r in picked) == 2
    assert select_records(_records(tmp_path), ids=3, seed=0) == select_records(_records(tmp_path), ids=3, seed=0)


def test_select_records_named_ids_and_errors(tmp_path):
    picked = select_records(_records(tmp_path), person_ids=[4, 2], per_modality=10)
    assert sorted({r.person_id for r in picked}) == [2, 4]
    assert len(picked) == 2 * (5 + 3)
    with pytest.raises(VisualizationError, match="identity 5"):
        select_records(_records(tmp_path), person_ids=[1, 5])
    with pytest.raises(VisualizationError, match="at least 2"):
        select_records(_records(tmp_path)[:8], ids=4)


def test_tsne_points_clip_perplexity_for_few_images():
    features = np.random.default_rng(0).normal(size=(6, 16))
    points = tsne_points(features, perplexity=30.0, seed=0)   # sklearn refuses perplexity >= n
    assert points.shape == (6, 2) and np.isfinite(points).all()


def test_tsne_separates_two_clear_clusters():
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:2] * 10
    features = np.concatenate([centres[0] + rng.normal(0, 0.1, (10, 8)), centres[1] + rng.normal(0, 0.1, (10, 8))])
    points = tsne_points(features, perplexity=5, seed=0)
    a, b = points[:10], points[10:]
    within = max(np.ptp(a, axis=0).max(), np.ptp(b, axis=0).max())
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > within


def test_figure_has_one_colour_per_identity_and_a_marker_per_modality():
    rng = np.random.default_rng(0)
    ids = np.array([7, 7, 7, 9, 9, 3, 3, 3])
    infrared = np.array([0, 1, 1, 0, 1, 0, 0, 1], bool)
    points = rng.normal(size=(8, 2))
    figure = tsne_figure(points, ids, infrared, 600, 500)
    collections = figure.axes[0].collections
    assert [c.get_label() for c in collections] == ["id 3 VIS", "id 3 IR", "id 7 VIS", "id 7 IR", "id 9 VIS", "id 9 IR"]
    colours = {}
    for collection in collections:
        pid, modality = int(collection.get_label().split()[1]), collection.get_label().split()[2]
        where = (ids == pid) & (infrared == (modality == "IR"))
        np.testing.assert_allclose(collection.get_offsets(), points[where])
        style = MarkerStyle(INFRARED_MARKER if modality == "IR" else VISIBLE_MARKER)
        expected = style.get_path().transformed(style.get_transform())
        np.testing.assert_allclose(collection.get_paths()[0].vertices, expected.vertices)
        colours.setdefault(pid, set()).add(tuple(np.round(collection.get_facecolor()[0], 6)))
    assert all(len(c) == 1 for c in colours.values())           # both modalities of an id share a colour
    assert len({next(iter(c)) for c in colours.values()}) == 3  # different ids, different colours


def test_visualize_tsne_uses_the_given_identities(tiny_model, sysu_tree, tmp_path):
    records = evaluation_records(get_dataset("sysu"), sysu_tree)
    eligible = sorted({r.person_id for r in records if r.infrared} & {r.person_id for r in records if not r.infrared})
    chosen = eligible[:2]
    result = visualize_tsne(tiny_model, get_dataset("sysu"), sysu_tree, tmp_path / "t.png", person_ids=chosen, per_modality=3,
                            width=400, height=300)
    assert png_size(tmp_path / "t.png") == (400, 300)
    assert sorted(set(result["person_ids"].tolist())) == chosen
    assert result["points"].shape == (len(result["records"]), 2)
    for pid in chosen:
        for infrared in (False, True):
            count = sum(1 for r in records if r.person_id == pid and r.infrared == infrared)
            assert np.sum((result["person_ids"] == pid) & (result["infrared"] == infrared)) == min(3, count)
    np.testing.assert_array_equal(result["infrared"], [r.camera in (3, 6) for r in result["records"]])


def test_cli_regdb_default_size(tiny_run, regdb_tree, tmp_path):
    out = tmp_path / "tsne.png"
    result = CliRunner().invoke(cli, ["visualize", "tsne", "--model", str(tiny_run), "--dataset", "regdb",
                                      "--data-root", str(regdb_tree), "--ids", "3", "--per-id", "2",
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 identities, 12 images" in result.output
    assert png_size(out) == (720, 640)
