"""Finds references in the repository's code and docs that do not resolve inside the repository.

A clone is all a reader has, so every citation must name a file of the repository and, for a
`#anchor`, a heading of that file. Three kinds are checked in every scanned text file:

* repository paths (`docs/formats.md#imgdiff2-layout`, `py/ota/format/bsdiff.py`, `tests/ota_apply/test_*.py`):
  the file (or a file matching the glob) must exist, and a `.md` anchor must be one of its headings.
  A markdown file is all prose; in code only comments and docstrings are, and a path quoted as a
  string literal there is an example (often a build output), not a source. A `.md` path is a
  citation wherever it stands;
* markdown links in `.md` files (`[text](ota_apply.md#resuming)`), relative to the linking file;
* citation forms that can only point outside the repository: a design page or an AOSP reference
  that only the original authors had, numbered spec sections, bare "contract N" (cite
  docs/contracts.md#3-patch-info instead), issue numbers, and the sibling `shared` folder.

    python3 tests/docs/references.py [ROOT]     # prints one line per problem; exit 1 if any
"""

from __future__ import annotations

import fnmatch
import io
import os
import pathlib
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# What is scanned, relative to the repository root (directories recursively).
SCANNED = (
    "README.md",
    ".gitignore",
    "bootstrap.sh",
    ".ci",
    "bench",
    "docs",
    "py",
    "release",
    "rules",
    "tests",
    "tools",
)
# Top-level names a path reference may start with: the repository's own, plus names that citations
# have used for files that do not exist (so they are checked, and reported).
_PATH_ROOTS = (
    "bazel",
    "bench",
    "docs",
    "proto",
    "py",
    "release",
    "rules",
    "scripts",
    "tests",
    "third_party",
    "tools",
    r"\.ci",
)
# Generated or cached files that are never sources (plain pytest runs leave them in a checkout).
_SKIPPED_DIRS = {"__pycache__", ".hypothesis", ".pytest_cache"}
_SKIPPED_PATHS = {"py/build"}  # what an in-tree `pip install ./py` used to leave
_SKIPPED_SUFFIXES = ("_pb2.py", ".pyc")

_PATH_REF = re.compile(
    r"(?<![\w./@:$<>-])"  # not the middle of a longer path, label, URL or placeholder
    r"((?:" + "|".join(_PATH_ROOTS) + r")/[\w./*-]*[\w*])"
    r"(#[\w-]+)?"
)
_MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# Citation forms that never resolve to a file of the repository. The patterns are written so that
# this file does not match them itself.
_OUTSIDE = (
    (re.compile(r"\bDESIGN\.md\b"), "cites a design page that is not in the repository"),
    (re.compile("\u00a7\\s*\\d"), "cites a numbered section of a document that is not in the repository"),
    (re.compile(r"aosp-ota-re[f]erence"), "cites an AOSP reference that is not in the repository"),
    (re.compile(r"(?:\.\./|(?<![\w/.-]))shared[/]"), "cites the shared folder, which is not in the repository"),
    (re.compile(r"\b[Cc]ontracts?\s+\d"), "bare contract number: cite docs/contracts.md#<n>-<name>"),
    (re.compile(r"\b[Ii]ssues?\s+#?\d"), "cites an issue number: issues are not in the repository"),
)


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link syntax and punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor of a markdown document (headings outside fenced code; repeats get -1, -2...)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


_PYTHON_SYNTAX = (".py", ".bzl", ".bazel")
_COMMENT = re.compile(r"(?:^|\s)(?:#|//)")


def prose_spans(relative: str, text: str) -> dict[int, list[tuple[int, int]]]:
    """Line number -> column ranges holding prose (comments, docstrings) rather than code.

    Python and Starlark are tokenized: comments and triple-quoted strings are prose. Other files
    (shell, .gitignore, .proto...) have prose after a `#` or `//` that starts a comment. Markdown is
    prose throughout.
    """
    lines = text.splitlines()
    if relative.endswith(".md"):
        return {n: [(0, len(line))] for n, line in enumerate(lines, 1)}
    spans: dict[int, list[tuple[int, int]]] = {}
    name = pathlib.PurePath(relative).name
    if name.endswith(_PYTHON_SYNTAX) or name == "BUILD":
        try:
            for token in tokenize.generate_tokens(io.StringIO(text).readline):
                is_docstring = token.type == tokenize.STRING and token.string.lstrip("rRbBuUfF")[:3] in ('"""', "'''")
                if token.type != tokenize.COMMENT and not is_docstring:
                    continue
                (first, start), (last, end) = token.start, token.end
                for number in range(first, last + 1):
                    spans.setdefault(number, []).append(
                        (start if number == first else 0, end if number == last else len(lines[number - 1]))
                    )
            return spans
        except (tokenize.TokenError, SyntaxError, IndentationError):
            pass  # not valid Python after all: fall back to comment syntax
    for number, line in enumerate(lines, 1):
        match = _COMMENT.search(line)
        if match:
            spans[number] = [(match.start(), len(line))]
    return spans


def scanned_files(root: pathlib.Path) -> list[pathlib.Path]:
    """The text files under SCANNED, sorted; generated and cache files are left out."""
    out = []
    for name in SCANNED:
        top = root / name
        if top.is_file():
            out.append(top)
            continue
        for directory, dirs, files in os.walk(top, followlinks=True):
            here = pathlib.Path(directory).relative_to(root).as_posix()
            dirs[:] = sorted(
                d
                for d in dirs
                if d not in _SKIPPED_DIRS and not d.endswith(".egg-info") and f"{here}/{d}" not in _SKIPPED_PATHS
            )
            out += [pathlib.Path(directory, f) for f in sorted(files) if not f.endswith(_SKIPPED_SUFFIXES)]
    return out


class Checker:
    """Resolves references against the files under `root`, caching each markdown file's anchors."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._anchors: dict[pathlib.Path, set[str]] = {}

    def _anchors_of(self, path: pathlib.Path) -> set[str]:
        if path not in self._anchors:
            self._anchors[path] = anchors(path.read_text(encoding="utf-8"))
        return self._anchors[path]

    def _resolve(self, base: pathlib.Path, target: str, anchor: str) -> str | None:
        """None if `target` (relative to `base`) exists and has `anchor`; else what is wrong."""
        if any(c in target for c in "*?["):
            parent = (base / target).parent
            pattern = pathlib.PurePath(target).name
            if not parent.is_dir() or not fnmatch.filter(os.listdir(parent), pattern):
                return f"{target}: no file matches"
            return None
        path = base / target
        if not path.exists():
            return f"{target}: no such file in the repository"
        if anchor and (path.suffix != ".md" or not path.is_file()):
            return f"{target}#{anchor}: only markdown files have anchors"
        if anchor and anchor not in self._anchors_of(path):
            return f"{target}#{anchor}: no such heading in {target}"
        return None

    def check_text(self, relative: str, text: str) -> Iterator[Problem]:
        """Every problem of one file's text; `relative` is its path from the root."""
        is_markdown = relative.endswith(".md")
        prose = prose_spans(relative, text)
        fenced = False
        for number, line in enumerate(text.splitlines(), 1):
            if _FENCE.match(line):
                fenced = not fenced
            for pattern, why in _OUTSIDE:
                match = pattern.search(line)
                if match:
                    yield Problem(relative, number, f"{why}: {match.group(0)!r}")
            for match in _PATH_REF.finditer(line):
                target, anchor = match.group(1).rstrip("."), (match.group(2) or "#")[1:]
                in_prose = any(start <= match.start() < end for start, end in prose.get(number, ()))
                quoted = match.start() > 0 and line[match.start() - 1] in "\"'"
                if not target.endswith(".md") and (quoted or not in_prose):
                    continue
                problem = self._resolve(self.root, target, anchor)
                if problem:
                    yield Problem(relative, number, problem)
            if not is_markdown or fenced:
                continue
            for match in _MD_LINK.finditer(line):
                link = match.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
                    continue
                target, _, anchor = link.partition("#")
                base = (self.root / relative).parent
                problem = self._resolve(base, target or pathlib.PurePath(relative).name, anchor)
                if problem:
                    yield Problem(relative, number, f"link ({link}): {problem}")

    def check_files(self, files: Iterable[pathlib.Path]) -> list[Problem]:
        problems = []
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary data (test vectors, images): no citations in it
            problems += self.check_text(path.relative_to(self.root).as_posix(), text)
        return sorted(problems)


def check_repository(root: pathlib.Path) -> list[Problem]:
    return Checker(root).check_files(scanned_files(root))


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1] if len(argv) > 1 else ".").absolute()
    problems = check_repository(root)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
