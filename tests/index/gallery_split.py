"""A synthetic gallery split shared by the store tests: unit rows with exact duplicates (ties),
entries with every kind of camera, modality and capture time (unknown ones included), queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from mpanet_tf.data.capture_time import iso_utc

COUNT, DIM = 180, 24
START = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)


def gallery_split(seed: int = 11):
    """(features (COUNT, DIM) float64, entries, queries (30, DIM)).

    Rows 40..44 repeat row 7 and rows 90, 91 repeat row 60 (equal distances: the tie order is
    tested); queries 0 and 1 are rows 7 and 60 themselves. Cameras 1..6 (the SYSU numbers) and
    "gate" (a manifest's name) with one unknown; every third entry infrared; capture times one
    minute apart from 08:00 UTC, every 17th unknown.
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(COUNT, DIM))
    features[40:45] = features[7]
    features[90:92] = features[60]
    entries = []
    for i in range(COUNT):
        camera = None if i == 5 else ("gate" if i % 10 == 9 else i % 6 + 1)
        entries.append({"path": f"/gallery/cam{camera}/{i:04d}.jpg", "person_id": i % 13 if i % 4 else None,
                        "camera": camera, "modality": "infrared" if i % 3 == 0 else "visible",
                        "time": None if i % 17 == 0 else iso_utc(START + timedelta(minutes=i))})
    queries = np.concatenate([features[[7, 60]], rng.normal(size=(28, DIM))])
    return features, entries, queries


def expected_ids(entries, cameras=None, modalities=None, since=None, until=None) -> set[int]:
    """Independent numpy-free reference of a filter: the ids of the entries it selects."""
    chosen = set()
    for i, entry in enumerate(entries):
        if cameras is not None and (entry["camera"] is None or str(entry["camera"]) not in cameras):
            continue
        if modalities is not None and entry["modality"] not in modalities:
            continue
        if since is not None or until is not None:
            if entry["time"] is None:
                continue
            taken = datetime.fromisoformat(entry["time"])
            if (since is not None and taken < since) or (until is not None and taken > until):
                continue
        chosen.add(i)
    return chosen


FILTERS = [  # (cameras, modalities, since, until)
    (("4", "5"), None, None, None),
    (("gate",), None, None, None),
    (None, ("infrared",), None, None),
    (None, None, START + timedelta(minutes=30), START + timedelta(minutes=95)),  # bounds are entries' times
    (None, None, None, START + timedelta(minutes=20, seconds=30)),
    (("1", "3", "gate"), ("visible",), START + timedelta(minutes=51), None),
    (("7",), None, None, None),  # no such camera: nothing
]
