"""MirroredStrategy over two logical CPUs and a two-process MultiWorkerMirroredStrategy cluster.

Each runs in fresh processes (``tests.training.workers``): logical devices and a cluster can only be
configured before TensorFlow initialises.

Why the mirrored run is compared through the step-1 Adam moments rather than through the weights:
Keras 3 BatchNormalization uses each replica's own batch statistics, so the single-device
reference must run each replica's half of the global batch separately and average the gradients.
And from a random initialisation, Adam's first steps are ±lr for every element whose gradient is
above ~3e-7, so float rounding noise in the many near-zero gradients (BN shifts followed by BN)
flips whole ±lr steps between two equally correct computations (graph vs eager differ by ~2 % in
gradient norm here). The first moment after step 1 is exactly (1 - beta1)·g, the averaged gradient
itself: a wrong replica scaling, a wrong split of the batch or full-batch BN statistics change it by
tens of percent, rounding noise by about one percent.
"""

from __future__ import annotations

import json
import socket
import subprocess

import numpy as np
import pytest

from tests.training.support import start_worker, tail, worker_env

TIMEOUT_S = 420


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def jobs(sysu_root, tmp_path_factory):
    """Start the mirrored run and both workers of the cluster at once (they mostly trace graphs,
    one core each); each test waits for its own processes."""
    folder = tmp_path_factory.mktemp("distributed")
    started = {"folder": folder}
    started["mirrored"] = start_worker("mirrored", sysu_root, folder / "mirrored-run", folder / "mirrored.json",
                                       log=folder / "mirrored.log")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    started["workers"] = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        started["workers"].append(start_worker("multi-worker", sysu_root, folder / "cluster-run",
                                               folder / f"w{index}.npz", env=worker_env(TF_CONFIG=tf_config),
                                               log=folder / f"worker{index}.log"))
    yield started
    for process in [started["mirrored"], *started["workers"]]:
        if process.poll() is None:
            process.kill()


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_mirrored_two_replicas_match_one_device_on_the_same_global_batch(jobs):
    folder = jobs["folder"]
    assert jobs["mirrored"].wait(timeout=TIMEOUT_S) == 0, tail(folder / "mirrored.log")
    report = json.loads((folder / "mirrored.json").read_text())
    lr = report["lr"]

    assert report["strategy"] == "MirroredStrategy" and report["replicas"] == 2
    # Step 1 gradients (through the Adam moments): noise level ~1e-2, errors >= 3e-1.
    assert report["moment_rel"]["momentum"] < 0.05, report
    assert report["moment_rel"]["velocity"] < 0.1, report
    assert report["full_batch_moment_rel"] > 0.2, report   # the control: full-batch BN differs
    # Losses: step 1 from identical weights, step 2 after one (noisy) Adam step.
    np.testing.assert_allclose(report["run_losses"][0], report["reference_losses"][0], rtol=1e-4)
    np.testing.assert_allclose(report["run_losses"][1], report["reference_losses"][1], rtol=2e-2)
    # Mean heads after 2 steps = 0.8 W0 + 0.2 W1 (EMA before each step): they differ by at most
    # 0.2 x the largest possible difference of W1 (2 lr, opposite Adam steps).
    for name, diff in report["mean_heads_max_abs"].items():
        assert diff <= 0.2 * 2 * lr * 1.001, (name, diff)
    # Every weight differs by at most two opposite Adam steps per step (|update| <= lr each).
    assert report["max_weight_diff"] <= 2 * 2 * lr * 1.001
    # The replicas hold identical copies: the mean-classifier EMA (aggregation "none") does not drift.
    assert report["mean_head_copies_identical"] and report["trainable_copies_identical"]


@pytest.mark.large  # slow (minutes of training on 2 cores): run with --run-large
def test_two_workers_train_in_lock_step(jobs):
    folder, processes = jobs["folder"], jobs["workers"]
    logs = [folder / f"worker{i}.log" for i in range(2)]
    run_dir = folder / "cluster-run"
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        text = tail(logs[0], 30)
        if "collective" in text.lower() or "unavailable" in text.lower():
            pytest.skip(f"the collective ops of a 2-worker cluster on 127.0.0.1 did not start here: {text[-300:]}")
        raise
    assert codes == [0, 0], tail(logs[0]) + "\n---\n" + tail(logs[1])
    first, second = (np.load(folder / f"w{i}.npz") for i in range(2))
    assert int(first["replicas"]) == int(second["replicas"]) == 2
    assert int(first["global_step"]) == int(second["global_step"]) == 2
    for key in first.files:
        if key.startswith("w") or key == "visible_mean":
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    # Only the chief (worker 0) wrote the run folder; it is complete.
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.json", "history.json",
                                                         "model.keras", "run.json", "tensorboard"]
    history = json.loads((run_dir / "history.json").read_text())["epochs"]
    assert [e["global_step"] for e in history] == [2]
