"""The one way to find bad images: each distinct file decoded once, every bad one named with its reason."""

from __future__ import annotations

import pytest
from PIL import Image

from mpanet_tf.data.bad_images import bad_image_errors, find_bad_images, image_error, locate_bad_image
from mpanet_tf.data.images import UNDECODABLE


@pytest.fixture()
def files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (16, 32), (10, 200, 30)).save(good)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"no image here " * 4)
    truncated = tmp_path / "truncated.jpg"
    Image.new("RGB", (16, 32), (90, 20, 30)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    return {"good": str(good), "garbage": str(garbage), "truncated": str(truncated),
            "missing": str(tmp_path / "missing.png")}


def test_every_bad_file_is_found_once_with_its_reason(files):
    paths = [files["good"], files["garbage"], files["missing"], files["garbage"], files["truncated"]]
    bad = sorted([files["garbage"], files["missing"], files["truncated"]])
    assert find_bad_images(paths, progress=False) == bad
    errors = bad_image_errors(paths, progress=False)
    assert [error.path for error in errors] == bad
    by_path = {error.path: str(error) for error in errors}
    assert UNDECODABLE in by_path[files["garbage"]] and UNDECODABLE in by_path[files["truncated"]]
    assert "No such file" in by_path[files["missing"]]
    assert image_error(files["good"]) is None
    assert find_bad_images([], progress=False) == []


def test_locate_checks_the_candidates_first(files):
    records = [files["good"], files["garbage"], files["truncated"]]
    assert locate_bad_image(records, candidates=[0, 2]).path == files["truncated"]
    assert locate_bad_image(records, candidates=[0]).path == files["garbage"]  # then every record
    assert locate_bad_image([files["good"]]) is None
