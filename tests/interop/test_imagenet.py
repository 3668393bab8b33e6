"""Finding, downloading and verifying torchvision's ResNet-50 weights (issue 10, design.md §1.1)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from mpanet_tf.errors import CheckpointError, WeightsUnavailableError
from mpanet_tf.interop import imagenet
from mpanet_tf.interop.convert import apply_state_dict, resnet_torch_mapping
from mpanet_tf.interop.imagenet import RESNET50_FILENAME, resolve_backbone_weights
from mpanet_tf.interop.torch_state import load_state_dict
from tests.interop.torch_writer import save_state_dict

BLOCKS = (1, 1, 1, 1)


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """TORCH_HOME and MPANET_TF_HOME in tmp folders; -> (torch hub checkpoints dir, our cache)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MPANET_TF_HOME", str(tmp_path / "ours"))
    return tmp_path / "torch" / "hub" / "checkpoints", tmp_path / "ours"


@pytest.fixture
def offline(monkeypatch):
    """Any network access fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected network access {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def tiny_torchvision_state():
    """torchvision key names for a 1-1-1-1-block ResNet with 2 channels everywhere, plus fc."""
    rng = np.random.default_rng(1)
    state = {"conv1.weight": rng.normal(size=(2, 3, 7, 7)).astype(np.float32)}
    bn = lambda name: {f"{name}.weight": rng.normal(size=2).astype(np.float32),  # noqa: E731
                       f"{name}.bias": rng.normal(size=2).astype(np.float32),
                       f"{name}.running_mean": rng.normal(size=2).astype(np.float32),
                       f"{name}.running_var": rng.uniform(0.5, 1, size=2).astype(np.float32),
                       f"{name}.num_batches_tracked": np.array(100, np.int64)}
    state.update(bn("bn1"))
    for stage in (1, 2, 3, 4):
        for j, k in ((1, 1), (2, 3), (3, 1)):
            state[f"layer{stage}.0.conv{j}.weight"] = rng.normal(size=(2, 2, k, k)).astype(
                np.float32)
            state.update(bn(f"layer{stage}.0.bn{j}"))
        state[f"layer{stage}.0.downsample.0.weight"] = rng.normal(size=(2, 2, 1, 1)).astype(
            np.float32)
        state.update(bn(f"layer{stage}.0.downsample.1"))
    state["fc.weight"] = rng.normal(size=(10, 2)).astype(np.float32)
    state["fc.bias"] = np.zeros(10, np.float32)
    return state


def weights_file(folder, state=None):
    """Write a torchvision-layout file named after its own hash: resnet50-<sha256[:8]>.pth."""
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / "scratch.pth"
    save_state_dict(scratch, state or tiny_torchvision_state())
    digest = hashlib.sha256(scratch.read_bytes()).hexdigest()
    path = folder / f"resnet50-{digest[:8]}.pth"
    scratch.rename(path)
    return path, digest


def test_none_touches_nothing(homes, offline):
    assert resolve_backbone_weights("none") == (None, None)
    assert resolve_backbone_weights("None", download=True) == (None, None)


def test_explicit_path_and_missing_path(tmp_path, offline):
    path, digest = weights_file(tmp_path / "mine")
    assert resolve_backbone_weights(str(path)) == (path, digest)
    with pytest.raises(CheckpointError, match="nope.pth does not exist") as caught:
        resolve_backbone_weights(str(tmp_path / "nope.pth"))
    assert "--backbone-weights none" in str(caught.value)


@pytest.mark.parametrize("where", ["torch", "ours"])
def test_cached_file_is_found_verified_and_readable(homes, offline, where):
    folder = homes[0] if where == "torch" else homes[1]
    path, digest = weights_file(folder)
    found, found_digest = resolve_backbone_weights("imagenet", filename=path.name)
    assert (found, found_digest) == (path, digest)
    state = tiny_torchvision_state()
    loaded = load_state_dict(found)
    assert list(loaded) == list(state)
    np.testing.assert_array_equal(loaded["layer3.0.conv2.weight"], state["layer3.0.conv2.weight"])


def test_torch_home_defaults_follow_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("MPANET_TF_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert imagenet.torch_hub_checkpoint_dir() == tmp_path / "xdg" / "torch" / "hub" / "checkpoints"
    assert imagenet.cache_dir() == tmp_path / "xdg" / "mpanet_tf"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert imagenet.cache_dir() == tmp_path / "home" / ".cache" / "mpanet_tf"


def test_cached_hash_mismatch_is_refused(homes, offline):
    homes[0].mkdir(parents=True)
    bad = homes[0] / "resnet50-deadbeef.pth"
    bad.write_bytes(b"not the weights")
    assert not hashlib.sha256(b"not the weights").hexdigest().startswith("deadbeef")
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_backbone_weights("imagenet", filename=bad.name)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message and "delete it" in message


def assert_unavailable_message(message, filename, homes):
    assert "\n" not in message and filename in message
    assert str(homes[0]) in message and str(homes[1]) in message
    assert "--backbone-weights PATH" in message and "--backbone-weights none" in message


def test_offline_gives_one_line_with_the_alternatives(homes, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_backbone_weights("imagenet", progress=False)
    assert_unavailable_message(str(caught.value), RESNET50_FILENAME, homes)
    assert "name resolution" in str(caught.value)
    assert not homes[1].exists() or not any(homes[1].iterdir())


def test_refused_connection_gives_the_same_error(homes):
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_backbone_weights("imagenet", url="http://127.0.0.1:9/resnet50-19c8e357.pth",
                                 progress=False, timeout=5)
    assert_unavailable_message(str(caught.value), RESNET50_FILENAME, homes)


def test_download_disabled(homes, offline):
    with pytest.raises(WeightsUnavailableError, match="downloading is disabled") as caught:
        resolve_backbone_weights("imagenet", download=False)
    assert_unavailable_message(str(caught.value), RESNET50_FILENAME, homes)


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server for tmp_path/served; -> (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_verifies_renames_and_is_then_cached(homes, http_folder, monkeypatch):
    folder, base = http_folder
    served, digest = weights_file(folder)
    found, found_digest = resolve_backbone_weights("imagenet", url=f"{base}/{served.name}",
                                                   progress=False)
    assert found == homes[1] / served.name and found_digest == digest
    assert found.read_bytes() == served.read_bytes()
    assert [p.name for p in homes[1].iterdir()] == [served.name]  # no partial file left
    served.unlink()  # second call: from the cache, no network
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("network"))
    assert resolve_backbone_weights("imagenet", url=f"{base}/{served.name}") == (found, digest)


def test_download_with_wrong_hash_keeps_nothing(homes, http_folder):
    folder, base = http_folder
    served, _ = weights_file(folder)
    shutil.copy(served, folder / "resnet50-00000000.pth")
    with pytest.raises(WeightsUnavailableError) as caught:
        resolve_backbone_weights("imagenet", url=f"{base}/resnet50-00000000.pth", progress=False)
    assert "00000000" in str(caught.value) and "\n" not in str(caught.value)
    assert not homes[1].exists() or not any(homes[1].iterdir())


def test_http_404_is_unavailable(homes, http_folder):
    _, base = http_folder
    with pytest.raises(WeightsUnavailableError, match="HTTP 404"):
        resolve_backbone_weights("imagenet", url=f"{base}/resnet50-12345678.pth", progress=False)


class FakeLayer:
    def __init__(self, **shapes):
        for attr, shape in shapes.items():
            setattr(self, attr, None if shape is None else FakeVariable(shape))


class FakeVariable:
    def __init__(self, shape):
        self.shape, self.dtype, self.value = tuple(shape), "float32", None

    def assign(self, value):
        self.value = np.array(value)


def test_cached_imagenet_file_fills_a_torchvision_named_backbone(homes, offline):
    """resolve -> load_state_dict -> resnet_torch_mapping -> apply_state_dict, strict."""
    path, digest = weights_file(homes[1])
    state = tiny_torchvision_state()
    layers = {}

    def get_layer(name):
        key = name.replace("_", ".")  # layer2_0_conv2 -> layer2.0.conv2
        if f"{key}.weight" in state and state[f"{key}.weight"].ndim == 4:
            o, i, kh, kw = state[f"{key}.weight"].shape
            layers[name] = FakeLayer(kernel=(kh, kw, i, o), bias=None)
        else:
            layers[name] = FakeLayer(gamma=(2,), beta=(2,), moving_mean=(2,),
                                     moving_variance=(2,))
        return layers[name]

    found, found_digest = resolve_backbone_weights("imagenet", filename=path.name)
    assert (found, found_digest) == (path, digest)
    mapping = resnet_torch_mapping(get_layer, blocks=BLOCKS)
    report = apply_state_dict(load_state_dict(found), mapping, source=str(found))
    assert len(report.loaded) == 5 + 4 * 15 + 4 * 5 and report.complete
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith("fc.")
                                            or k.endswith("num_batches_tracked"))
    np.testing.assert_array_equal(layers["layer2_0_conv2"].kernel.value,
                                  state["layer2.0.conv2.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(layers["layer4_0_downsample_1"].moving_variance.value,
                                  state["layer4.0.downsample.1.running_var"])
