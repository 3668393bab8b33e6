"""Manifest reader: records, the person/camera numbering, counts, one line per malformed row."""

from __future__ import annotations

import pathlib

import pytest

from mpanet_tf.data.manifest import ManifestDataset, read_manifest
from mpanet_tf.errors import DatasetError

HEADER = "path,person,camera,modality,split"
ROWS = [
    "img/a1.jpg,alice,gate,visible,train",
    "img/a2.jpg,alice,yard,infrared,train",
    "img/b1.jpg,10,gate,visible,train",
    "img/b2.jpg,10,Gate,infrared,train",
    "img/b3.jpg,2,gate,visible,train",
    "img/b4.jpg,2,yard,infrared,train",
    "img/q1.jpg,carol,gate,infrared,query",
    "img/g1.jpg,carol,yard,visible,gallery",
    "img/g2.jpg,dave,yard,visible,gallery",
    "img/g3.jpg,carol,gate,visible,gallery",
]


def write(tmp_path: pathlib.Path, rows=ROWS, header=HEADER, name="data.csv") -> pathlib.Path:
    for row in rows:
        path = row.split(",")[0].strip('"')
        if path and not path.startswith("/"):
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_bytes(b"img")
    manifest = tmp_path / name
    manifest.write_text("\n".join([header] + list(rows)) + "\n", encoding="utf-8")
    return manifest


def test_records_numbering_and_counts(tmp_path):
    data = ManifestDataset(write(tmp_path))
    assert data.persons == ["2", "10", "alice", "carol", "dave"]          # numbers by value, then strings
    assert data.cameras == ["Gate", "gate", "yard"]
    train = data.train_records()
    assert [(r.relpath, r.person_id, r.camera, r.infrared, r.label) for r in train] == [
        ("img/a1.jpg", 3, 2, False, 2), ("img/a2.jpg", 3, 3, True, 2), ("img/b1.jpg", 2, 2, False, 1),
        ("img/b2.jpg", 2, 1, True, 1), ("img/b3.jpg", 1, 2, False, 0), ("img/b4.jpg", 1, 3, True, 0)]
    assert all(pathlib.Path(r.path) == tmp_path / r.relpath for r in train)
    query, gallery = data.query_records(), data.gallery_records()
    assert [(r.person_id, r.camera, r.infrared, r.label) for r in query] == [(4, 2, True, -1)]
    assert [r.person_id for r in gallery] == [4, 5, 4]
    assert data.person_name(4) == "carol" and data.camera_name(3) == "yard"
    assert [r.relpath for r in data.all_records()] == [row.split(",")[0] for row in ROWS]
    assert data.counts() == {"train_ids": 3, "train_visible": 3, "train_infrared": 3, "test_ids": 2,
                             "query_visible": 0, "query_infrared": 1, "gallery_visible": 3,
                             "gallery_infrared": 0, "cameras": 3}


def test_quoting_extra_columns_column_order_and_blank_lines(tmp_path):
    rows = ['split,modality,camera,person,path,note',
            'train,visible,"cam, 1",p1,img/x1.jpg,hello',
            '', 'train,INFRARED,cam 2,p1,img/x2.jpg,', 'query,infrared,cam 2,p2,img\\x3.jpg,',
            'gallery,visible,"cam, 1",p2,img/./x4.jpg,']
    for name in ("x1", "x2", "x3", "x4"):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / f"{name}.jpg").write_bytes(b"img")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = ManifestDataset(manifest)
    assert data.cameras == ["cam 2", "cam, 1"]
    assert [r.relpath for r in data.all_records()] == ["img/x1.jpg", "img/x2.jpg", "img/x3.jpg", "img/x4.jpg"]
    assert [row.line for row in read_manifest(manifest)] == [2, 4, 5, 6]


def replace(index, row):
    rows = list(ROWS)
    rows[index] = row
    return rows


@pytest.mark.parametrize("rows, header, message", [
    (ROWS, "path,person,camera,split", r"data\.csv:1 header lacks column modality"),
    (ROWS, "path,person,camera,modality,split,camera", r"data\.csv:1 header names column camera twice"),
    (replace(2, "img/b1.jpg,10,gate,rgb,train"), HEADER, r"data\.csv:4 has unknown modality 'rgb'; use visible or infrared"),
    (replace(2, "img/b1.jpg,10,gate,visible,test"), HEADER, r"data\.csv:4 has unknown split 'test'"),
    (replace(2, "img/b1.jpg,10,gate,visible"), HEADER, r"data\.csv:4 has 4 fields but the header has 5"),
    (replace(2, "img/b1.jpg,,gate,visible,train"), HEADER, r"data\.csv:4 has an empty person"),
    (ROWS + ["img/a1.jpg,alice,gate,visible,train"], HEADER, r"data\.csv:12 repeats path 'img/a1\.jpg' of line 2"),
    (ROWS + ["img/../img/a1.jpg,alice,gate,visible,train"], HEADER, r"data\.csv:12 repeats path"),
    (ROWS + ["/abs/x.jpg,alice,gate,visible,train"], HEADER, r"data\.csv:12 has an absolute path"),
    (ROWS[:5] + ROWS[6:], HEADER, r"data\.csv:6 training person '2' has visible images only; add infrared"),
    (ROWS + ["img/q9.jpg,erin,gate,infrared,query"], HEADER, r"data\.csv:12 query person 'erin' has no gallery image"),
    (ROWS + ["img/g9.jpg,alice,gate,visible,gallery"], HEADER, r"data\.csv:12 person 'alice' is in the gallery and in training \(line 2\)"),
    ([], HEADER, r"lists no images"),
])
def test_malformed_rows_are_one_line_naming_file_and_line(tmp_path, rows, header, message):
    manifest = write(tmp_path, rows, header)
    with pytest.raises(DatasetError, match=message) as error:
        ManifestDataset(manifest)
    assert "\n" not in str(error.value)


def test_missing_file_non_utf8_and_bad_csv(tmp_path):
    manifest = write(tmp_path)
    (tmp_path / "img" / "b2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"data\.csv:5: image .*b2\.jpg does not exist"):
        ManifestDataset(manifest)
    bad = tmp_path / "latin.csv"
    bad.write_bytes(("\n".join([HEADER] + ROWS[:3]) + "\n").encode() + "img/é.jpg,x,y,visible,train\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin\.csv:5 is not UTF-8 text"):
        ManifestDataset(bad)
    quote = tmp_path / "quote.csv"
    quote.write_text(HEADER + '\n"img/a1.jpg,alice,gate,visible,train\n')
    with pytest.raises(DatasetError, match=r"quote\.csv"):
        ManifestDataset(quote)
    with pytest.raises(DatasetError, match=r"nothing\.csv does not exist; write one with `mpanet-tf manifest"):
        ManifestDataset(tmp_path / "nothing.csv")
    with pytest.raises(DatasetError, match=r"is a folder; pass the CSV file"):
        ManifestDataset(tmp_path)


def test_split_without_rows(tmp_path):
    data = ManifestDataset(write(tmp_path, ROWS[:6]))
    with pytest.raises(DatasetError, match="no query rows; add rows with split=query"):
        data.query_records()
    only_test = ManifestDataset(write(tmp_path, ROWS[6:], name="test.csv"))
    with pytest.raises(DatasetError, match="no training rows"):
        only_test.train_records()
