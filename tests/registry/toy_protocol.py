"""The toy dataset's protocol: infrared test queries against the visible test gallery, one trial.

It declares its own ``mpanet-tf eval`` option, ``--toy-metric euclidean|cosine``, so the test can
check that a new protocol's options reach the command without editing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpanet_tf.cli_option import CliOption
from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.metrics import evaluate_ranking, no_junk, normalized_squared_distance, pairwise_squared_distance
from mpanet_tf.eval.protocol import EvalProtocol
from mpanet_tf.eval.report import make_result

METRICS = ("euclidean", "cosine")


@dataclass
class ToyOptions:
    """``toy_metric``: squared Euclidean on the raw features or on L2-normalised ones (cosine). The
    field is prefixed because it is also the eval command's parameter name, shared by all protocols."""

    toy_metric: str = "euclidean"


class ToyProtocol(EvalProtocol):
    name = "toy"
    options_type = ToyOptions
    cli_options = (
        CliOption(("--toy-metric",), "toy_metric", "TOY: distance of the features.", default="euclidean",
                  choices=METRICS, show_default=True),
    )

    def validate(self, options: ToyOptions, all_settings: bool = False) -> None:
        if options.toy_metric not in METRICS:
            raise ConfigError(f"--toy-metric must be euclidean or cosine, got {options.toy_metric!r}")

    def test_split(self, reader):
        return reader.test_records(True), reader.test_records(False)

    def settings(self, options: ToyOptions, all_settings: bool = False) -> list:
        return list(METRICS) if all_settings else [options.toy_metric]

    def evaluate(self, features, options: ToyOptions, *, all_settings=False, rerank=False, context=None,
                 split=None, source="features") -> list[dict]:
        results = []
        for metric in self.settings(options, all_settings):
            distance = (normalized_squared_distance if metric == "cosine" else pairwise_squared_distance)(
                features.query_features, features.gallery_features)
            metrics = evaluate_ranking(np.asarray(distance), features.query_ids, features.query_cams,
                                       features.gallery_ids, features.gallery_cams, junk=no_junk)
            results.append(make_result([{"trial": 0, **metrics.as_dict()}], dataset="toy", toy_metric=metric))
        return results

    def setting_name(self, result: dict) -> str:
        return f"TOY infrared->visible ({result.get('toy_metric')})"


TOY_PROTOCOL = ToyProtocol()
