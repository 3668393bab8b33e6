"""Issue 14, classes 2 and 3: absurd sizes and numbers that were accepted -> one line, exit 2,
before anything is written.

- feature files (``eval --features``) with NaN/inf features, non-integer ids, a member whose
  declared shape is far larger than its bytes, or a key stored as a non-``.npy`` member;
- every numeric training option out of its range (``--steps-per-epoch -1``, ``--seed -1``,
  ``--lr inf``, ``--margin nan``, ...), refused before the run folder is created;
- image sizes without limits (``synth --size``, ``train --image-size``, ``prepare --image-size``).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.eval.features import FEATURE_KEYS


def _feature_arrays(rows_q=3, rows_g=4, dim=8):
    rng = np.random.default_rng(0)
    return {
        "query_features": rng.normal(size=(rows_q, dim)).astype(np.float32),
        "query_ids": np.arange(rows_q, dtype=np.int64) + 1,
        "query_cams": np.full(rows_q, 3, dtype=np.int64),
        "query_paths": np.array([f"cam3/{i:04d}/0001.jpg" for i in range(rows_q)]),
        "gallery_features": rng.normal(size=(rows_g, dim)).astype(np.float32),
        "gallery_ids": np.arange(rows_g, dtype=np.int64) + 1,
        "gallery_cams": np.full(rows_g, 2, dtype=np.int64),
        "gallery_paths": np.array([f"cam2/{i:04d}/0001.jpg" for i in range(rows_g)]),
    }


def _npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _write_npz(path, arrays, raw=None):
    """An .npz of ``arrays`` (as np.savez writes it) plus ``raw`` {member name: bytes}."""
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in arrays.items():
            archive.writestr(f"{key}.npy", _npy_bytes(value))
        for name, data in (raw or {}).items():
            archive.writestr(name, data)
    return path


def _huge_header_member() -> bytes:
    """A .npy member declaring a (10^6, 10^6) float32 array (4 TB) that holds 64 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + b"\0" * 64


def _case_nan(arrays):
    arrays["query_features"][1, 2] = np.nan
    return arrays, None, "NaN or infinite"


def _case_inf(arrays):
    arrays["gallery_features"][0, 0] = np.inf
    return arrays, None, "NaN or infinite"


def _case_text_ids(arrays):
    arrays["query_ids"] = np.array(["a", "b", "c"])
    return arrays, None, "query_ids must hold integers"


def _case_huge_shape(arrays):
    del arrays["gallery_features"]
    return arrays, {"gallery_features.npy": _huge_header_member()}, "declares shape"


def _case_not_npy(arrays):
    del arrays["query_features"]
    return arrays, {"query_features": b"\0" * 1000}, "lacks query_features"


@pytest.mark.parametrize("case", [_case_nan, _case_inf, _case_text_ids, _case_huge_shape, _case_not_npy],
                         ids=["nan", "inf", "text-ids", "huge-declared-shape", "non-npy-member"])
def test_bad_feature_files_are_refused(tmp_path, case):
    arrays, raw, reason = case(_feature_arrays())
    path = _write_npz(tmp_path / "features.npz", arrays, raw)
    result = CliRunner().invoke(cli, ["eval", "--dataset", "regdb", "--features", str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert str(path) in lines[0] and reason in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_good_feature_file_still_loads(tmp_path):
    from mpanet_tf.eval.features import load_features

    arrays = _feature_arrays()
    path = _write_npz(tmp_path / "features.npz", arrays)
    loaded = load_features(path)
    for key in FEATURE_KEYS:
        np.testing.assert_array_equal(getattr(loaded, key), arrays[key])


TRAIN_BASE = ["train", "--dataset", "sysu", "--backbone-weights", "none"]

NUMBER_CASES = [
    (["--steps-per-epoch", "-1"], "--steps-per-epoch"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--gamma", "0"], "--gamma"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--save-every-steps", "-5"], "--save-every-steps"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--margin", "nan"], "--margin"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**40)], "--seed"),
    (["--epochs", "0"], "--epochs"),
    (["--weight-kl", "-1"], "--weight-kl"),
    (["--update-rate", "1.5"], "--update-rate"),
    (["--batch-ids", "100000"], "--batch-ids"),
    (["--image-size", "100000x100000"], "100000x100000"),
]


@pytest.mark.parametrize("extra, names", NUMBER_CASES, ids=[" ".join(case[0]) for case in NUMBER_CASES])
def test_numeric_train_options_are_validated_before_anything_is_written(tmp_path, extra, names):
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, [*TRAIN_BASE, "--data-root", str(tmp_path / "nowhere"),
                                      "--output", str(output), *extra])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert names in lines[0], lines[0]
    assert not output.exists()


@pytest.mark.parametrize("argv, names", [
    (["synth", "--layout", "sysu", "--out", "{tmp}/s", "--size", "100000x100000"], "100000x100000"),
    (["synth", "--layout", "regdb", "--out", "{tmp}/s", "--size", "4096x64"], "4096x64"),
    (["prepare", "--dataset", "sysu", "--data-root", "{tmp}", "--image-size", "9999x9999"], "9999x9999"),
])
def test_sizes_have_a_maximum(tmp_path, argv, names):
    args = [a.format(tmp=tmp_path) for a in argv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert names in lines[0]
    assert not (tmp_path / "s").exists()
