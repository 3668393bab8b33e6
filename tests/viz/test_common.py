"""Exact-size PNG writing, output checks, captions and the missing-dependency message."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.errors import ConfigError, MPANetError
from mpanet_tf.viz import common
from tests.viz.pictures import png_pixels, png_size


@pytest.mark.parametrize("width,height", [(333, 217), (64, 64), (1001, 99)])
def test_save_png_writes_exact_pixel_size(tmp_path, width, height):
    figure = common.new_figure(width, height)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.plot([0, 1], [0, 1])
    path = common.save_png(figure, tmp_path / "sub" / "a.png", width, height)
    assert png_size(path) == (width, height)


def test_save_png_draws_the_figure(tmp_path):
    figure = common.new_figure(100, 80)
    figure.patch.set_facecolor((1.0, 0.0, 0.0))
    path = common.save_png(figure, tmp_path / "red.png", 100, 80)
    pixels = png_pixels(path)
    assert pixels.shape == (80, 100, 3)
    assert np.all(pixels == [255, 0, 0])


@pytest.mark.parametrize("name", ["a.jpg", "a", "a.png.txt"])
def test_output_must_be_png(tmp_path, name):
    with pytest.raises(ConfigError, match=r"\.png"):
        common.check_output(tmp_path / name)


def test_output_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        common.check_output(tmp_path / "x.png")


@pytest.mark.parametrize("width,height", [(10, 100), (100, 9000), (0, 0)])
def test_size_out_of_range_is_refused(width, height):
    with pytest.raises(ConfigError, match="pixels"):
        common.check_size(width, height)


def test_captions_name_camera_and_modality():
    assert common.image_caption(12, 3) == "id 12 | cam3 IR"
    assert common.image_caption(5, 6) == "id 5 | cam6 IR"
    assert common.image_caption(7, 1) == "id 7 | cam1 VIS"
    assert common.image_caption(7, 2) == "id 7 | cam2 VIS"
    assert common.image_caption(-1, -1) == "id ? | cam? ?"


def test_identity_colours_are_distinct():
    for count in (3, 10, 15, 30):
        colours = common.identity_colours(count)
        assert len(set(tuple(np.round(c, 6)) for c in colours)) == count


def test_missing_matplotlib_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(common.MissingDependencyError, match=r"mpanet-tf\[viz\]") as info:
        common.require_matplotlib()
    assert isinstance(info.value, MPANetError)
    assert "\n" not in str(info.value)


def test_missing_sklearn_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(common.MissingDependencyError, match="scikit-learn"):
        common.require_sklearn_tsne()


def test_cli_reports_missing_matplotlib_in_one_line_exit_2(monkeypatch, tmp_path):
    history = tmp_path / "history.json"
    history.write_text('{"epochs": [{"epoch": 1, "loss": 1.0}]}', encoding="utf-8")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = CliRunner().invoke(cli, ["visualize", "curves", "--model", str(history),
                                      "--output", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "matplotlib" in lines[0] and "pip install" in lines[0]
    assert not (tmp_path / "c.png").exists()
