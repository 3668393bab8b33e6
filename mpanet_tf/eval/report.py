"""Evaluation result dicts, their aggregation over trials and seeds, and the results table.

A result is a JSON-ready dict::

    {"dataset": "sysu", "setting": "SYSU all-search single-shot", <the protocol's setting keys,
     e.g. "mode": "all", "shots": 1, "sampling": "official", "rerank": false>,
     "trials": T, "rank1": .., "rank5": .., "rank10": .., "rank20": .., "mAP": .., "mINP": ..,
     "rank1_std": .., ..., "mINP_std": .., "per_trial": [{"trial": t, "rank1": .., ...}, ...]}

``dataset`` and ``setting`` (the table label) are written by the protocol's spec
(:meth:`mpanet_tf.eval.protocol.EvalProtocol.evaluate`); every other key that is not a metric
(:func:`setting_of`) identifies the setting, whatever the dataset calls it.

Metrics are percentages; the plain keys are means over ``per_trial`` and the ``*_std`` keys their
sample standard deviation (ddof=1; 0 for a single trial). :func:`aggregate_repeats` turns results of
several training seeds into one result of the same schema (mean and std across seeds, design.md §6
quotes how much single runs fluctuate).
"""

from __future__ import annotations

import numpy as np

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
#: The keys of a result that are not its setting: metrics, their spread, trials and repeats.
RESULT_KEYS = frozenset({*METRIC_KEYS, *(f"{key}_std" for key in METRIC_KEYS), "trials", "per_trial", "repeats",
                         "per_seed"})
TABLE_COLUMNS = (("R1", "rank1"), ("R10", "rank10"), ("R20", "rank20"), ("mAP", "mAP"), ("mINP", "mINP"))


def _std(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def make_result(per_trial: list[dict], **setting) -> dict:
    """A result dict from per-trial metric dicts (each holding every key of :data:`METRIC_KEYS`):
    the ``setting`` keys first (as given), then ``trials``, the means, the spreads, ``per_trial``."""
    if not per_trial:
        raise ValueError("a result needs at least one trial")
    clash = RESULT_KEYS & set(setting)
    if clash:
        raise ValueError(f"setting keys {sorted(clash)} are result keys")
    result = {**setting, "trials": len(per_trial)}
    for key in METRIC_KEYS:
        values = [float(trial[key]) for trial in per_trial]
        result[key] = float(np.mean(values))
        result[f"{key}_std"] = _std(values)
    result["per_trial"] = [dict(trial) for trial in per_trial]
    return result


def setting_of(result: dict) -> dict:
    """The keys of ``result`` that name its setting (``dataset``, ``setting``, ``mode``, ...)."""
    return {k: v for k, v in result.items() if k not in RESULT_KEYS}


def _one_setting(results: list[dict], verb: str) -> dict:
    settings = [setting_of(r) for r in results]
    if any(s != settings[0] for s in settings):
        raise ValueError(f"cannot {verb} results of different settings: {sorted({str(s) for s in settings})}")
    return settings[0]


def combine_trials(results: list[dict]) -> dict:
    """One result from several results of the same setting (e.g. RegDB's 10 per-trial models)."""
    setting = _one_setting(results, "combine")
    return make_result([trial for r in results for trial in r["per_trial"]], **setting)


def aggregate_repeats(results: list[dict]) -> dict:
    """Mean and std across training seeds of results of one setting.

    Each seed contributes its trial mean; ``per_seed`` keeps the seed results and ``per_trial``
    the seed-level metrics (with a ``seed`` index), so ``trials`` counts seeds' trials combined.
    """
    setting = _one_setting(results, "aggregate")
    seeds = [{"seed": index, **{key: r[key] for key in METRIC_KEYS}} for index, r in enumerate(results)]
    result = make_result(seeds, **setting)
    result["trials"] = int(results[0]["trials"])
    result["repeats"] = len(results)
    result["per_seed"] = list(results)
    return result


def setting_name(result: dict) -> str:
    """The table label such as ``SYSU all-search single-shot`` or ``RegDB infrared->visible``
    that the result carries (its ``setting``; the dataset name for a result without one)."""
    return str(result.get("setting") or result.get("dataset"))


def format_table(results) -> str:
    """The paper's Tables 1-2 layout: setting, R1, R10, R20, mAP, mINP (``mean ± std`` when >1 trial or seed)."""
    if isinstance(results, dict):
        results = [results]
    rows = []
    for result in results:
        spread = result.get("repeats", result.get("trials", 1)) > 1
        cells = [setting_name(result)]
        for _, key in TABLE_COLUMNS:
            value = f"{result[key]:.2f}"
            if spread:
                value += f" ± {result[f'{key}_std']:.2f}"
            cells.append(value)
        count = f"{result['repeats']} seeds" if "repeats" in result else f"{result.get('trials', 1)} trials"
        cells.append(count)
        rows.append(cells)
    header = ["Setting"] + [name for name, _ in TABLE_COLUMNS] + ["over"]
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(row) for row in rows])
