"""Issue 14 class 7: a truncated JPEG gives our one line on stderr and nothing else.

libjpeg writes its own complaints ("Premature end of JPEG data", "Improper call to JPEG library in
state 201") to the process's stderr, which ``CliRunner`` does not see; so the CLI runs here as a
real subprocess. The decoder refuses a JPEG whose last scan has no end marker before libjpeg reads
it (:func:`mpanet_tf.data.images._jpeg_complete`).
"""

from __future__ import annotations

import os
import subprocess
import sys

from mpanet_tf.data.synthetic import generate_sysu


def test_prepare_with_a_truncated_jpeg_prints_only_our_line(tmp_path):
    root = generate_sysu(tmp_path / "SYSU-MM01", ids=4, images_per_camera=1, size=(128, 64))
    victim = sorted((root / "cam1").rglob("*.jpg"))[0]
    data = victim.read_bytes()
    scan = data.rfind(b"\xff\xda")
    victim.write_bytes(data[:(scan + len(data)) // 2])  # cut in the middle of the scan
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MPANET_TF_VERBOSE_TF")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    completed = subprocess.run(
        [sys.executable, "-m", "mpanet_tf.cli.main", "prepare", "--dataset", "sysu", "--data-root", str(root),
         "--image-size", "64x32", "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("Error: cannot decode image ") and str(victim) in lines[0], lines[0]
    assert "truncated or not an image" in lines[0]
