"""The interface of a dataset's evaluation protocol, and the command-line options it declares.

Each dataset's protocol file (:mod:`~mpanet_tf.eval.sysu_protocol`,
:mod:`~mpanet_tf.eval.regdb_protocol`, ...) defines a subclass of :class:`EvalProtocol` and the
dataset's :class:`~mpanet_tf.data.registry.DatasetSpec`, which holds the class; the spec makes one
instance bound to itself (:meth:`~mpanet_tf.data.registry.DatasetSpec.get_protocol`), so the
protocol's results carry the spec's name and labels without the protocol writing them. The
protocol's own settings live in a small options dataclass (:attr:`EvalProtocol.options_type`,
defaults = the paper's protocol); the options every dataset shares (model and feature paths,
batch size, re-ranking, ``--all-settings``) live in :class:`mpanet_tf.eval.artifacts.EvalOptions`.

A subclass sets :attr:`~EvalProtocol.options_type`, :attr:`~EvalProtocol.cli_options` (and, when
it has any, :attr:`~EvalProtocol.visualize_options`, :attr:`~EvalProtocol.index_options`) and
implements :meth:`~EvalProtocol.test_split`, :meth:`~EvalProtocol.score`,
:meth:`~EvalProtocol.settings` and :meth:`~EvalProtocol.setting_name`; the other methods have
defaults that suit a protocol with one test split, one model and no files besides the features.
"""

from __future__ import annotations

import dataclasses

from mpanet_tf.cli_option import CliOption

#: The cross-modality direction of a picture (``visualize ranks --direction``), shared by the
#: protocols whose test split pairs an infrared with a visible side.
DIRECTIONS = ("i2v", "v2i")
DIRECTION_OPTION = CliOption(
    ("--direction",), "direction", "Infrared queries against the visible gallery (i2v) or the reverse (v2i).",
    default="i2v", choices=DIRECTIONS, show_default=True)


class EvalProtocol:
    """A dataset's test protocol: what to embed, how to score it, how to name the result.

    Args:
        spec: the :class:`~mpanet_tf.data.registry.DatasetSpec` it evaluates (its name and title
            label the results and messages).

    Attributes:
        options_type: the dataclass of the protocol's own options; ``options_type()`` is the
            default (the paper's) protocol.
        cli_options: the ``mpanet-tf eval`` options that fill it (:meth:`options_from_cli`).
        visualize_options: the ``visualize ranks`` options of this dataset; their values reach
            :meth:`ranked_list_sources` as ``{dest: value}``.
        index_options: the ``index build`` / ``index add`` options of this dataset; their values
            reach :meth:`index_records`.
    """

    options_type: type = type(None)
    cli_options: tuple[CliOption, ...] = ()
    visualize_options: tuple[CliOption, ...] = ()
    index_options: tuple[CliOption, ...] = ()

    def __init__(self, spec):
        self.spec = spec

    @property
    def name(self) -> str:
        """The dataset's name (``"sysu"``): the ``dataset`` of every result."""
        return self.spec.name

    @property
    def title(self) -> str:
        """The dataset's usual name (``"SYSU-MM01"``), for messages."""
        return self.spec.title

    # ---------------------------------------------------------------- options
    def default_options(self):
        """The paper's protocol: ``options_type()``."""
        return self.options_type()

    def options_from_cli(self, params: dict):
        """The options dataclass from the eval command's parsed parameters (every protocol's
        options are in ``params``; the default takes the fields named like this protocol's
        :attr:`CliOption.dest`). Override to refuse options of other protocols with a message."""
        fields = {f.name for f in dataclasses.fields(self.options_type)}
        return self.options_type(**{o.dest: params[o.dest] for o in self.cli_options
                                    if o.dest in fields and o.dest in params})

    def option_defaults(self, attribute: str = "cli_options") -> dict:
        """``{dest: default}`` of the options declared in ``attribute`` (parsed as the command line
        would parse them)."""
        return {o.dest: o.parse(o.default) if o.parse is not None and o.default is not None else o.default
                for o in getattr(self, attribute)}

    def validate(self, options, all_settings: bool = False) -> None:
        """Raise :class:`ConfigError` for a combination of options the protocol cannot run."""

    # ------------------------------------------------------------ test split
    def test_split(self, reader) -> tuple[list, list]:
        """(query records, gallery records) whose features every setting of the protocol reads."""
        raise NotImplementedError

    def model_splits(self, options) -> tuple:
        """The dataset splits that each need their own model (RegDB's trials); ``(None,)``: one model."""
        return (None,)

    def prepare(self, options, data_root):
        """What :meth:`evaluate` needs besides the features, read before any image is embedded
        (SYSU: the official gallery permutations); None by default."""
        return None

    # -------------------------------------------------------------- scoring
    def settings(self, options, all_settings: bool = False) -> list:
        """The settings reported, one result each (``all_settings``: every setting of the table)."""
        raise NotImplementedError

    def evaluate(self, features, options, *, all_settings: bool = False, rerank: bool = False, context=None,
                 split=None, source="features") -> list[dict]:
        """:meth:`score`'s results labelled: each starts with ``dataset`` (the spec's name) and
        ``setting`` (:meth:`setting_name`, the results table's label)."""
        return self.label(self.score(features, options, all_settings=all_settings, rerank=rerank, context=context,
                                     split=split, source=source))

    def label(self, results: list[dict]) -> list[dict]:
        """``results`` with ``dataset`` and ``setting`` first (the keys every result carries)."""
        return [{"dataset": self.name, "setting": self.setting_name(result),
                 **{k: v for k, v in result.items() if k not in ("dataset", "setting")}} for result in results]

    def score(self, features, options, *, all_settings: bool = False, rerank: bool = False, context=None,
              split=None, source="features") -> list[dict]:
        """Result dicts (:func:`mpanet_tf.eval.report.make_result`), one per :meth:`settings` entry,
        holding the protocol's setting keys (no ``dataset``: :meth:`evaluate` adds it).

        Args:
            features: a :class:`~mpanet_tf.eval.features.FeatureSet` of :meth:`test_split`.
            options: an :attr:`options_type` instance.
            context: what :meth:`prepare` returned (or an equivalent, e.g. the reader).
            split: the split this model was trained on (one of :meth:`model_splits`).
            source: the features' file or model, for messages.
        """
        raise NotImplementedError

    def setting_name(self, result: dict) -> str:
        """The results-table label of one result (``SYSU all-search single-shot``)."""
        raise NotImplementedError

    # ------------------------------------------------------- during training
    def training_skip_reason(self, reader) -> str | None:
        """Why the evaluation during training cannot run on this dataset tree (one line), or None."""
        return None

    def evaluate_during_training(self, features, reader, config, final: bool) -> tuple[list[dict], list[dict]]:
        """(results, the results whose mean is the history's summary) for the model being trained.

        ``final``: the end-of-training evaluation (every setting of the paper's table) rather than
        the periodic one. The default reports the default options' settings, all of them summarised.
        """
        results = self.evaluate(features, self.default_options(), all_settings=final, split=config.data.trial)
        return results, results

    # ------------------------------------------------------ pictures, index
    def ranked_list_sources(self, reader, options: dict):
        """``visualize ranks``: (queries, gallery, description, normalize, junk rule or None).

        ``options``: the values of :attr:`visualize_options` by ``dest``. The default ranks the
        whole test split with L2-normalised features.
        """
        queries, gallery = self.test_split(reader)
        return queries, gallery, f"{self.title} test split ({len(gallery)} gallery images)", True, None

    def index_records(self, reader, split: str, options: dict) -> list:
        """``index build|add --split``: ``train`` / ``all`` records, or the ``query`` / ``gallery``
        side of :meth:`test_split`. ``options``: the values of :attr:`index_options` by ``dest``."""
        if split == "train":
            return reader.train_records()
        if split == "all":
            return reader.all_records()
        query, gallery = self.test_split(reader)
        return query if split == "query" else gallery
