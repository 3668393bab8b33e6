"""visualize patterns: PAM maps of one image as heat-map panels (paper Fig. 3)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.data.images import load_image
from mpanet_tf.errors import CheckpointError, ConfigError
from mpanet_tf.viz.patterns import heat_values, overlay_heat, pattern_maps, pattern_overlays, upsample_map
from tests.viz.conftest import IMAGE_SIZE
from tests.viz.pictures import png_pixels, png_size


@pytest.fixture(scope="module")
def sample_image(sysu_tree):
    return sorted((sysu_tree / "cam1").rglob("*.jpg"))[0]


def test_pattern_maps_shape_and_range(tiny_model, sample_image):
    masks = pattern_maps(tiny_model, load_image(sample_image, IMAGE_SIZE))
    # Output stride 16 with last stride 1 (design.md §1.1), p = 6 maps (design.md §1.3).
    assert masks.shape == (IMAGE_SIZE[0] // 16, IMAGE_SIZE[1] // 16, 6)
    assert np.all((masks >= 0) & (masks <= 1))


def test_upsample_keeps_cell_centres():
    pattern = np.arange(6, dtype=np.float32).reshape(3, 2) / 5.0
    up = upsample_map(pattern, (15, 10))
    assert up.shape == (15, 10)
    for i in range(3):
        for j in range(2):   # output pixel 5i+2 has its centre on source cell i's centre
            assert up[5 * i + 2, 5 * j + 2] == pytest.approx(pattern[i, j], abs=1e-5)


def test_heat_scales():
    pattern = np.array([[0.2, 0.3], [0.4, 0.6]], np.float32)
    np.testing.assert_allclose(heat_values(pattern, "per-map"), [[0.0, 0.25], [0.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(heat_values(pattern, "shared"), pattern)
    np.testing.assert_allclose(heat_values(np.full((2, 2), 0.7, np.float32), "per-map"), 0.7)
    with pytest.raises(ConfigError):
        heat_values(pattern, "log")


def test_overlay_blends_jet_colours():
    image = np.full((2, 2, 3), 100, np.uint8)
    heat = np.array([[0.0, 0.0], [1.0, 1.0]], np.float32)
    out = overlay_heat(image, heat, alpha=0.5)
    # jet(0) = (0, 0, 0.5) dark blue, jet(1) = (0.5, 0, 0) dark red.
    np.testing.assert_allclose(out[0, 0], [50, 50, 50 + 63.75], atol=1)
    np.testing.assert_allclose(out[1, 1], [50 + 63.75, 50, 50], atol=1)


def test_pattern_panels_differ(tiny_model, sample_image):
    pixels = load_image(sample_image, IMAGE_SIZE)
    masks = pattern_maps(tiny_model, pixels)
    overlays = pattern_overlays(pixels.astype(np.uint8), masks)
    assert len(overlays) == 6
    for a in range(6):
        for b in range(a + 1, 6):
            assert np.abs(overlays[a].astype(int) - overlays[b].astype(int)).mean() > 1.0, (a, b)


def test_model_without_pam_is_refused():
    class GlobalOnly:   # what MPANet.forward returns with use_pam false
        def forward(self, images, training=False):
            return {"masks": None}

    with pytest.raises(CheckpointError, match="PAM"):
        pattern_maps(GlobalOnly(), np.zeros((*IMAGE_SIZE, 3), np.float32))


def test_cli_writes_seven_distinct_panels(tiny_run, sample_image, tmp_path):
    out = tmp_path / "patterns.png"
    result = CliRunner().invoke(cli, ["visualize", "patterns", "--model", str(tiny_run), "--image", str(sample_image),
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    width, height = png_size(out)
    panel_height = 120 * IMAGE_SIZE[0] // IMAGE_SIZE[1]          # 120-px panels at the image's aspect
    assert (width, height) == (7 * 120, panel_height + 44 + 30)
    pixels = png_pixels(out).astype(int)
    band = pixels[int(0.35 * height):int(0.65 * height)]         # inside the images, away from captions
    strips = [band[:, k * 120 + 20:(k + 1) * 120 - 20] for k in range(7)]
    for a in range(1, 7):
        assert np.abs(strips[a] - strips[0]).mean() > 1.0        # every map panel differs from the image
        for b in range(a + 1, 7):
            assert np.abs(strips[a] - strips[b]).mean() > 1.0, (a, b)


def test_cli_size_options_and_missing_image(tiny_run, sample_image, tmp_path):
    runner = CliRunner()
    out = tmp_path / "p.png"
    result = runner.invoke(cli, ["visualize", "patterns", "--model", str(tiny_run), "--image", str(sample_image),
                                 "--output", str(out), "--width", "700", "--height", "300", "--scale", "shared"])
    assert result.exit_code == 0, result.output
    assert png_size(out) == (700, 300)
    result = runner.invoke(cli, ["visualize", "patterns", "--model", str(tiny_run), "--image",
                                 str(tmp_path / "none.jpg"), "--output", str(tmp_path / "q.png")])
    assert result.exit_code == 2 and "none.jpg" in result.output
