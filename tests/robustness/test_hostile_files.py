"""Issue 14, classes 5 and 7: inputs that gave tracebacks (or misleading lines) -> one line, exit 2.

Non-UTF-8 file names, a symbolic-link loop in the data root, unwritable or wrong-kind output
locations (checked before any work, so nothing is computed and then lost), empty, truncated or
foreign ``.keras`` files as ``--model``, out-of-range picture options, histories with null entries,
a bad image for ``visualize patterns`` (which has no ``--skip-bad-images``), warnings as one line.
"""

from __future__ import annotations

import os
import shutil
import zipfile

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli

UNWRITABLE = "/proc/mpanet-test"   # no file can be created there, even by root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.export.test_savedmodel import write_tiny_run

    run, _ = write_tiny_run(tmp_path_factory.mktemp("hostile") / "run")
    return run


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    from tests.export.test_savedmodel import write_images

    folder = tmp_path_factory.mktemp("gallery")
    paths = write_images(folder, suffixes=(".jpg", ".png"))
    odd = os.path.join(os.fsencode(folder), b"odd-\xff-name.jpg")   # not valid UTF-8
    shutil.copyfile(os.fsencode(paths[0]), odd)
    return folder, paths


def _one_error_line(result, *names):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def test_non_utf8_file_name_is_searched_and_printed(tiny_run, gallery):
    folder, paths = gallery
    result = CliRunner().invoke(cli, ["search", "--model", str(tiny_run), "--query", str(paths[0]),
                                      "--gallery", str(folder), "--top-k", "10"])
    assert result.exit_code == 0, (result.output, result.exception)
    # the copy of the query (odd name) and the query itself both rank at distance 0
    zero = [line for line in result.stdout.splitlines() if " 0.0000 " in line]
    assert len(zero) == 2 and any("odd-" in line for line in zero), result.stdout


def test_non_utf8_file_name_in_extract_features(tiny_run, gallery):
    import numpy as np

    from mpanet_tf.runtimes.embedder import load_embedder
    from mpanet_tf.eval.features import extract_features

    folder, paths = gallery
    embedder = load_embedder(tiny_run)
    odd = os.fsdecode(os.path.join(os.fsencode(folder), b"odd-\xff-name.jpg"))
    features = extract_features(embedder.embed, [odd, os.fspath(paths[0])], embedder.image_size, 2, progress=False)
    np.testing.assert_allclose(features[0], features[1], rtol=1e-5, atol=1e-5)


def test_symlink_loop_in_data_root_is_one_line(tmp_path):
    from mpanet_tf.data.synthetic import generate_sysu

    root = generate_sysu(tmp_path / "sysu", ids=4, images_per_camera=1, seed=0)
    loop = root / "cam1" / "0001" / "loop.jpg"
    os.symlink(loop.name, loop)
    result = CliRunner().invoke(cli, ["dataset-info", "--dataset", "sysu", "--data-root", str(root)])
    _one_error_line(result, str(loop))


@pytest.mark.parametrize("argv, names", [
    (["eval", "--dataset", "regdb", "--model", "{run}", "--output", UNWRITABLE + "/r.json"], "--output"),
    (["eval", "--dataset", "regdb", "--model", "{run}", "--output", "{tmp}"], "is a folder"),
    (["eval", "--dataset", "regdb", "--model", "{run}", "--save-features", "{tmp}/afile/f.npz"], "afile"),
    (["search", "--model", "{run}", "--query", "{tmp}/q.png", "--gallery", "{tmp}", "--output",
      UNWRITABLE + "/r.png"], "--output"),
    (["export", "--model", "{run}", "--output", UNWRITABLE], "--output"),
    (["export", "--model", "{run}", "--output", "{tmp}/afile"], "is a file"),
    (["import-torch", "{tmp}/afile", "--output", UNWRITABLE], "--output"),
    (["synth", "--out", UNWRITABLE], "--out"),
    (["prepare", "--dataset", "sysu", "--data-root", "{tmp}", "--cache-dir", UNWRITABLE], "--cache-dir"),
    (["train", "--dataset", "sysu", "--data-root", "{tmp}", "--output", UNWRITABLE, "--backbone-weights", "none"],
     "--output"),
], ids=["eval-json-unwritable", "eval-json-folder", "eval-features-under-file", "search-picture-unwritable",
        "export-unwritable", "export-onto-file", "import-unwritable", "synth-unwritable", "prepare-unwritable",
        "train-unwritable"])
def test_output_locations_are_checked_before_any_work(tmp_path, tiny_run, argv, names):
    from PIL import Image

    (tmp_path / "afile").write_bytes(b"x")
    Image.new("RGB", (32, 64), (10, 200, 30)).save(tmp_path / "q.png")
    args = [a.format(tmp=tmp_path, run=tiny_run) for a in argv]
    result = CliRunner().invoke(cli, args)
    _one_error_line(result, names)
    assert "extracting features" not in result.stderr


def _truncated(run, tmp):
    data = (run / "model.keras").read_bytes()
    (tmp / "m.keras").write_bytes(data[: len(data) // 3])


def _empty(run, tmp):
    (tmp / "m.keras").write_bytes(b"")


def _foreign(run, tmp):
    import keras

    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(tmp / "m.keras")


def _not_a_zip(run, tmp):
    (tmp / "m.keras").write_text("{}")


@pytest.mark.parametrize("make", [_truncated, _empty, _foreign, _not_a_zip],
                         ids=["truncated", "empty", "foreign", "not-a-zip"])
@pytest.mark.parametrize("command", ["export", "patterns"])
def test_bad_keras_files_are_one_line(tmp_path, tiny_run, make, command):
    from PIL import Image

    make(tiny_run, tmp_path)
    Image.new("RGB", (32, 64), (10, 200, 30)).save(tmp_path / "q.png")
    argv = {"export": ["export", "--model", str(tmp_path / "m.keras"), "--output", str(tmp_path / "out")],
            "patterns": ["visualize", "patterns", "--model", str(tmp_path / "m.keras"), "--image",
                         str(tmp_path / "q.png"), "--output", str(tmp_path / "p.png")]}[command]
    result = CliRunner().invoke(cli, argv)
    _one_error_line(result, str(tmp_path / "m.keras"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.png").exists()


def test_patterns_of_a_bad_image_names_image_option(tmp_path, tiny_run):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = CliRunner().invoke(cli, ["visualize", "patterns", "--model", str(tiny_run), "--image",
                                      str(tmp_path / "bad.jpg"), "--output", str(tmp_path / "p.png")])
    line = _one_error_line(result, str(tmp_path / "bad.jpg"), "--image")
    assert "--skip-bad-images" not in line


def test_negative_perplexity_is_a_usage_error(tmp_path, tiny_run):
    result = CliRunner().invoke(cli, ["visualize", "tsne", "--model", str(tiny_run), "--dataset", "sysu",
                                      "--data-root", str(tmp_path), "--perplexity", "-5",
                                      "--output", str(tmp_path / "t.png")])
    assert result.exit_code == 2 and "--perplexity" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("history, ok", [
    ({"epochs": [{"epoch": None}]}, False),
    ({"epochs": [{"epoch": 1, "loss": None, "id": None, "eval": {"rank1": None}}, {"epoch": None, "loss": 1.0}]}, True),
], ids=["only-null-epochs", "null-values"])
def test_curves_with_null_entries(tmp_path, history, ok):
    import json

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text(json.dumps(history))
    result = CliRunner().invoke(cli, ["visualize", "curves", "--model", str(run), "--output", str(tmp_path / "c.png")])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
        assert (tmp_path / "c.png").is_file()
        assert "Warning" not in result.stderr and "UserWarning" not in result.stderr
    else:
        _one_error_line(result, "history.json")


def test_library_warnings_reach_the_user_as_one_line():
    import warnings

    import mpanet_tf.cli.main  # noqa: F401  (installs the one-line warning display)

    runner = CliRunner()

    @cli.command("warn-probe", hidden=True)
    def _probe():
        warnings.warn("a permutation cell was left out", UserWarning)

    try:
        result = runner.invoke(cli, ["warn-probe"])
    finally:
        cli.commands.pop("warn-probe", None)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["Warning: a permutation cell was left out"], result.stderr
