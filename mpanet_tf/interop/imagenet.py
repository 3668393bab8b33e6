"""Find, download and verify torchvision's ImageNet ResNet-50 weights (design.md §1.1, §9 decision 2).

The backbone starts from torchvision's ``resnet50-19c8e357.pth`` (the file the authors load,
non-strictly: ``fc.*`` is left out). ``resolve_backbone_weights`` looks for it where torch keeps
it (``$TORCH_HOME/hub/checkpoints``, default ``$XDG_CACHE_HOME/torch`` or ``~/.cache/torch``) and in
our own cache (``$MPANET_TF_HOME``, default ``$XDG_CACHE_HOME/mpanet_tf`` or
``~/.cache/mpanet_tf``), else downloads it into our cache. As in torch.hub, the file name carries
the first hex digits of the file's SHA-256 (``19c8e357``), checked for downloaded and cached
files alike.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from mpanet_tf.errors import CheckpointError, WeightsUnavailableError
from mpanet_tf.io.atomic import atomic_open

RESNET50_FILENAME = "resnet50-19c8e357.pth"
RESNET50_URL = "https://download.pytorch.org/models/resnet50-19c8e357.pth"
DOWNLOAD_TIMEOUT_S = 30.0
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,64})\.")
_CHUNK = 1 << 20


def torch_hub_checkpoint_dir() -> Path:
    """torch.hub's checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (torch's own defaults)."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        torch_home = os.path.join(cache, "torch")
    return Path(torch_home).expanduser() / "hub" / "checkpoints"


def cache_dir() -> Path:
    """Our download folder: ``$MPANET_TF_HOME``, else ``$XDG_CACHE_HOME/mpanet_tf`` or
    ``~/.cache/mpanet_tf``."""
    home = os.environ.get("MPANET_TF_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        home = os.path.join(cache, "mpanet_tf")
    return Path(home).expanduser()


def sha256_of(path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_prefix(filename: str) -> str:
    match = _HASH_IN_NAME.search(filename)
    if match is None:
        raise ValueError(f"weights file name {filename!r} carries no '-<sha256 prefix>.' part")
    return match.group(1)


def _where_to(filename: str) -> str:
    return (f"put {filename} in {torch_hub_checkpoint_dir()} or {cache_dir()}, or pass "
            "--backbone-weights PATH, or --backbone-weights none to start from random weights")


def _verified(path: Path, prefix: str) -> str:
    digest = sha256_of(path)
    if not digest.startswith(prefix):
        raise WeightsUnavailableError(
            f"{path} has SHA-256 {digest[:12]}..., not the {prefix} its name promises (corrupt or "
            f"partial download); delete it and try again, or {_where_to(path.name)}")
    return digest


def _download(url: str, target: Path, prefix: str, progress: bool, timeout: float) -> str:
    """Stream ``url`` into a temporary file beside ``target``, check the hash, rename. -> sha256."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    with atomic_open(target, "wb") as handle, urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length") if response.headers else None
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                  unit_divisor=1024, desc=target.name, disable=not progress) as bar:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
        if not digest.hexdigest().startswith(prefix):  # raised inside: the partial file goes
            raise WeightsUnavailableError(
                f"the download of {url} has SHA-256 {digest.hexdigest()[:12]}..., not {prefix}; "
                f"nothing was kept; {_where_to(target.name)}")
    return digest.hexdigest()


def resolve_backbone_weights(spec: str, *, download: bool = True, progress: bool = True,
                             url: str = RESNET50_URL, filename: str | None = None,
                             timeout: float = DOWNLOAD_TIMEOUT_S) -> tuple[Path | None, str | None]:
    """``--backbone-weights`` value -> (weights file, its SHA-256 hex digest).

    Args:
        spec: ``"none"`` (random init; never touches the network or the disk), ``"imagenet"``
            (torchvision's ResNet-50, cached or downloaded), or the path of a ``.pth`` file.
        download: allow fetching ``url`` when no cached copy exists.
        progress: show a tqdm bar while downloading.
        url: where to download from; ``filename`` (default: the URL's last part) is the cached
            name, whose ``-<hex>.`` part is the expected SHA-256 prefix.
        timeout: seconds for the connection and each read.

    Raises:
        CheckpointError: ``spec`` is a path that does not exist.
        WeightsUnavailableError: not cached and cannot be downloaded (offline, HTTP error,
            download disabled), or a hash mismatch; one line with the file, the cache folders and
            the ``--backbone-weights PATH`` / ``none`` alternatives.
    """
    if spec.strip().lower() == "none":
        return None, None
    if spec.strip().lower() != "imagenet":
        path = Path(spec).expanduser()
        if not path.is_file():  # a device or pipe (/dev/zero, a FIFO) is never read
            what = "is not a regular file" if path.exists() else "does not exist"
            raise CheckpointError(f"backbone weights file {path} {what}; pass an "
                                  "existing .pth file, --backbone-weights imagenet or "
                                  "--backbone-weights none")
        return path, sha256_of(path)
    filename = filename or url.rstrip("/").rsplit("/", 1)[-1]
    prefix = _hash_prefix(filename)
    for folder in (torch_hub_checkpoint_dir(), cache_dir()):
        candidate = folder / filename
        if candidate.is_file():
            return candidate, _verified(candidate, prefix)
    target = cache_dir() / filename
    if not download:
        raise WeightsUnavailableError(f"ImageNet weights {filename} are not cached and downloading "
                                      f"is disabled; {_where_to(filename)}")
    try:
        return target, _download(url, target, prefix, progress, timeout)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {reason}"
        detail = " ".join(str(reason).split())[:80]
        raise WeightsUnavailableError(f"cannot download ImageNet weights {filename} from {url} "
                                      f"({detail}); {_where_to(filename)}") from None
