"""Issue 26, item 4: numbers are checked before any work.

``synth --ids 10**9`` was killed at 24 GB and ``--images-per-camera 10**9`` wrote without end; a
seed range that ``--repeat`` would leave was refused only after the first run had trained; a
schedule whose learning rate overflows (``--gamma 1000`` with many milestones) failed with an
OverflowError at epoch 2. Each is now one line, exit 2, with nothing written.
"""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner

from mpanet_tf.cli.main import cli
from mpanet_tf.config import MAX_SEED, MPANetConfig
from mpanet_tf.data.synthetic import MAX_SYNTH_IDS, MAX_SYNTH_IMAGES
from mpanet_tf.errors import ConfigError
from mpanet_tf.training.schedules import learning_rate_for_epoch


def _one_line(result, *names):
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("layout", ["sysu", "regdb", "llcm", "manifest"])
@pytest.mark.parametrize("option, value, message", [
    ("--ids", 10**9, "--ids must be at most"),
    ("--images-per-camera", 10**9, "a synthetic tree may hold"),
])
def test_synth_counts_have_a_bound(tmp_path, layout, option, value, message):
    out = tmp_path / "s"
    result = CliRunner().invoke(cli, ["synth", "--layout", layout, "--out", str(out), option, str(value)])
    _one_line(result, message)
    assert not out.exists()


def test_synth_bound_states_the_figure(tmp_path):
    ids = MAX_SYNTH_IDS
    images = MAX_SYNTH_IMAGES // (6 * ids) + 1                     # just over the image bound for SYSU
    result = CliRunner().invoke(cli, ["synth", "--layout", "sysu", "--out", str(tmp_path / "s"),
                                      "--ids", str(ids), "--images-per-camera", str(images)])
    line = _one_line(result, f"{ids * images * 6:,} images", "GB as JPEG")
    assert f"{MAX_SYNTH_IMAGES:,}" in line


TRAIN = ["train", "--dataset", "sysu", "--backbone-weights", "none"]


def test_repeat_leaving_the_seed_range_is_refused_before_the_first_run(tmp_path):
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, [*TRAIN, "--data-root", str(tmp_path / "nowhere"), "--output", str(output),
                                      "--seed", str(MAX_SEED - 1), "--repeat", "3"])
    _one_line(result, "--repeat 3", str(MAX_SEED + 1))
    assert not output.exists()


def test_repeat_up_to_the_last_seed_is_accepted_by_the_check(tmp_path):
    from mpanet_tf.training import train_repeats

    config = MPANetConfig()
    config.train.seed = MAX_SEED - 1
    # two runs end exactly at the largest seed: the seed check passes, the missing data root stops it
    with pytest.raises(Exception) as caught:
        train_repeats(config, tmp_path / "run", 2)
    assert "seed" not in str(caught.value)


def test_overflowing_schedule_is_refused_at_validation(tmp_path):
    milestones = ",".join(str(epoch) for epoch in range(1, 120))
    output = tmp_path / "run"
    result = CliRunner().invoke(cli, [*TRAIN, "--data-root", str(tmp_path / "nowhere"), "--output", str(output),
                                      "--gamma", "1000", "--milestones", milestones, "--epochs", "140"])
    _one_line(result, "--gamma 1000", "learning rate")
    assert not output.exists()


@pytest.mark.parametrize("gamma, milestones, epochs, ok", [
    (0.1, (80, 120), 140, True),            # the authors' schedule
    (10.0, (2,), 5, True),                  # a rising step stays well inside the range
    (1000.0, (1, 2, 3, 4, 5, 6), 10, False),   # lr 3.5e-4 * 1000**3 > 1e3 already
    (1e-30, tuple(range(1, 11)), 12, False),  # underflows to 0 in float32: training would stop silently
    (1000.0, (1, 2, 3, 4, 5, 6), 2, True),   # only milestone 1 is passed within 2 epochs
])
def test_schedule_check_matches_the_learning_rate_the_run_would_use(gamma, milestones, epochs, ok):
    import numpy as np

    data = MPANetConfig().to_dict()
    data["train"].update(gamma=gamma, milestones=list(milestones), epochs=epochs)
    rates = []
    for epoch in range(1, epochs + 1):
        try:
            rates.append(learning_rate_for_epoch(epoch, data["train"]["lr"], milestones, gamma))
        except OverflowError:
            rates.append(math.inf)
    expected = all(0 < float(np.float32(r)) <= 1e3 for r in rates)
    assert expected == ok
    if ok:
        MPANetConfig.from_dict(data)
    else:
        with pytest.raises(ConfigError, match="learning rate"):
            MPANetConfig.from_dict(data)
