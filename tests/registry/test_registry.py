"""The dataset registry itself: built-ins, third-party specs, errors, labels, and no cycle in data/."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpanet_tf.data.registry import DatasetSpec, dataset_names, get_dataset, register_dataset
from mpanet_tf.errors import ConfigError, DatasetError
from mpanet_tf.eval.features import FeatureSet
from mpanet_tf.eval.regdb_protocol import RegDBOptions, RegDBProtocol
from mpanet_tf.eval.report import combine_trials, format_table

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
    # The spec holds the protocol class; its one instance is bound to the spec.
    assert regdb.protocol is RegDBProtocol and regdb.get_protocol() is regdb.get_protocol()
    assert get_dataset(regdb) is regdb


def test_split_range_is_the_specs():
    regdb, sysu = get_dataset("regdb"), get_dataset("sysu")
    assert regdb.describe_splits() == "1..10" and regdb.check_split(10) == 10
    with pytest.raises(ConfigError, match=r"--trial must be one of RegDB's splits 1\.\.10, got 11"):
        regdb.check_split(11)
    assert sysu.check_split(1) == 1
    with pytest.raises(ConfigError, match="SYSU-MM01 has one train/test split; --trial must be 1"):
        sysu.check_split(7)


def test_unknown_name_is_both_a_dataset_and_a_config_error():
    for kind in (DatasetError, ConfigError):
        with pytest.raises(kind, match="unknown dataset 'market'; choose one of sysu, regdb"):
            get_dataset("market")


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(DatasetSpec(name="sysu", title="x", open=dict, preset={}, protocol=None, info_keys=()))
    with pytest.raises(ValueError, match="lower case"):
        register_dataset(DatasetSpec(name="Toy", title="x", open=dict, preset={}, protocol=None, info_keys=()))


def _regdb_features(seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(1, 5), 2)
    return FeatureSet(query_features=rng.normal(size=(8, 4)).astype(np.float32), query_ids=ids,
                      query_cams=np.full(8, 3), query_paths=np.array([f"t{i}" for i in range(8)]),
                      gallery_features=rng.normal(size=(8, 4)).astype(np.float32), gallery_ids=ids,
                      gallery_cams=np.full(8, 2), gallery_paths=np.array([f"v{i}" for i in range(8)]))


def test_results_carry_the_specs_name_and_labels():
    """A protocol does not write its dataset's name: a copy of the RegDB spec under another name
    labels the same scores with that name, and the table shows the results' own labels."""
    copy = dataclasses.replace(get_dataset("regdb"), name="regdb-copy", title="RegDB copy")
    features = _regdb_features(0)
    original = get_dataset("regdb").get_protocol().evaluate(features, RegDBOptions(), all_settings=True, split=1)
    copied = copy.get_protocol().evaluate(features, RegDBOptions(), all_settings=True, split=1)
    assert [r["dataset"] for r in original] == ["regdb", "regdb"]
    assert [r["dataset"] for r in copied] == ["regdb-copy", "regdb-copy"]
    assert [r["setting"] for r in copied] == ["RegDB infrared->visible", "RegDB visible->infrared"]
    assert list(copied[0])[:3] == ["dataset", "setting", "regdb_mode"]
    assert [r["rank1"] for r in copied] == [r["rank1"] for r in original]
    assert format_table(copied).splitlines()[2].startswith("RegDB infrared->visible")
    # Two splits' results of one setting combine; results of two settings do not.
    second = copy.get_protocol().evaluate(_regdb_features(1), RegDBOptions(), split=2)[0]
    combined = combine_trials([copied[0], second])
    assert combined["dataset"] == "regdb-copy" and combined["trials"] == 2
    assert combined["rank1"] == pytest.approx((copied[0]["rank1"] + second["rank1"]) / 2)
    with pytest.raises(ValueError, match="different settings"):
        combine_trials(copied)


def _imports(path: Path) -> set[str]:
    """Every ``mpanet_tf`` module a file imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mpanet_tf"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("mpanet_tf")}
    return names


def test_data_imports_no_layer_above_it_and_has_no_cycle():
    folder = REPO / "mpanet_tf" / "data"
    graph = {f"mpanet_tf.data.{p.stem}": _imports(p) for p in folder.glob("*.py") if p.stem != "__init__"}
    for module, imported in graph.items():
        above = {name for name in imported if name.partition(".")[2].split(".")[0] in (
            "config", "eval", "training", "index", "viz", "cli", "model", "inference", "export", "runtimes")}
        assert not above, (module, above)

    def reaches(start, target, seen):
        for name in graph.get(start, ()):
            if name == target or (name not in seen and (seen.add(name) or reaches(name, target, seen))):
                return True
        return False

    cycles = [module for module in graph if reaches(module, module, set())]
    assert not cycles, cycles


def test_a_dataset_module_registers_nothing_on_import():
    result = python("import mpanet_tf.data.sysu, mpanet_tf.eval.sysu_protocol, mpanet_tf.data.registry as r; "
                    "print(sorted(r._REGISTRY))")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_records_do_not_import_the_readers():
    imported = _imports(REPO / "mpanet_tf" / "data" / "records.py")
    assert not {name for name in imported if name != "mpanet_tf.errors" and not name.startswith("mpanet_tf.data.images")}
    result = python("import sys, mpanet_tf.data.records; "
                    "print([m for m in sys.modules if m in ('mpanet_tf.data.sysu', 'mpanet_tf.data.regdb')])")
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_third_party_spec_from_the_environment():
    code = "import json; from mpanet_tf.data.registry import dataset_names; print(json.dumps(dataset_names()))"
    result = python(code, MPANET_TF_DATASETS="tests.registry.toy_protocol:TOY")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["sysu", "regdb", "llcm", "manifest", "toy"]
    for reference, message in (("tests.registry.no_such_module:TOY", "names module 'tests.registry.no_such_module'"),
                               ("tests.registry.toy_protocol", "module:attribute"),
                               ("tests.registry.toy_protocol:NOPE", "has no 'NOPE'"),
                               ("tests.registry.toy_protocol:SIDES", "is a tuple, not a DatasetSpec")):
        result = python(code, MPANET_TF_DATASETS=reference)
        assert result.returncode != 0 and "MPANET_TF_DATASETS" in result.stderr and message in result.stderr, \
            result.stderr


def test_a_bad_dataset_reference_is_one_line_and_exit_2_on_the_command_line():
    result = python("import sys; from mpanet_tf.cli.main import main; sys.exit(main(['train', '--help']))",
                    MPANET_TF_DATASETS="tests.registry.no_such_module:TOY")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: MPANET_TF_DATASETS"), \
        result.stderr
