"""Every CLI misuse -> exit code 2, no traceback, and either one ``Error: ...`` line naming the
offending value or path, or click's short usage form (usage line, hint, error) naming it.

Each case builds its arguments inside ``tmp_path`` (``{tmp}`` below); cases that need a model use
one tiny run folder (64x32 input) shared by the module.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests.export.test_savedmodel import write_tiny_run

    run, _ = write_tiny_run(tmp_path_factory.mktemp("misuse") / "run")
    return run


def _empty_folder(tmp):
    (tmp / "empty").mkdir()


def _empty_folder_and_image(tmp):
    from PIL import Image

    _empty_folder(tmp)
    Image.new("RGB", (32, 64), (90, 120, 30)).save(tmp / "q.jpg")


def _existing_target(tmp):
    (tmp / "saved" / "1").mkdir(parents=True)
    (tmp / "saved" / "1" / "saved_model.pb").write_bytes(b"an earlier export")


def _run_without_history(tmp):
    (tmp / "run_nohist").mkdir()
    (tmp / "run_nohist" / "config.json").write_text("{}")


def _features_file(tmp):
    (tmp / "features.npz").write_bytes(b"")


# (id, argv with {tmp} and {run}, set-up or None, text the message must name, click usage form?)
CASES = [
    ("unknown-dataset", ["dataset-info", "--dataset", "market"], None, "market", True),
    ("train-unknown-dataset", ["train", "--dataset", "market", "--output", "{tmp}/o"], None, "market", True),
    ("eval-shots-3", ["eval", "--dataset", "sysu", "--shots", "3", "--features", "{tmp}/f.npz"], None, "3", True),
    ("eval-trial-11", ["eval", "--dataset", "regdb", "--trial", "11", "--features", "{tmp}/f.npz"], None, "11", False),
    ("eval-trial-0", ["eval", "--dataset", "regdb", "--trial", "0", "--features", "{tmp}/f.npz"], None, "0", False),
    ("eval-regdb-mode-x", ["eval", "--dataset", "regdb", "--regdb-mode", "x", "--features", "{tmp}/f.npz"], None,
     "x", True),
    ("train-trial-11", ["train", "--dataset", "regdb", "--trial", "11", "--data-root", "{tmp}",
                        "--output", "{tmp}/o"], None, "11", False),
    ("dataset-info-missing-data-root", ["dataset-info", "--dataset", "sysu", "--data-root", "{tmp}/nowhere"], None,
     "{tmp}/nowhere", False),
    ("train-missing-data-root", ["train", "--dataset", "sysu", "--data-root", "{tmp}/nowhere", "--output",
                                 "{tmp}/o", "--backbone-weights", "none"], None, "{tmp}/nowhere", False),
    ("eval-missing-data-root", ["eval", "--dataset", "sysu", "--data-root", "{tmp}/nowhere", "--model", "{run}"],
     None, "{tmp}/nowhere", False),
    ("train-image-size-384", ["train", "--dataset", "sysu", "--image-size", "384", "--output", "{tmp}/o"], None,
     "384", False),
    ("train-image-size-16x16", ["train", "--dataset", "sysu", "--image-size", "16x16", "--output", "{tmp}/o"], None,
     "16x16", False),
    ("import-image-size-axb", ["import-torch", "{tmp}/x.pth", "--output", "{tmp}/o", "--image-size", "axb"], None,
     "axb", False),
    ("export-format-tiff", ["export", "--model", "{run}", "--format", "tiff", "--output", "{tmp}/s"], None,
     "tiff", True),
    ("export-version-0", ["export", "--model", "{run}", "--version", "0", "--output", "{tmp}/s"], None, "0", True),
    ("export-target-exists", ["export", "--model", "{run}", "--output", "{tmp}/saved"], _existing_target,
     "{tmp}/saved/1", False),
    ("export-model-empty-folder", ["export", "--model", "{tmp}/empty", "--output", "{tmp}/s"], _empty_folder,
     "{tmp}/empty", False),
    ("export-model-missing", ["export", "--model", "{tmp}/no-such-run", "--output", "{tmp}/s"], None,
     "{tmp}/no-such-run", False),
    ("search-model-empty-folder", ["search", "--model", "{tmp}/empty", "--query", "{tmp}/q.jpg", "--gallery",
                                   "{tmp}"], _empty_folder, "{tmp}/empty", False),
    ("patterns-model-empty-folder", ["visualize", "patterns", "--model", "{tmp}/empty", "--image", "{tmp}/q.jpg",
                                     "--output", "{tmp}/p.png"], _empty_folder_and_image, "{tmp}/empty", False),
    ("search-model-missing", ["search", "--model", "{tmp}/no-such-run", "--query", "{tmp}/q.jpg", "--gallery",
                              "{tmp}"], None, "{tmp}/no-such-run", False),
    ("eval-features-not-npz", ["eval", "--dataset", "regdb", "--features", "{tmp}/features.npz"], _features_file,
     "{tmp}/features.npz", False),
    ("import-torch-missing-file", ["import-torch", "{tmp}/missing.pth", "--output", "{tmp}/o"], None,
     "{tmp}/missing.pth", False),
    ("curves-without-history", ["visualize", "curves", "--model", "{tmp}/run_nohist", "--output", "{tmp}/c.png"],
     _run_without_history, "{tmp}/run_nohist", False),
    ("train-no-dataset", ["train", "--output", "{tmp}/o"], None, "--dataset", False),
    ("train-resume-and-force", ["train", "--dataset", "sysu", "--output", "{tmp}/o", "--resume", "--force"], None,
     "--resume", False),
]


@pytest.mark.parametrize("argv, setup, names, usage_form", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_misuse_is_one_line_and_exit_2(tmp_path, tiny_run, argv, setup, names, usage_form):
    if setup is not None:
        setup(tmp_path)
    args = [a.format(tmp=tmp_path, run=tiny_run) for a in argv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if usage_form:
        assert lines[0].startswith("Usage: mpanet-tf") or lines[0].startswith("Usage: cli"), result.stderr
        assert lines[-1].startswith("Error: "), result.stderr
        assert len(lines) <= 3, result.stderr
    else:
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert names.format(tmp=tmp_path) in lines[-1], result.stderr
