"""visualize curves: history.json -> loss, metric and learning-rate panels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.viz.common import VisualizationError
from mpanet_tf.viz.curves import curves_figure, history_series, read_history
from tests.viz.pictures import png_size

TERMS = ("loss", "id", "cc", "sep", "sid", "kl")


def _epoch(number, evaluated=False):
    entry = {"epoch": number, "global_step": 10 * number, "iterations": 10, "lr": 3.5e-4 if number < 3 else 3.5e-5,
             "ema_rate": 0.2, "seconds": 1.5}
    for offset, key in enumerate(TERMS):
        entry[key] = 10.0 / (number + offset)
    if evaluated:
        entry["eval"] = {"rank1": 20.0 * number, "mAP": 15.0 * number, "mINP": 5.0 * number}
    return entry


@pytest.fixture()
def run_with_history(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    # Written out of order on purpose: the reader sorts by epoch.
    epochs = [_epoch(3, True), _epoch(1), _epoch(2, True), _epoch(4)]
    (run / "history.json").write_text(json.dumps({"epochs": epochs}), encoding="utf-8")
    return run


def test_series_follow_the_history(run_with_history):
    series = history_series(read_history(run_with_history))
    np.testing.assert_array_equal(series["epoch"], [1, 2, 3, 4])
    for offset, key in enumerate(TERMS):
        np.testing.assert_allclose(series[key], [10.0 / (n + offset) for n in (1, 2, 3, 4)])
    np.testing.assert_allclose(series["lr"], [3.5e-4, 3.5e-4, 3.5e-5, 3.5e-5])
    np.testing.assert_array_equal(series["eval_epoch"], [2, 3])
    np.testing.assert_allclose(series["rank1"], [40.0, 60.0])
    np.testing.assert_allclose(series["mAP"], [30.0, 45.0])
    np.testing.assert_allclose(series["mINP"], [10.0, 15.0])


def test_figure_plots_every_loss_term_and_metric(run_with_history):
    figure = curves_figure(history_series(read_history(run_with_history)), 800, 600)
    losses, metrics, rate = figure.axes
    assert len(losses.get_lines()) == len(TERMS)
    np.testing.assert_allclose(losses.get_lines()[3].get_ydata(), [10.0 / (n + 3) for n in (1, 2, 3, 4)])
    assert [line.get_label() for line in metrics.get_lines()] == ["rank1", "mAP", "mINP"]
    np.testing.assert_array_equal(metrics.get_lines()[0].get_xdata(), [2, 3])
    assert len(rate.get_lines()) == 1


def test_missing_terms_are_left_out(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"epochs": [{"epoch": 1, "loss": 3.0, "id": 2.0}, {"epoch": 2, "loss": 2.0}]}))
    series = history_series(read_history(path))
    assert np.isnan(series["id"][1]) and np.isnan(series["kl"]).all()
    figure = curves_figure(series, 640, 480)
    assert len(figure.axes[0].get_lines()) == 2
    assert len(series["eval_epoch"]) == 0


def test_cli_writes_png_of_requested_and_default_size(run_with_history, tmp_path):
    runner = CliRunner()
    out = tmp_path / "curves.png"
    result = runner.invoke(cli, ["visualize", "curves", "--model", str(run_with_history), "--output", str(out),
                                 "--width", "640", "--height", "480"])
    assert result.exit_code == 0, result.output
    assert png_size(out) == (640, 480)
    result = runner.invoke(cli, ["visualize", "curves", "--model", str(run_with_history / "history.json"),
                                 "--output", str(tmp_path / "default.png")])
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "default.png") == (960, 720)


@pytest.mark.parametrize("content", [None, "not json", '{"epochs": 3}', '{"epochs": []}'])
def test_bad_history_is_one_line_exit_2(tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "history.json").write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["visualize", "curves", "--model", str(run), "--output", str(tmp_path / "c.png")])
    assert result.exit_code == 2
    assert "history.json" in result.output and len(result.output.strip().splitlines()) == 1
    with pytest.raises(VisualizationError):
        read_history(run)
