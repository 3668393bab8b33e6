"""visualize ranks: rankings follow the protocols; borders tell right from wrong identities."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.data.records import make_record
from mpanet_tf.data.registry import get_dataset
from mpanet_tf.data.sysu import load_rand_perm_cam
from mpanet_tf.eval.metrics import same_location_junk
from mpanet_tf.viz.common import QUERY_COLOUR, RIGHT_COLOUR, UNKNOWN_COLOUR, WRONG_COLOUR
from mpanet_tf.viz.ranks import (
    RankedRow, draw_ranks, folder_record, grid_layout, pick_queries, rank_queries, visualize_ranks,
)
from tests.viz.conftest import IMAGE_SIZE
from tests.viz.pictures import png_pixels, png_size


def _rgb(hex_colour):
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_rank_queries_sorts_by_distance_and_applies_the_camera_rule(tmp_path):
    query = [make_record(tmp_path, "cam3/0001/0001.jpg", 1, 3), make_record(tmp_path, "cam6/0002/0001.jpg", 2, 6)]
    gallery = [make_record(tmp_path, f"cam{c}/{p:04d}/0001.jpg", p, c) for p, c in ((1, 2), (1, 1), (2, 4), (3, 5))]
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[1.0, 0.1], [0.8, 0.6], [0.1, 1.0], [0.6, 0.8]])
    rows = rank_queries(q, g, query, gallery, top_k=3, normalize=True, junk=same_location_junk)
    qn, gn = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    dist = ((qn[:, None] - gn[None]) ** 2).sum(-1)
    # Query 0 is cam 3: the cam-2 image (gallery 0, its nearest) is dropped by the same-location rule.
    expected0 = [i for i in np.argsort(dist[0]) if i != 0][:3]
    expected1 = list(np.argsort(dist[1])[:3])
    assert [gallery.index(r) for r in rows[0].gallery] == expected0
    assert [gallery.index(r) for r in rows[1].gallery] == expected1
    np.testing.assert_allclose(rows[1].distances, dist[1, expected1], rtol=1e-5)
    assert rows[0].correct == [gallery[i].person_id == 1 for i in expected0]
    assert rows[1].correct == [gallery[i].person_id == 2 for i in expected1]


def test_rank_queries_without_normalisation_uses_raw_distances(tmp_path):
    query = [make_record(tmp_path, "Thermal/1/a.bmp", 1, 3)]
    gallery = [make_record(tmp_path, f"Visible/{p}/a.bmp", p, 2) for p in (1, 2)]
    # Same direction, different length: raw Euclidean prefers gallery 1, cosine would tie.
    rows = rank_queries(np.array([[1.0, 0.0]]), np.array([[10.0, 0.0], [1.0, 0.5]]), query, gallery, 2, False)
    assert [r.person_id for r in rows[0].gallery] == [2, 1]
    np.testing.assert_allclose(rows[0].distances, [0.25, 81.0])


def test_pick_queries():
    np.testing.assert_array_equal(pick_queries(3, 9), [0, 4, 8])
    np.testing.assert_array_equal(pick_queries(20, 4), [0, 1, 2, 3])
    picked = pick_queries(3, 50, seed=1)
    assert len(set(picked.tolist())) == 3 and picked.max() < 50


def test_folder_record_reads_dataset_layouts(tmp_path):
    assert (lambda r: (r.person_id, r.camera, r.infrared))(folder_record(tmp_path, tmp_path / "cam3/0012/x.jpg")) \
        == (12, 3, True)
    assert (lambda r: (r.person_id, r.camera))(folder_record(tmp_path, tmp_path / "a/Thermal/7/x.bmp")) == (7, 3)
    assert (lambda r: (r.person_id, r.camera))(folder_record(tmp_path, tmp_path / "Visible/7/x.bmp")) == (7, 2)
    assert (lambda r: (r.person_id, r.camera))(folder_record(tmp_path, tmp_path / "x.jpg")) == (-1, -1)


def test_borders_are_green_for_right_and_red_for_wrong(sysu_tree, tmp_path):
    images = sorted(sysu_tree.rglob("*.jpg"))[:4]
    record = lambda path, pid: make_record(sysu_tree, path.relative_to(sysu_tree).as_posix(), pid, 1)  # noqa: E731
    rows = [RankedRow(record(images[0], 1), [record(images[1], 1), record(images[2], 2), record(images[3], -1)],
                      np.array([0.1, 0.2, 0.3]), [True, False, None]),
            RankedRow(record(images[1], 2), [record(images[0], 1), record(images[2], 2), record(images[3], 2)],
                      np.array([0.1, 0.2, 0.3]), [False, True, True])]
    out = draw_ranks(rows, tmp_path / "ranks.png", IMAGE_SIZE, width=500, height=420)
    assert png_size(out) == (500, 420)
    pixels = png_pixels(out).astype(int)
    boxes = grid_layout(2, 4, 500, 420)
    expected = [[QUERY_COLOUR, RIGHT_COLOUR, WRONG_COLOUR, UNKNOWN_COLOUR],
                [QUERY_COLOUR, WRONG_COLOUR, RIGHT_COLOUR, RIGHT_COLOUR]]
    for r in range(2):
        for c in range(4):
            left, top, right, bottom = boxes[r][c]
            middle = (top + bottom) // 2
            for x in (left + 1, right - 2):     # inside the left and right frame lines of the cell
                assert np.abs(pixels[middle, x] - _rgb(expected[r][c])).max() <= 3, (r, c, x, pixels[middle, x])
            # ... and the image inside the frame is not the frame colour
            assert np.abs(pixels[top + 8:bottom - 8, left + 8:right - 8] - _rgb(expected[r][c])).mean() > 20


def test_sysu_uses_the_official_trial_one_gallery(tiny_model, sysu_tree, tmp_path):
    rows = visualize_ranks(tiny_model, tmp_path / "r.png", dataset=get_dataset("sysu"), data_root=sysu_tree,
                           queries=3, top_k=100)
    perm = load_rand_perm_cam(sysu_tree / "exp" / "rand_perm_cam.mat")
    test_ids = [int(t) for t in (sysu_tree / "exp" / "test_id.txt").read_text().strip().split(",")]
    official = {f"cam{c}/{p:04d}/{int(perm[(c, p)][0, 0]):04d}.jpg"
                for c in (1, 2, 4, 5) for p in test_ids if (c, p) in perm}
    assert len(rows) == 3
    for row in rows:
        assert row.query.infrared and row.query.person_id in test_ids
        shown = {r.relpath for r in row.gallery}
        # The whole list: the official gallery minus, for a cam-3 query, the cam-2 images.
        expected = {k for k in official if not (row.query.camera == 3 and k.startswith("cam2/"))}
        assert shown == expected
        assert list(row.distances) == sorted(row.distances)
        assert row.correct == [r.person_id == row.query.person_id for r in row.gallery]


def test_regdb_directions(tiny_model, regdb_tree, tmp_path):
    regdb = get_dataset("regdb")
    rows = visualize_ranks(tiny_model, tmp_path / "i2v.png", dataset=regdb, data_root=regdb_tree, queries=2,
                           top_k=3, trial=2)
    assert all(r.query.camera == 3 and all(g.camera == 2 for g in r.gallery) for r in rows)
    rows = visualize_ranks(tiny_model, tmp_path / "v2i.png", dataset=regdb, data_root=regdb_tree, queries=2,
                           top_k=3, trial=2, dataset_options={"direction": "v2i"})
    assert all(r.query.camera == 2 and all(g.camera == 3 for g in r.gallery) for r in rows)
    assert all(len(r.gallery) == 3 for r in rows)


def test_cli_sysu_png_size(tiny_run, sysu_tree, tmp_path):
    runner = CliRunner()
    out = tmp_path / "ranks.png"
    result = runner.invoke(cli, ["visualize", "ranks", "--model", str(tiny_run), "--dataset", "sysu",
                                 "--data-root", str(sysu_tree), "--queries", "2", "--top-k", "5",
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    # Default: 6 cells of 96 px + 16 px gap + 8 px margin; rows of 96 * (64 / 32) px images + 30 px captions.
    assert png_size(out) == (6 * 96 + 16 + 8, 28 + 2 * (192 + 30) + 4)


def test_cli_folders(tiny_run, sysu_tree, tmp_path):
    for side, cams in (("query", (3,)), ("gallery", (1, 4))):
        for cam in cams:
            for src in sorted((sysu_tree / f"cam{cam}").rglob("*.jpg"))[:4]:
                target = tmp_path / side / f"cam{cam}" / src.parent.name / src.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target)
    out = tmp_path / "folders.png"
    result = CliRunner().invoke(cli, ["visualize", "ranks", "--model", str(tiny_run), "--query-folder",
                                      str(tmp_path / "query"), "--gallery", str(tmp_path / "gallery"),
                                      "--queries", "2", "--top-k", "3", "--output", str(out),
                                      "--width", "420", "--height", "380"])
    assert result.exit_code == 0, result.output
    assert png_size(out) == (420, 380)


@pytest.mark.parametrize("args", [
    [],                                                       # neither a dataset nor folders
    ["--dataset", "sysu", "--data-root", "X", "--query-folder", "Y", "--gallery", "Z"],
    ["--query-folder", "Y"],
    ["--dataset", "sysu", "--data-root", "X", "--top-k", "0"],
])
def test_cli_bad_sources_exit_2(tmp_path, args):
    result = CliRunner().invoke(cli, ["visualize", "ranks", "--model", str(tmp_path), "--output",
                                      str(tmp_path / "r.png"), *args])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1


def test_cli_missing_model_exit_2(sysu_tree, tmp_path):
    result = CliRunner().invoke(cli, ["visualize", "ranks", "--model", str(tmp_path / "no-run"), "--dataset", "sysu",
                                      "--data-root", str(sysu_tree), "--output", str(tmp_path / "r.png")])
    assert result.exit_code == 2 and "no-run" in result.output
    assert len(result.output.strip().splitlines()) == 1
