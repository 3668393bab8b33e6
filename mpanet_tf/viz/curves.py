"""Training curves of a run: every loss term, the evaluation metrics and the learning rate per epoch.

Reads ``runs/NAME/history.json`` (:mod:`mpanet_tf.run_folder`), whose structure is::

    {"epochs": [{"epoch": 1, "global_step": N, "iterations": n, "lr": float, "ema_rate": float,
                 "loss": float, "id": float, "cc": float, "sep": float, "sid": float, "kl": float,
                 "seconds": float, "eval": {"rank1": .., "mAP": .., "mINP": ..}}, ...]}

``eval`` is present only on epochs that evaluated. The picture has three panels: the loss terms
(the weighted total ``loss`` and the unweighted terms L_id, L_cc, L_sep, L_sid = CE_vis + CE_ir and
L_KL of design.md §2; log scale when every value is positive), the evaluation metrics in percent at the
evaluated epochs, and the learning rate.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mpanet_tf.loss_terms import LOSS_TERMS as LOGGED_TERMS
from mpanet_tf.loss_terms import TOTAL_LABEL, TOTAL_LOSS
from mpanet_tf.run_folder import HISTORY_FILE
from mpanet_tf.viz.common import VisualizationError, check_output, check_size, new_figure, save_png

#: Loss keys of a history epoch, with their legend labels (design.md §2; :mod:`mpanet_tf.loss_terms`).
LOSS_TERMS = ((TOTAL_LOSS, TOTAL_LABEL), *LOGGED_TERMS.items())
#: Evaluation keys of a history epoch's ``eval`` entry (percent).
METRICS = ("rank1", "mAP", "mINP")
DEFAULT_SIZE = (960, 720)
_FIX = "pass a run folder written by `mpanet-tf train` (it holds history.json) or the history.json file itself"


def history_path(run) -> Path:
    """``run/history.json`` for a run folder, or ``run`` itself when it is a ``.json`` file."""
    path = Path(run).expanduser()
    if path.is_dir():
        path = path / HISTORY_FILE
    if not path.is_file():
        raise VisualizationError(f"training history {path} does not exist; {_FIX}")
    return path


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def read_history(run) -> list[dict]:
    """The ``epochs`` list of a run's history, sorted by epoch.

    Raises:
        VisualizationError: missing or unreadable file, or no ``epochs`` list of objects with ``epoch``.
    """
    path = history_path(run)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VisualizationError(f"training history {path} is not readable JSON ({type(error).__name__}); {_FIX}") from None
    epochs = data.get("epochs") if isinstance(data, dict) else None
    if not isinstance(epochs, list) or not all(isinstance(e, dict) and "epoch" in e for e in epochs):
        raise VisualizationError(f"training history {path} has no 'epochs' list of per-epoch entries; {_FIX}")
    epochs = [e for e in epochs if math.isfinite(_number(e["epoch"]))]   # entries without an epoch number
    if not epochs:
        raise VisualizationError(f"training history {path} holds no epoch yet; plot it after the first epoch ends")
    return sorted(epochs, key=lambda e: _number(e["epoch"]))


def history_series(epochs: list[dict]) -> dict[str, np.ndarray]:
    """Arrays to plot from the epoch entries.

    Returns:
        ``epoch`` (E,), one (E,) array per loss key of :data:`LOSS_TERMS` and ``lr`` (NaN where an
        epoch lacks the key), ``eval_epoch`` (V,) the epochs with an ``eval`` entry, and one (V,)
        array per metric of :data:`METRICS` (NaN where missing).
    """
    series = {"epoch": np.array([_number(e["epoch"]) for e in epochs], dtype=np.float64)}
    for key in [k for k, _ in LOSS_TERMS] + ["lr"]:
        series[key] = np.array([_number(e.get(key)) for e in epochs], dtype=np.float64)
    evaluated = [e for e in epochs if isinstance(e.get("eval"), dict)]
    series["eval_epoch"] = np.array([_number(e["epoch"]) for e in evaluated], dtype=np.float64)
    for key in METRICS:
        series[key] = np.array([_number(e["eval"].get(key)) for e in evaluated], dtype=np.float64)
    return series


def _style(axes, xlabel: str = "epoch"):
    axes.grid(True, alpha=0.3)
    axes.set_xlabel(xlabel, fontsize=8)
    axes.tick_params(labelsize=7)


def curves_figure(series: dict[str, np.ndarray], width: int, height: int, title: str = ""):
    """The three-panel figure (losses, evaluation metrics, learning rate) of :func:`history_series`."""
    figure = new_figure(width, height)
    grid = figure.add_gridspec(2, 2, height_ratios=(3, 2), left=0.08, right=0.98, bottom=0.08,
                               top=0.90 if title else 0.95, hspace=0.35, wspace=0.22)
    if title:
        figure.suptitle(title, fontsize=10)
    epochs = series["epoch"]

    losses = figure.add_subplot(grid[0, :])
    plotted = []
    for key, label in LOSS_TERMS:
        values = series[key]
        if np.isfinite(values).any():
            losses.plot(epochs, values, marker="o" if len(epochs) < 30 else None, markersize=3,
                        linewidth=2.2 if key == "loss" else 1.3, label=label)
            plotted.append(values[np.isfinite(values)])
    if plotted and all((v > 0).all() for v in plotted):
        losses.set_yscale("log")
    losses.set_title("loss terms per epoch (mean over the epoch's steps)", fontsize=9)
    if plotted:
        losses.legend(fontsize=7, ncol=3, loc="best", framealpha=0.8)
    _style(losses)

    metrics = figure.add_subplot(grid[1, 0])
    measured = [key for key in METRICS if len(series["eval_epoch"]) and np.isfinite(series[key]).any()]
    if measured:
        for key in measured:
            metrics.plot(series["eval_epoch"], series[key], marker="s", markersize=4, label=key)
        metrics.legend(fontsize=7, loc="lower right")
        metrics.set_ylabel("%", fontsize=8)
    else:
        metrics.text(0.5, 0.5, "no evaluation in this run yet", ha="center", va="center",
                     transform=metrics.transAxes, fontsize=8, color="#666666")
    metrics.set_xlim(float(np.nanmin(epochs)) - 0.5, float(np.nanmax(epochs)) + 0.5)
    metrics.set_title("evaluation (rank-1, mAP, mINP)", fontsize=9)
    _style(metrics)

    rate = figure.add_subplot(grid[1, 1])
    if np.isfinite(series["lr"]).any():
        rate.plot(epochs, series["lr"], color="#444444", drawstyle="steps-post")
        if (series["lr"][np.isfinite(series["lr"])] > 0).all():
            rate.set_yscale("log")
    rate.set_title("learning rate", fontsize=9)
    _style(rate)
    return figure


def visualize_curves(run, output, width: int | None = None, height: int | None = None) -> Path:
    """``mpanet-tf visualize curves``: plot a run's history.json to ``output`` (PNG).

    Args:
        run: a run folder or its ``history.json``.
        output: ``.png`` path.
        width, height: picture size in pixels (default 960 x 720).
    """
    output = check_output(output)
    width, height = check_size(width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1])
    path = history_path(run)
    series = history_series(read_history(path))
    name = path.parent.name if path.name == "history.json" else path.stem
    last = series["epoch"][-1]
    title = f"training curves of {name} ({len(series['epoch'])} epochs, last {last:g})"
    return save_png(curves_figure(series, width, height, title), output, width, height)
