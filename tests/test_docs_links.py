"""Every relative link in README.md and docs/**/*.md points at a file in git, so it resolves on a fresh
clone (a file that .gitignore drops, such as a video, would be missing there)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Linked before it is committed (another change adds it); allowed only while git does not track it, so
# once it lands a broken link to it fails like any other.
PENDING: set[str] = set()

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
INDENTED_CODE = re.compile(r"^(?:(?: {4}|\t).*\n?)+", re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
# [text](target "title") and ![alt](target); the text may hold one level of brackets (an image). In a
# lookahead, so that an image inside a link's text is found as well as the link.
INLINE = re.compile(r"(?=\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+[\"'(][^)]*)?\s*\))")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)", re.M)
HTML = re.compile(r"<(?:a|img|source|video)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, any scheme


def tracked_files() -> set[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout
    return {name for name in out.split("\0") if name}


def markdown_files() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    return [path.relative_to(ROOT).as_posix() for path in files if path.is_file()]


def link_targets(text: str) -> list[str]:
    """The link and image targets of a markdown text, code blocks and code spans left out."""
    text = FENCE.sub("", text)
    text = INDENTED_CODE.sub("", text)
    text = CODE_SPAN.sub("", text)
    found = INLINE.findall(text) + REFERENCE.findall(text) + HTML.findall(text)
    return list(dict.fromkeys(target.strip("<>") for target in found))


def repo_path(document: str, target: str) -> str | None:
    """The repository path a relative target names, or None for an external link or a pure #anchor."""
    if EXTERNAL.match(target) or target.startswith("#"):
        return None
    target = target.split("#", 1)[0].split("?", 1)[0]
    base = PurePosixPath() if target.startswith("/") else PurePosixPath(document).parent
    parts: list[str] = []
    for part in (base / target.lstrip("/")).parts:
        if part == "..":
            if not parts:
                return "../" + target  # leaves the repository: never in git
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def resolves(path: str, tracked: set[str]) -> bool:
    path = path.rstrip("/")
    return path in tracked or any(name.startswith(path + "/") for name in tracked)


def test_link_targets_parser():
    text = (
        'See [a](docs/a.md#x), ![b](img.png "title") and [![c](c.png)](d/e.md).\n'
        "[ref]: ./f.md\n"
        '<img src="g.png" width="10">\n'
        "`[not](code.md)`\n"
        "```bash\n[not](fenced.md)\n```\n"
        "    [not](indented.md)\n"
        "[web](https://example.com) [mail](mailto:a@b.c) [anchor](#section)\n"
    )
    assert sorted(link_targets(text)) == sorted(
        [
            "docs/a.md#x",
            "img.png",
            "c.png",
            "d/e.md",
            "https://example.com",
            "mailto:a@b.c",
            "#section",
            "./f.md",
            "g.png",
        ]
    )
    assert repo_path("docs/x.md", "../README.md#commands") == "README.md"
    assert repo_path("docs/x.md", "results/a.png") == "docs/results/a.png"
    assert repo_path("README.md", "../outside.md") == "../../outside.md"
    assert repo_path("README.md", "https://example.com/a.md") is None
    assert repo_path("README.md", "#set-up") is None


@pytest.mark.parametrize("document", markdown_files())
def test_relative_links_are_tracked(document):
    tracked = tracked_files()
    targets = link_targets((ROOT / document).read_text(encoding="utf-8"))
    broken = []
    for target in targets:
        path = repo_path(document, target)
        if path is None or resolves(path, tracked):
            continue
        if path in PENDING:
            continue  # not committed yet; strict once git tracks it
        broken.append(f"{target} -> {path}")
    assert not broken, f"{document} links to files that are not in git: {broken}"


def test_the_readme_and_docs_have_links():
    # Guards the parser: a regex that silently matched nothing would pass every file.
    targets = link_targets((ROOT / "README.md").read_text(encoding="utf-8"))
    assert any(target.startswith("docs/") for target in targets)
