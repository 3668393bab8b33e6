"""Writing PyTorch checkpoints that torch.load reads, without torch (design.md §9 decision 2).

Independent expectations: CPython's own pickler driven by stand-in torch modules
(tests/interop/torch_fakes.py) must produce the same data.pkl bytes; the zip and legacy layouts
are parsed by hand with zipfile, struct and pickletools.
"""

from __future__ import annotations

import pickle
import struct
import zipfile

import numpy as np
import pytest

from tests.interop.torch_fakes import MAGIC, fake_torch_pickle, split_legacy, views_example
from tests.interop.torch_writer import save_state_dict


@pytest.mark.parametrize("legacy", [False, True])
def test_data_pickle_matches_cpythons_pickler_byte_for_byte(tmp_path, legacy):
    tensors, layout, _ = views_example()
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors, legacy=legacy)
    if legacy:
        ours = split_legacy(path.read_bytes())[0][3]
    else:
        with zipfile.ZipFile(path) as archive:
            ours = archive.read("archive/data.pkl")
    assert ours == fake_torch_pickle(layout, legacy=legacy)


def test_zip_layout_is_torchs(tmp_path):
    tensors, _, storages = views_example()
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == [
            "archive/data.pkl", "archive/byteorder", "archive/data/0", "archive/data/1",
            "archive/data/2", "archive/version"]
        assert archive.read("archive/version") == b"3\n"
        assert archive.read("archive/byteorder") == b"little"
        for key, data in storages.items():  # the three views share storage 0: the whole base
            assert archive.read(f"archive/data/{key}") == data
    for info in infos:
        assert info.compress_type == zipfile.ZIP_STORED
        start = info.header_offset  # local header: 30 bytes, name, extra field, then the data
        name_len, extra_len = struct.unpack("<HH", raw[start + 26:start + 30])
        extra = raw[start + 30 + name_len:start + 30 + name_len + extra_len]
        assert extra[:2] == b"FB" and set(extra[4:]) <= {ord("Z")}
        assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0  # aligned record data


def test_legacy_layout_is_torchs(tmp_path):
    tensors, _, storages = views_example()
    path = tmp_path / "w.pth"
    save_state_dict(path, tensors, legacy=True)
    pickles, tail = split_legacy(path.read_bytes())
    assert pickle.loads(pickles[0]) == MAGIC
    assert pickle.loads(pickles[1]) == 1001
    assert pickle.loads(pickles[2]) == {"protocol_version": 1001, "little_endian": True,
                                        "type_sizes": {"short": 2, "int": 4, "long": 4}}
    keys = pickle.loads(pickles[4])
    assert keys == sorted(storages)
    expected_tail = b"".join(struct.pack("<q", n) + storages[k]
                             for k, n in zip(keys, (24, 6, 1)))
    assert tail == expected_tail


def test_writer_rejects_unstorable_dtype(tmp_path):
    with pytest.raises(TypeError, match="object"):
        save_state_dict(tmp_path / "w.pth", {"x": np.array([None, 1])})
