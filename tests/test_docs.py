"""The README and the pages in docs/: short, complete where it matters, no broken links."""

import re
from pathlib import Path

import pytest

from segpipe.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "config/README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A Markdown link, not an image: [text](target).
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCED = re.compile(r"^```.*?^```", flags=re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6} +(.+?) *$", flags=re.MULTILINE)


def prose(text):
    """``text`` without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCED.sub("", text))


def anchors(text):
    """GitHub's anchors of the headings of a Markdown text."""
    found, seen = set(), {}
    for heading in HEADING.findall(prose_keeping_code(text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def prose_keeping_code(text):
    """``text`` without fenced code blocks (a `# comment` there is no heading); inline code
    is kept, without its backticks, as GitHub keeps it in a heading's anchor."""
    return FENCED.sub("", text).replace("`", "")


def test_readme_is_short():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_readme_names_every_built_in_kind_and_the_commands():
    text = README.read_text(encoding="utf-8")
    for kind in ("threshold", "multi_threshold", "edges", "kmeans", "watershed",
                 "superpixels", "region_growing", "maskrcnn"):
        assert kind in REGISTRY
        assert f"| `{kind}` |" in text, kind
    for command in ("make run", "make test", "make test-fast", "pip install .",
                    "segpipe run ", "segpipe report ", "snakemake --cores"):
        assert command in text, command


def test_readme_points_to_the_reference_and_every_page():
    links = set(LINK.findall(prose(README.read_text(encoding="utf-8"))))
    assert "config/README.md" in links
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in links, page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_lead_somewhere(page):
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if fragment and linked.suffix == ".md":
            assert fragment in anchors(linked.read_text(encoding="utf-8")), f"{page.name}: {target}"


def test_anchors_follow_github():
    text = "# A `kind: threshold`\n## Shards: one job per method and shard\n## x\n## x\n"
    assert anchors(text) == {"a-kind-threshold", "shards-one-job-per-method-and-shard",
                             "x", "x-1"}
