"""Undecodable images (issue 8 item 1): train and eval stop with one line naming the file and exit
2; with ``--skip-bad-images`` they leave it out and say how many they skipped; ``dataset-info
--verify`` lists every bad file. ``search`` with a bad gallery file: tests/export/test_search.py.

One synthetic SYSU-MM01 tree (64x32) per module with two damaged files:

- a training JPEG cut to its first 100 bytes, chosen from the first batch of the first epoch (so a
  one-step run must read it);
- a query (infrared test) image replaced by bytes that are no image.

Two ``train`` runs (the second, with ``--skip-bad-images``, writes the model ``eval`` uses).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli

TRAIN_ARGS = ("--backbone-weights", "none", "--epochs", "1", "--steps-per-epoch", "1", "--image-size", "64x32",
              "--batch-ids", "2", "--images-per-id", "2", "--no-final-eval", "--seed", "1")
TF_NOISE = ("function_node", "{{", "__wrapped__", "[Op:", "device_/job")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    from mpanet_tf.data.sampler import IdentityPairSampler
    from mpanet_tf.data.synthetic import generate_sysu
    from mpanet_tf.data.sysu import SYSUDataset

    base = tmp_path_factory.mktemp("bad_images")
    root = generate_sysu(base / "SYSU-MM01", ids=6, images_per_camera=2, seed=0, size=(64, 32))
    data = SYSUDataset(root)
    records = data.train_records()
    sampler = IdentityPairSampler.from_records(records, 2, 2, seed=1)
    truncated = records[int(sampler.epoch_batches(0)[0][0])].path
    with open(truncated, "rb") as handle:
        head = handle.read(100)
    with open(truncated, "wb") as handle:
        handle.write(head)
    garbage = data.query_records()[0].path
    with open(garbage, "wb") as handle:
        handle.write(b"these bytes are no image at all " * 8)
    return {"base": base, "root": root, "truncated": truncated, "garbage": garbage}


def one_error_line(result, path):
    """The single stderr line of a failed command, which names ``path`` without TensorFlow noise."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("Error: cannot decode image ") and str(path) in line, line
    assert not any(noise in line for noise in TF_NOISE), line
    return line


@pytest.fixture(scope="module")
def skipped_run(tree):
    run = tree["base"] / "run-skip"
    result = CliRunner().invoke(cli, ["train", "--dataset", "sysu", "--data-root", str(tree["root"]), "--output",
                                      str(run), *TRAIN_ARGS, "--skip-bad-images"])
    return run, result


def test_train_stops_on_a_truncated_image(tree):
    run = tree["base"] / "run-stop"
    result = CliRunner().invoke(cli, ["train", "--dataset", "sysu", "--data-root", str(tree["root"]),
                                      "--output", str(run), *TRAIN_ARGS, "--quiet"])
    line = one_error_line(result, tree["truncated"])
    assert "truncated or not an image" in line
    assert not (run / "model.keras").exists()


def test_train_skips_the_truncated_image_and_says_so(tree, skipped_run):
    run, result = skipped_run
    assert result.exit_code == 0, (result.output, result.exception)
    report = [line for line in result.output.splitlines() if "skipping" in line]
    assert len(report) == 1, result.output
    assert report[0].startswith("skipping 1 undecodable training image") and tree["truncated"] in report[0]
    assert (run / "model.keras").is_file()


def eval_args(tree, run, *extra):
    return ["eval", "--dataset", "sysu", "--data-root", str(tree["root"]), "--model", str(run), "--trials", "1",
            *extra]


def test_eval_stops_on_an_undecodable_query(tree, skipped_run):
    run, _ = skipped_run
    result = CliRunner().invoke(cli, eval_args(tree, run, "--quiet"))
    line = one_error_line(result, tree["garbage"])
    assert "truncated or not an image" in line
    assert result.stdout == ""


def test_eval_skips_the_undecodable_query_and_says_so(tree, skipped_run):
    run, _ = skipped_run
    result = CliRunner().invoke(cli, eval_args(tree, run, "--skip-bad-images"))
    assert result.exit_code == 0, (result.output, result.exception)
    report = [line for line in result.stderr.splitlines() if "skipped" in line]
    assert report == [f"skipped 1 undecodable query images (first: {tree['garbage']})"], result.stderr
    assert "mAP" in result.stdout


def test_dataset_info_verify_lists_both_bad_files(tree):
    result = CliRunner().invoke(cli, ["dataset-info", "--dataset", "sysu", "--data-root", str(tree["root"]),
                                      "--verify"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and "verifying images" not in line]
    assert lines[:-1] == [f"cannot decode image {p} (truncated or not an image); replace or delete the file, "
                          "or pass --skip-bad-images" for p in sorted((tree["truncated"], tree["garbage"]))], lines
    assert lines[-1].startswith("Error: 2 of ") and str(tree["root"]) in lines[-1], lines
