"""The README's examples name files that exist: every ``synth/...jpg`` it passes to a command is
written by the README's own ``mpanet-tf synth`` line (a missing file made the service section's
multipart add print nothing, curl -s hiding curl's own error)."""

from __future__ import annotations

import re
from pathlib import Path

from mpanet_tf.data.synthetic import generate_sysu

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_synth_file_the_readme_names_is_written_by_its_synth_command(tmp_path):
    text = README.read_text()
    commands = set(re.findall(r"^mpanet-tf synth --out synth --ids (\d+) --images-per-camera (\d+)\s*$", text, re.M))
    assert len(commands) == 1, f"expected one synth command for the examples, found {commands}"
    ids, per_camera = (int(n) for n in commands.pop())
    named = sorted(set(re.findall(r"\bsynth/[\w./-]+\.jpg\b", text)))
    assert len(named) >= 3  # the query of the search examples and the two images the service adds
    generate_sysu(tmp_path / "synth", ids=ids, images_per_camera=per_camera)  # `synth`'s defaults: seed 0, 96x48
    missing = [name for name in named if not (tmp_path / name).is_file()]
    assert not missing, f"README names files its synth command does not write: {missing}"
