"""Importing this module registers the toy dataset, as a third-party dataset module would
(used through ``MPANET_TF_DATASETS`` in :mod:`tests.registry.test_registry`)."""

from tests.registry.toy_dataset import register_toy

register_toy()
