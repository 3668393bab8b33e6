"""Security of ``mpanet-tf serve``: the bind rule, the bearer token on every protected endpoint,
and no URL reaching a file that is not a gallery entry (``..``, encoded slashes, absolute paths,
symlinks in the gallery folder)."""

from __future__ import annotations

import http.client
import io
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tests.export.test_savedmodel import write_images
from tests.serve.conftest import Server

TOKEN = "s3cret-token-for-tests-0123456789"
SECRET = b"TOP-SECRET root:x:0:0"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, tiny_run):
    """A server with a token over a gallery folder holding 3 pictures and 2 symlinks leading out of
    it (to a picture and to a text file); the index lists all 5."""
    from mpanet_tf.index import index_from_features
    from mpanet_tf.index.fingerprint import model_fingerprint

    root = tmp_path_factory.mktemp("serve-guarded")
    gallery, outside = root / "gallery", root / "outside"
    pictures = write_images(gallery, sizes=((96, 48),) * 3, seed=21)
    secret_picture = write_images(outside, sizes=((96, 48),), seed=22)[0]
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(secret_picture, gallery / "link_out.png")
    os.symlink(outside / "secret.txt", gallery / "link_text.png")
    paths = [*pictures, gallery / "link_out.png", gallery / "link_text.png"]
    features = np.random.default_rng(0).normal(size=(len(paths), 14336))
    index = index_from_features(root / "g.mpidx", features, [{"path": str(p)} for p in paths],
                                model_fingerprint(tiny_run), source={"kind": "folder", "path": str(gallery)}).path
    (root / "token").write_text(TOKEN + "\n")
    server = Server(root, tiny_run, index, "--token-file", str(root / "token"), token=TOKEN)
    yield {"server": server, "pictures": pictures, "secret_picture": secret_picture}
    assert server.stop() == 0


def test_a_non_loopback_bind_needs_a_token_or_an_explicit_opt_out(tmp_path):
    from mpanet_tf.cli.main import cli

    short = tmp_path / "short"
    short.write_text("abc")
    for args, words in ((["--host", "0.0.0.0"], "refusing to serve person images on 0.0.0.0 without authentication"),
                        (["--host", "192.0.2.7", "--port", "9"], "--token-file FILE"),
                        (["--host", "0.0.0.0", "--token-file", str(short)], "at least 16 characters"),
                        (["--token-file", str(tmp_path / "missing")], "cannot read --token-file"),
                        (["--token-file", str(short), "--insecure-no-auth"], "not both")):
        result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "no-model"), "--index",
                                          str(tmp_path / "no-index"), *args])
        assert result.exit_code == 2, result.output
        assert words in result.output and len(result.output.strip().splitlines()) == 1, result.output


def test_every_protected_endpoint_needs_the_token(guarded):
    server = guarded["server"]
    picture = guarded["pictures"][0].read_bytes()
    calls = [("POST", "/v1/embed"), ("POST", "/v1/search"), ("POST", "/v1/gallery"), ("GET", "/v1/gallery"),
             ("GET", "/v1/gallery/0/thumbnail"), ("GET", "/metrics"), ("GET", "/v1/gallery/7/thumbnail")]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-the-right-length-12"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
                        {"Authorization": f"Bearer {TOKEN[:-1]}"}):
            answer = server.get(path, token="", headers=headers) if method == "GET" else server.post(
                path, token="", headers=headers, data=picture)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert "token" in answer.json()["error"]
    assert server.get("/v1/gallery").json()["count"] == 5  # the refused add added nothing
    assert server.post("/v1/search?top_k=2", data=picture).status_code == 200
    assert server.get("/metrics").status_code == 200
    for open_path in ("/healthz", "/", "/static/app.js"):
        assert server.get(open_path, token="").status_code == 200


def _raw_get(server, path: str) -> tuple[int, bytes]:
    """GET ``path`` byte for byte (no client-side normalisation of ``..`` or ``%2F``)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    connection.putheader("Authorization", f"Bearer {TOKEN}")
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body


def test_no_url_reaches_a_file_that_is_not_a_gallery_entry(guarded):
    from PIL import Image

    server = guarded["server"]
    secret_picture = guarded["secret_picture"].read_bytes()
    attempts = [
        "/v1/gallery/../../../../etc/passwd", "/v1/gallery/0/../../../../etc/passwd",
        "/v1/gallery/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail", "/v1/gallery/..%2F..%2Foutside%2Fsecret.txt/thumbnail",
        "/v1/gallery/%2Fetc%2Fpasswd/thumbnail", "/v1/gallery//etc/passwd/thumbnail", "//etc/passwd",
        "/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fapp.py", "/static//etc/passwd", "/v1/gallery/-1/thumbnail", "/v1/gallery/5/thumbnail",
        "/v1/gallery/99999999999999999999/thumbnail", "/v1/gallery/1.0/thumbnail", "/v1/gallery/0x1/thumbnail",
        "/v1/gallery/3/thumbnail",  # a symlink in the gallery folder to a picture outside it
        "/v1/gallery/4/thumbnail",  # a symlink in the gallery folder to a text file
        "/etc/passwd", "/v1/thumbnail?path=/etc/passwd",
    ]
    for path in attempts:
        status, body = _raw_get(server, path)
        assert status in (400, 404, 405), (path, status, body[:80])
        assert b"root:" not in body and SECRET not in body and secret_picture[:64] not in body, path
    # the real entries are served, as re-encoded JPEG thumbnails
    for entry_id in range(3):
        status, body = _raw_get(server, f"/v1/gallery/{entry_id}/thumbnail?path=/etc/passwd")
        assert status == 200
        with Image.open(io.BytesIO(body)) as picture:
            assert picture.format == "JPEG" and picture.size == (48, 96)
