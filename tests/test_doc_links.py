"""Every relative link in the user-facing Markdown resolves to a file inside the repository.

Checks README.md, docs/**/*.md and bench/README.md: each Markdown link or image
``[text](target)`` / ``![alt](target)`` and each reference definition ``[label]: target``,
outside code blocks and code spans. Web and mail links and pure ``#anchors`` are skipped;
the ``#anchor`` of a file link is ignored. No model is loaded.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]+(?:\([^()\s]*\))?)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.MULTILINE)
SKIP = ("http://", "https://", "mailto:")


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "bench" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    return [f for f in files if f.is_file()]


def links(text: str) -> list[str]:
    """The link targets of a Markdown text, code blocks and code spans left out."""
    text = CODE_SPAN.sub("", FENCE.sub("", text))
    found = INLINE.findall(text) + REFERENCE.findall(text)
    return [t[1:-1] if t.startswith("<") else t for t in found]


def broken(doc: Path, root: Path = ROOT) -> list[str]:
    """The links of ``doc`` that do not name an existing path inside ``root``."""
    bad = []
    for target in links(doc.read_text(encoding="utf-8")):
        if target.lower().startswith(SKIP) or target.startswith("#"):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = (
            root / path.lstrip("/") if path.startswith("/") else doc.parent / path
        ).resolve()
        if not resolved.is_relative_to(root.resolve()):
            bad.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            bad.append(f"{target} (no such file)")
    return bad


def test_the_link_parser() -> None:
    text = (
        'See [a](a.md#x), ![b](img/b.png "title"), [c](https://x.org), [d](#top),\n'
        "`[e](not-a-link.md)` and [f]( <with space.md> ).\n"
        "```\n[g](in-a-fence.md)\n```\n"
        "[h]: ref.md\n"
    )
    assert links(text) == [
        "a.md#x",
        "img/b.png",
        "https://x.org",
        "#top",
        "with space.md",
        "ref.md",
    ]


def test_outside_and_missing_targets_are_caught(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text("# r\n")
    (tmp_path / "shared.md").write_text("outside\n")
    doc = repo / "docs" / "page.md"
    doc.write_text("[ok](../README.md#r) [out](../../shared.md) [gone](missing.md) [w](http://x)\n")
    assert broken(doc, repo) == [
        "../../shared.md (outside the repository)",
        "missing.md (no such file)",
    ]


def test_there_are_documents() -> None:
    names = {f.relative_to(ROOT).as_posix() for f in doc_files()}
    assert {"README.md", "docs/README.md"} <= names


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_resolve_inside_the_repository(doc: Path) -> None:
    assert broken(doc) == [], f"{doc.relative_to(ROOT)}: broken links"
