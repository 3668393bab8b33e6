"""Issue 26, item 6: ``train --force`` deletes only what a run writes.

It used to delete every hidden entry of the folder (``.git/``, ``.env``, notes). Now it deletes
the run's own entries (config.json, run.json, model.keras, checkpoints/, history.json,
tensorboard/ and their hidden temporaries) and refuses, with one line naming them and before
deleting anything, when anything else is there.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mpanet_tf.io import locks
from mpanet_tf.cli.main import cli
from mpanet_tf.errors import ConfigError
from mpanet_tf.training import setup

OWN = ["config.json", "run.json", "model.keras", "history.json", ".config.json.k2j4.tmp",
       ".tmp-4242-model.keras", ".history.json.x.tmp", ".tmp-4242-1a2b3c4d-run.json", ".tmp-7-0f0f0f0f-model.keras"]


def _old_run(folder, *foreign):
    folder.mkdir()
    for name in OWN:
        (folder / name).write_text("old")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "ckpt-000000001.state.json").write_text("{}")
    (folder / "tensorboard").mkdir()
    for name in foreign:
        if name.endswith("/"):
            (folder / name).mkdir()
            (folder / name / "HEAD").write_text("ref: refs/heads/main")
        else:
            (folder / name).write_text("SECRET=1")
    return folder


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("foreign", [(".git/",), (".env",), (".notes.md", "plan.txt"), (".config.json.bak",)])
def test_force_refuses_beside_foreign_entries_and_deletes_nothing(tmp_path, foreign):
    output = _old_run(tmp_path / "run", *foreign)
    before = _names(output)
    with pytest.raises(ConfigError) as caught:
        setup.check_output(output, resume=False, force=True)
    for name in foreign:
        assert repr(name.rstrip("/")) in str(caught.value)
    assert _names(output) == before


def test_force_clears_exactly_the_runs_own_entries(tmp_path):
    output = _old_run(tmp_path / "run")
    (output / locks.LOCK_FILE).write_text('{"pid": 1}')
    assert setup.check_output(output, resume=False, force=True) is None
    setup.clear_run_folder(output)
    assert _names(output) == [locks.LOCK_FILE]


def test_clear_never_touches_foreign_entries_even_when_called_directly(tmp_path):
    output = _old_run(tmp_path / "run", ".git/", ".env")
    setup.clear_run_folder(output)
    assert _names(output) == [".env", ".git"]
    assert (output / ".git" / "HEAD").read_text() == "ref: refs/heads/main"


def test_train_force_names_the_foreign_files_in_one_line(tmp_path):
    output = _old_run(tmp_path / "run", ".git/", ".env")
    before = _names(output)
    result = CliRunner().invoke(cli, ["train", "--dataset", "sysu", "--data-root", str(tmp_path / "nowhere"),
                                      "--backbone-weights", "none", "--output", str(output), "--force"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'.env'" in lines[0] and "'.git'" in lines[0], result.stderr
    assert _names(output) == before
