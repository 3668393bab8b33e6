"""Search: finding gallery images, the distance (Euclidean of L2-normalised embeddings), ranking a
folder with the query's own file first, bad-image handling, the CLI and the ranked-list picture."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.errors import BadImageError, DatasetError
from tests.export.test_savedmodel import eval_path_embeddings, write_images, write_tiny_run


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from mpanet_tf.runtimes.embedder import Embedder

    root = tmp_path_factory.mktemp("search")
    run, model = write_tiny_run(root / "run", seed=5)
    folder = root / "gallery"
    visible = write_images(folder / "cam1" / "0001", sizes=((96, 48), (80, 40), (64, 32)), seed=6,
                           suffixes=(".jpg", ".png"))
    infrared = write_images(folder / "cam3" / "0002", sizes=((90, 45), (64, 32), (100, 50)), seed=7,
                            suffixes=(".bmp", ".JPEG"))
    (folder / "notes.txt").write_text("not an image")
    embedder = Embedder(model.embed, model.image_size, "keras", run)
    return {"root": root, "run": run, "model": model, "folder": folder,
            "images": sorted(visible + infrared), "embedder": embedder}


def test_find_images_is_recursive_and_filters_suffixes(gallery):
    from mpanet_tf.data.image_files import find_images

    found = find_images(gallery["folder"])
    assert found == gallery["images"]
    assert all(p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"} for p in found)


def test_find_images_refuses_a_missing_or_empty_folder(tmp_path):
    from mpanet_tf.data.image_files import find_images

    with pytest.raises(DatasetError, match="does not exist"):
        find_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no"):
        find_images(tmp_path / "empty")


def test_rank_by_distance_uses_euclidean_distance_of_unit_vectors():
    from mpanet_tf.search import rank_by_distance

    query = np.array([3.0, 4.0])
    gallery = np.array([[0.0, 1.0], [-3.0, -4.0], [6.0, 8.0], [4.0, 3.0]])
    order, distances = rank_by_distance(query, gallery)
    # unit query (0.6, 0.8): to (0, 1) sqrt(0.36 + 0.04); to -q 2; to 2q 0; to (0.8, 0.6) sqrt(0.04 + 0.04)
    assert order.tolist() == [2, 3, 0, 1]
    np.testing.assert_allclose(distances, [0.0, np.sqrt(0.08), np.sqrt(0.4), 2.0], atol=1e-6)


@pytest.mark.parametrize("index", [0, 4])
def test_query_from_the_gallery_ranks_itself_first(gallery, index):
    from mpanet_tf.search import search

    query = gallery["images"][index]
    result = search(gallery["embedder"], query, gallery["folder"], batch_size=4)
    assert result.paths[0] == query
    assert result.distances[0] < 1e-3
    assert sorted(result.paths) == gallery["images"]
    assert np.all(np.diff(result.distances) >= 0)
    # distances against an independent computation on the evaluation path
    features = eval_path_embeddings(gallery["model"], result.paths)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = np.linalg.norm(unit - unit[0], axis=1)
    np.testing.assert_allclose(result.distances, expected, atol=5e-4)


def test_bad_gallery_image_is_named_or_skipped(gallery, tmp_path):
    import shutil

    from mpanet_tf.search import search

    folder = tmp_path / "gallery"
    shutil.copytree(gallery["folder"], folder)
    bad = folder / "cam1" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    query = folder / "cam3" / "0002" / "img_01.JPEG"
    with pytest.raises(BadImageError) as caught:
        search(gallery["embedder"], query, folder)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
    result = search(gallery["embedder"], query, folder, skip_bad_images=True)
    assert result.skipped == [bad]
    assert len(result.paths) == len(gallery["images"]) and result.paths[0] == query


def test_cli_search_prints_the_ranking_and_draws_the_picture(gallery, tmp_path):
    from PIL import Image

    query = gallery["images"][2]
    picture = tmp_path / "ranked.png"
    result = CliRunner().invoke(cli, ["search", "--model", str(gallery["run"]), "--query", str(query),
                                      "--gallery", str(gallery["folder"]), "--top-k", "3",
                                      "--output", str(picture)])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert rows[0][2] == str(query) and float(rows[0][1]) < 1e-3
    distances = [float(r[1]) for r in rows]
    assert distances == sorted(distances)
    with Image.open(picture) as image:
        width, height = image.size
    # query + 3 thumbnails side by side, each at least 32 px wide
    assert width > 4 * 32 and height > 64


def test_cli_search_errors_are_one_line(gallery, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(cli, ["search", "--model", str(gallery["run"]), "--query", str(tmp_path / "q.jpg"),
                                  "--gallery", str(gallery["folder"])])
    assert missing.exit_code == 2
    assert "q.jpg" in missing.output and len(missing.output.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(cli, ["search", "--model", str(gallery["run"]), "--query", str(gallery["images"][0]),
                                "--gallery", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "holds no" in empty.output
    no_model = runner.invoke(cli, ["search", "--model", str(tmp_path / "nomodel"), "--query",
                                   str(gallery["images"][0]), "--gallery", str(gallery["folder"])])
    assert no_model.exit_code == 2 and "nomodel" in no_model.output


def test_ranked_list_picture_frames_matches_green_and_mismatches_red(gallery, tmp_path):
    from PIL import Image

    from mpanet_tf.viz.ranked_list import MATCH_COLOUR, MISMATCH_COLOUR, draw_ranked_list

    images = gallery["images"]
    out = draw_ranked_list(images[0], images[1:3], [0.1, 0.2], tmp_path / "r.png", matches=[True, False],
                           thumb_size=(40, 20))
    with Image.open(out) as picture:
        pixels = np.asarray(picture.convert("RGB"))
    colours = {tuple(c) for c in pixels.reshape(-1, 3)}
    assert MATCH_COLOUR in colours and MISMATCH_COLOUR in colours
    with pytest.raises(Exception, match="as many distances"):
        draw_ranked_list(images[0], images[1:3], [0.1], tmp_path / "bad.png")
