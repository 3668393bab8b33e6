"""What keeps the service safe to expose: the bind rule, the bearer token, the upload checks.

- :func:`check_bind`: a non-loopback address needs ``--token-file`` or ``--insecure-no-auth``.
- :class:`TokenGate`: every path but ``/healthz`` and the page (``/``, ``/static/*``: HTML, JS and
  CSS, no gallery data; the page asks for the token and sends it with every API call) needs ``Authorization: Bearer <token>``,
  compared in constant time (``hmac.compare_digest``); otherwise 401.
- :class:`BodyLimit`: a request body larger than ``--max-upload-mb`` gets 413, whether its
  ``Content-Length`` says so or its stream runs past the limit (the rest is not read).
- :func:`check_image`: an upload is an image by its first bytes (JPEG/PNG/BMP/GIF), never by its
  name or content type; the decoder then refuses a header declaring more than
  :data:`mpanet_tf.data.images.MAX_PIXELS` pixels before allocating them (decompression bombs).
- :func:`gallery_file`: the file behind a thumbnail must be an index entry whose real path (links
  resolved) lies inside one of the gallery's folders.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from pathlib import Path

from starlette.exceptions import HTTPException

from mpanet_tf.data.images import image_suffix
from mpanet_tf.errors import ConfigError

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token_file, insecure_no_auth: bool) -> None:
    """Refuse (one line) a non-loopback ``host`` without a token file or ``--insecure-no-auth``."""
    if token_file is not None and insecure_no_auth:
        raise ConfigError("pass either --token-file or --insecure-no-auth, not both")
    if not is_loopback(host) and token_file is None and not insecure_no_auth:
        raise ConfigError(f"refusing to serve person images on {host} without authentication; pass "
                          "--token-file FILE (clients send Authorization: Bearer <token>) or, on a trusted "
                          "network only, --insecure-no-auth")


def read_token(path) -> str:
    """The token in ``path`` (surrounding whitespace stripped); at least 16 characters."""
    try:
        token = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read --token-file {path} ({getattr(error, 'strerror', None) or error}); "
                          "pass a text file holding the token") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file {path} must hold one token of at least 16 characters without spaces; "
                          "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE")
    return token


async def _send_json(send, status: int, payload: dict, headers=()) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class TokenGate:
    """ASGI middleware: 401 JSON for a request without the right bearer token (module docstring)."""

    def __init__(self, app, token: str | None):
        self.app, self.token = app, token.encode() if token else None

    def _open(self, path: str) -> bool:
        return path in ("/healthz", "/") or path.startswith("/static/")

    async def __call__(self, scope, receive, send):
        if self.token is None or scope["type"] != "http" or self._open(scope["path"]):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, value = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
            return await _send_json(send, 401, {"error": "missing or wrong token; send Authorization: Bearer <token>"},
                                    [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 JSON for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    def _message(self) -> str:
        return (f"the upload is larger than the limit of {self.limit / 2**20:g} MB; send a smaller image "
                "(or start the service with a larger --max-upload-mb)")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            if not declared.isdigit():
                return await _send_json(send, 400, {"error": "Content-Length is not a number"})
            return await _send_json(send, 413, {"error": self._message()})
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self._message())
            return message

        return await self.app(scope, limited, send)


def check_image(data: bytes, name: str) -> None:
    """Refuse (415) bytes that do not start as a JPEG, PNG, BMP or GIF file does."""
    if not data:
        raise HTTPException(400, f"{name} is empty; send the image file's bytes")
    if image_suffix(data) is None:
        raise HTTPException(415, f"{name} is not a JPEG, PNG, BMP or GIF image (checked by its bytes, not its "
                                 "name or content type); send an image file")


def source_roots(sources: list[dict]) -> list[Path]:
    """The folders a gallery's images were taken from (its ``sources``: a folder, or a dataset root)."""
    roots = []
    for source in sources:
        folder = source.get("path") if source.get("kind") == "folder" else source.get("root")
        if folder:
            roots.append(Path(folder))
    return roots


def gallery_file(entry: dict | None, roots: list[Path]) -> Path:
    """The real path of a gallery entry's image, when it lies inside one of ``roots``; 404 otherwise."""
    if entry is None:
        raise HTTPException(404, "no gallery entry with this id")
    real = Path(os.path.realpath(entry["path"]))
    for root in roots:
        root = Path(os.path.realpath(root))
        if real.is_relative_to(root) and real.is_file():
            return real
    raise HTTPException(404, "this entry's image is not a file inside the gallery's folders")
