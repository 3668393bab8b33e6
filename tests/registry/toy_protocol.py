"""The toy dataset's protocol and spec: infrared test queries against the visible test gallery.

It declares its own option of each command that takes them, so the tests can check that a new
dataset's options reach the commands without editing them:

- ``eval --toy-metric euclidean|cosine``: the distance;
- ``visualize ranks --toy-side infrared|visible``: which modality queries the picture;
- ``index build|add --toy-modality both|infrared|visible``: which images of the split are indexed.

``TOY`` is the :class:`~mpanet_tf.data.registry.DatasetSpec`; a third-party package names it in an
entry point (``toy = "tests.registry.toy_protocol:TOY"``), the tests in ``MPANET_TF_DATASETS`` or
with :func:`register_toy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpanet_tf.data.registry import DatasetSpec, register_dataset
from mpanet_tf.errors import ConfigError
from mpanet_tf.eval.metrics import evaluate_ranking, no_junk, normalized_squared_distance, pairwise_squared_distance
from mpanet_tf.eval.protocol import CliOption, EvalProtocol
from mpanet_tf.eval.report import make_result
from tests.registry.toy_dataset import SIZE, ToyDataset, synthesize_toy

METRICS = ("euclidean", "cosine")
SIDES = ("infrared", "visible")
MODALITIES = ("both", "infrared", "visible")


@dataclass
class ToyOptions:
    """``toy_metric``: squared Euclidean on the raw features or on L2-normalised ones (cosine). The
    field is prefixed because it is also the eval command's parameter name, shared by all protocols."""

    toy_metric: str = "euclidean"


class ToyProtocol(EvalProtocol):
    options_type = ToyOptions
    cli_options = (
        CliOption(("--toy-metric",), "toy_metric", "TOY: distance of the features.", default="euclidean",
                  choices=METRICS, show_default=True),
    )
    visualize_options = (
        CliOption(("--toy-side",), "toy_side", "TOY: the modality of the queries (the gallery is the other).",
                  default="infrared", choices=SIDES, show_default=True),
    )
    index_options = (
        CliOption(("--toy-modality",), "toy_modality", "TOY: index the images of this modality only.",
                  default="both", choices=MODALITIES, show_default=True),
    )

    def validate(self, options: ToyOptions, all_settings: bool = False) -> None:
        if options.toy_metric not in METRICS:
            raise ConfigError(f"--toy-metric must be euclidean or cosine, got {options.toy_metric!r}")

    def test_split(self, reader):
        return reader.test_records(True), reader.test_records(False)

    def settings(self, options: ToyOptions, all_settings: bool = False) -> list:
        return list(METRICS) if all_settings else [options.toy_metric]

    def score(self, features, options: ToyOptions, *, all_settings=False, rerank=False, context=None,
              split=None, source="features") -> list[dict]:
        results = []
        for metric in self.settings(options, all_settings):
            distance = (normalized_squared_distance if metric == "cosine" else pairwise_squared_distance)(
                features.query_features, features.gallery_features)
            metrics = evaluate_ranking(np.asarray(distance), features.query_ids, features.query_cams,
                                       features.gallery_ids, features.gallery_cams, junk=no_junk)
            results.append(make_result([{"trial": 0, **metrics.as_dict()}], toy_metric=metric))
        return results

    def setting_name(self, result: dict) -> str:
        return f"{self.title} infrared->visible ({result.get('toy_metric')})"

    def ranked_list_sources(self, reader, options: dict):
        infrared = options["toy_side"] == "infrared"
        queries, gallery = reader.test_records(infrared), reader.test_records(not infrared)
        return queries, gallery, f"{self.title} {options['toy_side']} queries ({len(gallery)} gallery images)", \
            True, None

    def index_records(self, reader, split: str, options: dict) -> list:
        records = super().index_records(reader, split, options)
        if options["toy_modality"] == "both":
            return records
        return [r for r in records if r.infrared == (options["toy_modality"] == "infrared")]


TOY = DatasetSpec(
    name="toy", title="TOY", open=ToyDataset, protocol=ToyProtocol,
    preset={"model": {"image_height": SIZE[0], "image_width": SIZE[1]},
            "data": {"data_root": "datasets/TOY", "batch_ids": 2, "images_per_id": 2},
            "train": {"milestones": [1], "epochs": 1}},
    info_keys=("train_ids", "train_images", "test_ids", "test_visible", "test_infrared"),
    synthesize=synthesize_toy,
)


def register_toy() -> DatasetSpec:
    """Register :data:`TOY` in this process (what ``MPANET_TF_DATASETS`` or an entry point does)."""
    return register_dataset(TOY)
