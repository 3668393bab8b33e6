"""Hand-built LLCM trees for the reader and protocol tests (not made by the generator).

Files are a few bytes each: the reader only lists them, and the protocol tests give every path a
feature computed from the path, so nothing is decoded.
"""

from __future__ import annotations

import pathlib

#: test id -> {modality folder: {camera: number of files}}; uneven cameras, missing folders,
#: id 7 has no infrared cam2 and only one visible camera, id 12 (5 digits would differ) is 4-digit.
TEST_CELLS = {
    3: {"test_vis": {1: 2, 2: 1, 5: 3}, "test_nir": {1: 2, 4: 1}},
    7: {"test_vis": {2: 2}, "test_nir": {2: 1, 6: 2, 9: 1}},
    12: {"test_vis": {1: 1, 3: 2, 9: 2}, "test_nir": {1: 1, 8: 3}},
    25: {"test_vis": {4: 3, 6: 1, 7: 1}, "test_nir": {2: 2, 4: 2, 7: 1}},
    31: {"test_vis": {2: 1, 8: 2}, "test_nir": {5: 3}},
    40: {"test_vis": {1: 1, 2: 1, 3: 1, 9: 1}, "test_nir": {1: 1, 2: 1, 9: 2}},
}
TRAIN_IDS = (1, 2, 5)


def build_llcm_tree(root: pathlib.Path, cells=None, train_ids=TRAIN_IDS) -> pathlib.Path:
    """Write an LLCM tree: training images in the released naming, test folders per ``cells``."""
    cells = TEST_CELLS if cells is None else cells
    root.mkdir(parents=True, exist_ok=True)
    (root / "idx").mkdir(exist_ok=True)
    lists = {"vis": [], "nir": []}
    for label, pid in enumerate(train_ids):
        for tag, cameras in (("vis", (1, 3, 4)), ("nir", (2, 6))):
            for camera in cameras:
                for number in range(1 + (pid + camera) % 2):
                    relpath = f"{tag}/{pid:04d}/{pid:04d}_c{camera:02d}_s{100 + number}_f{number:04d}_{tag}.jpg"
                    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
                    (root / relpath).write_bytes(b"img")
                    lists[tag].append(f"{relpath} {label}")
    for tag, lines in lists.items():
        (root / "idx" / f"train_{tag}.txt").write_text("\n".join(lines) + "\n")
    (root / "idx" / "test_id.txt").write_text(",".join(str(p) for p in sorted(cells, reverse=True)) + "\n")
    for pid, folders in cells.items():
        for folder, cameras in folders.items():
            for camera, count in cameras.items():
                cell = root / folder / f"cam{camera}" / f"{pid:04d}"
                cell.mkdir(parents=True, exist_ok=True)
                for number in range(count):
                    # names whose sorted order is not their creation order
                    (cell / f"{pid:04d}_c{camera:02d}_{(7 * number) % 10}{number}.jpg").write_bytes(b"img")
    (root / "test_vis").mkdir(exist_ok=True)
    (root / "test_nir").mkdir(exist_ok=True)
    return root
