"""The README and docs/ as a newcomer reads them: a short signpost, no placeholders, no broken
relative links (files and #anchors)."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))
# Markdown links and images: [text](target) / ![alt](target); targets without a scheme are relative.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Unfilled template text: TODO/TBD/FIXME/XXX markers, {{...}} fields, ALL_CAPS tokens such as
# MEASURED_TESTS standing alone on a line.
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|\{\{[^}]*\}\}|^\s*[A-Z]+_[A-Z_]+\s*$", re.M)


def _outside_code(text: str) -> str:
    """The text without fenced code blocks (commands there may mention anything)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set:
    headings = re.findall(r"^#+\s+(.*)$", _outside_code(path.read_text(encoding="utf-8")), re.M)
    return {_anchor(h) for h in headings}


def test_readme_is_a_signpost():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250, len(text.splitlines())
    top_headings = re.findall(r"^# ", _outside_code(text), re.M)
    assert len(top_headings) == 1, "the README has exactly one top-level heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_placeholder_text(page):
    found = PLACEHOLDER.findall(_outside_code(page.read_text(encoding="utf-8")))
    assert not found, f"{page.relative_to(REPO)} holds unfilled placeholder text: {found}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_outside_code(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page.relative_to(REPO)} has broken links: {broken}"


def test_placeholder_check_can_fail(tmp_path):
    assert PLACEHOLDER.findall("intro\n\nMEASURED_TESTS\n\nmore TODO")
    assert not PLACEHOLDER.findall("MODEL.GN.NUM_GROUPS is a key; `GN_DET_CACHE_DIR` too")


def test_install_page_names_the_pins_gn_det_uses():
    import gn_det.environment as env

    text = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    assert set(re.findall(r"torch===?([\d.]+)", text)) == {env.TORCH_VERSION}
    assert set(re.findall(r"torchvision==([\d.]+)", text)) == {env.TORCHVISION_VERSION}
    assert set(re.findall(r"\b[0-9a-f]{40}\b", text)) == {env.DETECTRON2_COMMIT}
