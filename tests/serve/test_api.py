"""Every endpoint of a real ``mpanet-tf serve`` (uvicorn on a free loopback port) against the
library: the ranking ``search --index`` prints, the embedder's output, adds found by the next
search, filters as a numpy ranking of the filtered rows, concurrency without loss, metrics."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from click.testing import CliRunner

from tests.serve.conftest import Server, copy_index, image_files


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_run, built_index):
    folder = tmp_path_factory.mktemp("serve-api")
    index = copy_index(built_index, folder)
    server = Server(folder, tiny_run, index, "--max-upload-mb", "1")
    yield {"server": server, "index": index, "run": tiny_run}
    assert server.stop() == 0


def _printed(results) -> list[str]:
    """The API's results as `search` prints them (rank, distance, path)."""
    return [f"{r['rank']:>4}  {r['distance']:8.4f}  {r['source']}" for r in results]


def _png(seed: int, size=(96, 48)) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_search_returns_the_ranking_search_index_prints(api, synth_tree):
    from mpanet_tf.cli.main import cli

    server, count = api["server"], api["server"].get("/v1/gallery").json()["count"]
    for query in (synth_tree / "cam3" / "0001" / "0001.jpg", synth_tree / "cam1" / "0002" / "0002.jpg"):
        answer = server.post(f"/v1/search?top_k={count}", data=query.read_bytes())
        assert answer.status_code == 200, answer.text
        printed = CliRunner().invoke(cli, ["search", "--model", str(api["run"]), "--index", str(api["index"]),
                                           "--query", str(query), "--top-k", str(count)])
        assert printed.exit_code == 0, printed.output
        lines = [line for line in printed.output.splitlines() if line.strip()[:1].isdigit()]
        assert _printed(answer.json()["results"]) == lines and len(lines) == count
        assert answer.json()["results"][0]["source"] == str(query)


def test_embed_equals_the_embedders_output(api, embedder, synth_tree):
    from mpanet_tf.data.images import load_image

    query = synth_tree / "cam6" / "0003" / "0001.jpg"
    answer = api["server"].post("/v1/embed", files={"image": ("anything.txt", query.read_bytes(), "text/plain")})
    assert answer.status_code == 200, answer.text
    expected = embedder(load_image(query, embedder.image_size)[None])[0]
    assert answer.json()["dim"] == expected.size
    np.testing.assert_array_equal(np.asarray(answer.json()["embedding"], np.float32), expected)


def test_filters_rank_only_the_matching_entries(api, synth_tree):
    """camera/modality filters: the numpy ranking (stable sort of ||q/|q| - g||) of the rows that pass."""
    from mpanet_tf.index import GalleryIndex

    server = api["server"]
    query = image_files(synth_tree / "cam3")[2].read_bytes()
    vector = np.asarray(server.post("/v1/embed", data=query).json()["embedding"], np.float64)
    index = GalleryIndex.open(api["index"])
    rows = np.asarray(index.embeddings(), np.float64)
    distances = np.linalg.norm(rows - vector / np.linalg.norm(vector), axis=1)
    for params, keep in (({"modality": "visible"}, lambda e: e["modality"] == "visible"),
                         ({"camera": "1,4"}, lambda e: e["camera"] in (1, 4)),
                         ({"camera": ["2", "5"], "modality": "visible"}, lambda e: e["camera"] in (2, 5))):
        selected = np.array([i for i, e in enumerate(index.entries) if keep(e)])
        expected = selected[np.argsort(distances[selected], kind="stable")][:5]
        answer = server.post("/v1/search", params={"top_k": 5, **params}, data=query)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["entry_id"] for r in results] == expected.tolist(), params
        np.testing.assert_allclose([r["distance"] for r in results], distances[expected], atol=1e-5)
        assert all(keep({"camera": r["camera"], "modality": r["modality"]}) for r in results)


def test_an_add_is_found_by_the_next_search_and_its_thumbnail_served(api):
    from PIL import Image

    server = api["server"]
    before = server.get("/v1/gallery").json()["count"]
    image = _png(1)
    added = server.post("/v1/gallery", files={"image": ("../../evil name.png", image, "image/png")},
                        data={"person_id": "42", "camera": "gate", "modality": "infrared",
                              "time": "2026-12-02T10:00:00Z"})
    assert added.status_code == 200, added.text
    assert added.json() == {"added": [before], "count": before + 1}
    found = server.post("/v1/search?top_k=1", data=image).json()["results"][0]
    assert found["entry_id"] == before and found["distance"] < 1e-4
    assert (found["person_id"], found["camera"], found["modality"], found["time"]) == (
        42, "gate", "infrared", "2026-12-02T10:00:00.000000+00:00")  # the stored form (data.capture_time.iso_utc)
    # stored under its content's hash in the service's folder, never under the client's name
    import hashlib

    assert found["source"].endswith(f".uploads/{hashlib.sha256(image).hexdigest()}.png")
    thumb = server.get(found["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as picture:
        assert picture.size == (48, 96)
    window = server.post("/v1/search", params={"top_k": 3, "since": "2026-12-02T09:00:00Z",
                                                "until": "2026-12-02T11:00:00+00:00"}, data=image).json()
    assert [r["entry_id"] for r in window["results"]] == [before]  # the only entry with a capture time


def test_concurrent_adds_and_searches_lose_and_duplicate_nothing(api):
    server = api["server"]
    before = server.get("/v1/gallery").json()["count"]
    images = {seed: _png(seed) for seed in range(100, 112)}
    acknowledged, errors = {}, []

    def adder(seeds):
        for seed in seeds:
            answer = server.post("/v1/gallery", data=images[seed], params={"camera": "c9"})
            (acknowledged.__setitem__(seed, answer.json()["added"][0]) if answer.status_code == 200
             else errors.append(answer.text))

    def searcher():
        for seed in range(3):
            answer = server.post("/v1/search?top_k=3", data=images[100 + seed])
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=adder, args=(list(range(100 + 3 * n, 103 + 3 * n)),)) for n in range(4)]
    threads += [threading.Thread(target=searcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(acknowledged.values()) == list(range(before, before + 12))
    assert server.get("/v1/gallery").json()["count"] == before + 12
    for seed, entry_id in acknowledged.items():
        top = server.post("/v1/search?top_k=1&camera=c9", data=images[seed]).json()["results"][0]
        assert top["entry_id"] == entry_id and top["distance"] < 1e-4


def test_healthz_gallery_and_metrics(api):
    server = api["server"]
    count = server.get("/v1/gallery").json()["count"]
    assert server.get("/healthz").json() == {"status": "ok", "entries": count}
    info = server.get("/v1/gallery").json()
    assert set(info["modalities"]) == {"visible", "infrared"} and {"1", "3", "6"} <= set(info["cameras"])
    text = server.get("/metrics").text
    assert f"mpanet_gallery_entries {count}" in text
    searches = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('mpanet_requests_total{endpoint="/v1/search",status="200"}'))
    assert searches >= 10
    assert 'mpanet_request_seconds_count{endpoint="/v1/search"}' in text
    batches = int(next(l for l in text.splitlines() if l.startswith("mpanet_batch_images_count")).split()[1])
    assert 0 < batches
    page = server.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert server.get("/static/app.js").status_code == 200


def test_bad_requests_get_one_line_json_4xx(api, synth_tree):
    server = api["server"]
    jpeg = (synth_tree / "cam1" / "0001" / "0001.jpg").read_bytes()
    cases = {
        "truncated": (server.post("/v1/search", data=jpeg[: len(jpeg) // 2]), 400, "truncated or not an image"),
        "not an image": (server.post("/v1/search", data=b"%PDF-1.4 not a picture", headers={
            "Content-Type": "image/jpeg"}), 415, "checked by its bytes"),
        "empty": (server.post("/v1/embed", data=b""), 400, "exactly one image"),
        "too big": (server.post("/v1/gallery", data=jpeg + b"\0" * (1 << 20)), 413, "limit of 1 MB"),
        "too big, streamed": (server.post("/v1/search", data=iter([jpeg, b"\0" * (1 << 20)])), 413, "limit"),
        "bomb": (server.post("/v1/search", data=_png_header(40000, 40000)), 400, "above the limit"),
        "bad multipart": (server.post("/v1/search", data=b"--x\r\nnonsense",
                                      headers={"Content-Type": "multipart/form-data; boundary=x"}), 400, ""),
        "bad top_k": (server.post("/v1/search?top_k=zero", data=jpeg), 400, "top_k must be an integer"),
        "bad modality": (server.post("/v1/search?modality=thermal", data=jpeg), 400, "visible or infrared"),
        "bad time": (server.post("/v1/search?since=yesterday", data=jpeg), 400, "ISO 8601"),
        "two images": (server.post("/v1/search", files=[("image", jpeg), ("image", jpeg)]), 400, "Too many files"),
        "wrong method": (server.get("/v1/search"), 405, ""),
    }
    for name, (answer, status, words) in cases.items():
        assert answer.status_code == status, (name, answer.status_code, answer.text)
        message = answer.json()["error"]
        assert words in message and "\n" not in message and "Traceback" not in message, (name, message)
    assert server.get("/healthz").status_code == 200


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels of zeros (a few hundred bytes)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def test_search_and_add_images_of_the_tree(api, synth_tree):
    """Every JPEG of the tree finds itself first (entry ids are the index's rows)."""
    from mpanet_tf.index import GalleryIndex

    entries = {e["path"]: i for i, e in enumerate(GalleryIndex.open(api["index"]).entries)}
    for path in image_files(synth_tree)[::9]:
        top = api["server"].post("/v1/search?top_k=1", data=path.read_bytes()).json()["results"][0]
        assert top["entry_id"] == entries[str(path)]
