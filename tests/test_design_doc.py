"""Every section the code cites (``design.md §N.M``) is a heading of docs/design.md, so a reader
can follow each citation."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{2,4} §(\d+(?:\.\d+)*) ", re.M)


def headings() -> set[str]:
    return set(HEADING.findall((ROOT / "docs" / "design.md").read_text(encoding="utf-8")))


def cited() -> dict[str, list[str]]:
    """Section number -> the places (``file:line``) citing it, in the project's own text."""
    files = [*ROOT.joinpath("mpanet_tf").rglob("*.py"), *ROOT.joinpath("cli").rglob("*.py"),
             *ROOT.joinpath("benchmarks").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py"),
             ROOT / "README.md"]
    places: dict[str, list[str]] = {}
    for path in files:
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for section in SECTION.findall(line):
                places.setdefault(section, []).append(f"{path.relative_to(ROOT)}:{number}")
    return places


def test_headings_are_found():
    found = headings()
    # one per level, as the citations use them: a chapter, a section, a decision, an appendix
    assert {"1", "1.5", "9.6", "11.9", "12.2", "13"} <= found


def test_every_cited_section_exists():
    places = cited()
    assert len(places) > 20  # the scan sees the citations at all
    missing = {section: where[:3] for section, where in places.items() if section not in headings()}
    assert not missing, f"cited but not a heading of docs/design.md: {missing}"
