"""The interface of a dataset's evaluation protocol, and the command-line options it declares.

Each dataset's protocol file (:mod:`~mpanet_tf.eval.sysu_protocol`,
:mod:`~mpanet_tf.eval.regdb_protocol`) defines a subclass of :class:`EvalProtocol` and one
instance of it, which its :class:`~mpanet_tf.data.registry.DatasetSpec` names. The protocol's own
settings live in a small options dataclass (:attr:`EvalProtocol.options_type`, defaults = the
paper's protocol); the options every dataset shares (model and feature paths, batch size,
re-ranking, ``--all-settings``) live in :class:`mpanet_tf.eval.artifacts.EvalOptions`.

A subclass sets :attr:`~EvalProtocol.name`, :attr:`~EvalProtocol.options_type`,
:attr:`~EvalProtocol.cli_options` and implements :meth:`~EvalProtocol.test_split`,
:meth:`~EvalProtocol.evaluate`, :meth:`~EvalProtocol.settings` and
:meth:`~EvalProtocol.setting_name`; the other methods have defaults that suit a protocol with one
test split, one model and no files besides the features.
"""

from __future__ import annotations

import dataclasses

from mpanet_tf.cli_option import CliOption


class EvalProtocol:
    """A dataset's test protocol: what to embed, how to score it, how to name the result.

    Attributes:
        name: the dataset name (the :class:`~mpanet_tf.data.registry.DatasetSpec` name).
        options_type: the dataclass of the protocol's own options; ``options_type()`` is the
            default (the paper's) protocol.
        cli_options: the ``mpanet-tf eval`` options that fill it (:meth:`options_from_cli`).
    """

    name: str = ""
    options_type: type = type(None)
    cli_options: tuple[CliOption, ...] = ()

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
        """Result dicts (:mod:`mpanet_tf.eval.report`), one per :meth:`settings` entry.

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

    # ----------------------------------------------------------- pictures
    def ranked_list_sources(self, reader, mode: str = "all", direction: str = "i2v"):
        """``visualize ranks``: (queries, gallery, description, normalize, junk rule or None).

        ``mode`` and ``direction`` are the command's SYSU gallery and RegDB direction choices; a
        protocol reads the one that applies to it. The default ranks the whole test split with
        L2-normalised features.
        """
        queries, gallery = self.test_split(reader)
        return queries, gallery, f"{self.name} test split ({len(gallery)} gallery images)", True, None
