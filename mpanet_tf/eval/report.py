"""Evaluation result dicts, their aggregation over trials and seeds, and the results table.

A result is a JSON-ready dict::

    {"dataset": "sysu" | "regdb" | ..., "mode": "all" | "indoor" | None, "shots": 1 | 10 | None,
     "sampling": "official" | "seed" | None, "regdb_mode": "i2v" | "v2i" | None,
     "trials": T, "rank1": .., "rank5": .., "rank10": .., "rank20": .., "mAP": .., "mINP": ..,
     "rank1_std": .., ..., "mINP_std": .., "per_trial": [{"trial": t, "rank1": .., ...}, ...]}

Metrics are percentages; the plain keys are means over ``per_trial`` and the ``*_std`` keys their
sample standard deviation (ddof=1; 0 for a single trial). :func:`aggregate_repeats` turns results of
several training seeds into one result of the same schema (mean and std across seeds, facts §6
quotes how much single runs fluctuate).
"""

from __future__ import annotations

import numpy as np

from mpanet_tf.data.registry import dataset_names, get_dataset

METRIC_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
SETTING_KEYS = ("dataset", "mode", "shots", "sampling", "regdb_mode")
TABLE_COLUMNS = (("R1", "rank1"), ("R10", "rank10"), ("R20", "rank20"), ("mAP", "mAP"), ("mINP", "mINP"))


def _std(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def make_result(per_trial: list[dict], *, dataset: str, mode=None, shots=None, sampling=None,
                regdb_mode=None, **extra) -> dict:
    """A result dict from per-trial metric dicts (each holding every key of :data:`METRIC_KEYS`)."""
    if not per_trial:
        raise ValueError("a result needs at least one trial")
    result = {"dataset": dataset, "mode": mode, "shots": shots, "sampling": sampling,
              "regdb_mode": regdb_mode, "trials": len(per_trial)}
    for key in METRIC_KEYS:
        values = [float(trial[key]) for trial in per_trial]
        result[key] = float(np.mean(values))
        result[f"{key}_std"] = _std(values)
    result.update(extra)
    result["per_trial"] = [dict(trial) for trial in per_trial]
    return result


def _extras(result: dict) -> dict:
    """The optional keys of a result (``rerank``, ``normalize``, ...), for re-aggregated results."""
    standard = set(SETTING_KEYS) | set(METRIC_KEYS) | {f"{k}_std" for k in METRIC_KEYS}
    standard |= {"trials", "per_trial", "repeats", "per_seed"}
    return {k: v for k, v in result.items() if k not in standard}


def combine_trials(results: list[dict]) -> dict:
    """One result from several results of the same setting (e.g. RegDB's 10 per-trial models)."""
    settings = {tuple(r.get(k) for k in SETTING_KEYS) for r in results}
    if len(settings) != 1:
        raise ValueError(f"cannot combine results of different settings: {sorted(map(str, settings))}")
    per_trial = [trial for r in results for trial in r["per_trial"]]
    return make_result(per_trial, **{k: results[0].get(k) for k in SETTING_KEYS}, **_extras(results[0]))


def aggregate_repeats(results: list[dict]) -> dict:
    """Mean and std across training seeds of results of one setting.

    Each seed contributes its trial mean; ``per_seed`` keeps the seed results and ``per_trial``
    the seed-level metrics (with a ``seed`` index), so ``trials`` counts seeds' trials combined.
    """
    settings = {tuple(r.get(k) for k in SETTING_KEYS) for r in results}
    if len(settings) != 1:
        raise ValueError(f"cannot aggregate results of different settings: {sorted(map(str, settings))}")
    seeds = [{"seed": index, **{key: r[key] for key in METRIC_KEYS}} for index, r in enumerate(results)]
    result = make_result(seeds, **{k: results[0].get(k) for k in SETTING_KEYS}, **_extras(results[0]))
    result["trials"] = int(results[0]["trials"])
    result["repeats"] = len(results)
    result["per_seed"] = list(results)
    return result


def setting_name(result: dict) -> str:
    """A table label such as ``SYSU all-search single-shot`` or ``RegDB infrared->visible``: the
    :meth:`~mpanet_tf.eval.protocol.EvalProtocol.setting_name` of the result's dataset."""
    dataset = str(result.get("dataset"))
    if dataset not in dataset_names():
        return dataset
    return get_dataset(dataset).get_protocol().setting_name(result)


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
