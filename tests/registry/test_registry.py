"""The dataset registry itself: built-ins, third-party modules, errors, and no reader import cycle."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpanet_tf.data.registry import DatasetSpec, dataset_names, get_dataset, register_dataset
from mpanet_tf.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[2]


def python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True)


def test_builtin_datasets_and_their_specs():
    assert dataset_names()[:2] == ("sysu", "regdb")
    sysu, regdb = get_dataset("sysu"), get_dataset("RegDB")
    assert (sysu.title, sysu.data_root, sysu.image_size, sysu.splits) == ("SYSU-MM01", "datasets/SYSU-MM01",
                                                                          (384, 128), ())
    assert (regdb.title, regdb.data_root, regdb.image_size, regdb.splits) == ("RegDB", "datasets/RegDB", (256, 128),
                                                                              tuple(range(1, 11)))
    assert sysu.config_overrides()["data"]["dataset"] == "sysu"
    assert sysu.get_protocol().name == "sysu" and regdb.get_protocol().name == "regdb"


def test_unknown_name_is_both_a_dataset_and_a_config_error():
    for kind in (DatasetError, ConfigError):
        with pytest.raises(kind, match="unknown dataset 'market'; choose one of sysu, regdb"):
            get_dataset("market")


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetSpec(name="sysu", title="x", open=dict, preset={}, protocol=None, info_keys=()))
    with pytest.raises(ValueError, match="lower case"):
        register_dataset(DatasetSpec(name="Toy", title="x", open=dict, preset={}, protocol=None, info_keys=()))


def test_records_do_not_import_the_readers():
    tree = ast.parse((REPO / "mpanet_tf" / "data" / "records.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.startswith("mpanet_tf.") and name != "mpanet_tf.errors"
                and not name.startswith("mpanet_tf.data.images")}
    result = python("import sys, mpanet_tf.data.records; "
                    "print([m for m in sys.modules if m in ('mpanet_tf.data.sysu', 'mpanet_tf.data.regdb')])")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_third_party_module_from_the_environment():
    code = "import json; from mpanet_tf.data.registry import dataset_names; print(json.dumps(dataset_names()))"
    result = python(code, MPANET_TF_DATASETS="tests.registry.toy_autoregister")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["sysu", "regdb", "llcm", "manifest", "toy"]
    result = python(code, MPANET_TF_DATASETS="tests.registry.no_such_module")
    assert result.returncode != 0 and "MPANET_TF_DATASETS names module 'tests.registry.no_such_module'" in result.stderr
