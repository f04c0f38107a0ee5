"""Every reference in the repository resolves inside it, and the checker catches every kind of
reference that does not (generated repositories, headings and citations)."""

from __future__ import annotations

import pathlib
import re
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import references

ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_the_repository_has_no_unresolved_reference():
    problems = references.check_repository(ROOT)
    assert not problems, "unresolved references:\n" + "\n".join(map(str, problems))


def test_every_package_under_a_scanned_directory_is_scanned():
    """tests/docs/BUILD lists one `all_files` per package; a package missing there is not scanned
    by Bazel (in a checkout every BUILD file is on disk, so this compares the two)."""
    declared = set(re.findall(r'"//([\w./]*):all_files"', (ROOT / "tests/docs/BUILD").read_text(encoding="utf-8")))
    on_disk = {""} | {
        path.parent.relative_to(ROOT).as_posix()
        for name in references.SCANNED + ("proto",)
        if (ROOT / name).is_dir()
        for path in (ROOT / name).rglob("BUILD")
    }
    assert on_disk <= declared, f"packages missing from tests/docs/BUILD: {sorted(on_disk - declared)}"


def test_the_reference_pages_are_scanned_and_cited():
    files = {p.relative_to(ROOT).as_posix() for p in references.scanned_files(ROOT)}
    assert {"docs/contracts.md", "docs/formats.md", "py/ota/format/patch.py", "rules/private/tree.bzl"} <= files
    assert "docs/contracts.md#3-patch-info" in (ROOT / "py/ota/actions/patch_info.py").read_text(encoding="utf-8")


# --- the checker against generated repositories -------------------------------------------------

_WORDS = st.text(alphabet=string.ascii_letters + string.digits + " _-`'.,:()", min_size=1, max_size=30).filter(
    lambda t: t.strip() and references.slug(t) and not t.strip().startswith("#")
)
# Paths of the generated repositories are spelled through DOCS, so this file cites no page itself.
DOCS = "docs"
_NAMES = st.text(alphabet=string.ascii_lowercase + string.digits + "_", min_size=1, max_size=12)


def _repo(tmp_path: pathlib.Path, headings: list[str]) -> references.Checker:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "py").mkdir(exist_ok=True)
    body = "\n\n".join(f"{'#' * (1 + i % 3)} {h}\n\ntext" for i, h in enumerate(headings))
    (tmp_path / "docs" / "page.md").write_text(f"{body}\n\n```\n# not a heading\n```\n", encoding="utf-8")
    return references.Checker(tmp_path)


@_SETTINGS
@given(headings=st.lists(_WORDS, min_size=1, max_size=8))
def test_an_anchor_of_every_heading_resolves_and_a_changed_one_does_not(tmp_path, headings):
    checker = _repo(tmp_path, headings)
    found = references.anchors((tmp_path / DOCS / "page.md").read_text(encoding="utf-8"))
    assert "not-a-heading" not in found  # fenced code holds no headings
    for anchor in sorted(found):
        assert re.fullmatch(r"[\w-]+", anchor) and anchor == anchor.lower(), anchor
        code = f"# see {DOCS}/page.md#{anchor} for why\n"
        assert list(checker.check_text("py/x.py", code)) == []
        markdown = f"See [the page](page.md#{anchor}) and [here](#{anchor}).\n"
        assert list(checker.check_text(f"{DOCS}/page.md", markdown)) == []
        broken = anchor + "-x" if anchor + "-x" not in found else anchor + "-y"
        problems = list(checker.check_text("py/x.py", f"# see {DOCS}/page.md#{broken}\n"))
        assert len(problems) == 1 and "no such heading" in problems[0].text, problems


@_SETTINGS
@given(heading=_WORDS, copies=st.integers(2, 4))
def test_repeated_headings_get_numbered_anchors(tmp_path, heading, copies):
    _repo(tmp_path, [heading] * copies)
    found = references.anchors((tmp_path / DOCS / "page.md").read_text(encoding="utf-8"))
    base = references.slug(heading)
    assert found == {base} | {f"{base}-{n}" for n in range(1, copies)}


@_SETTINGS
@given(
    name=_NAMES,
    root=st.sampled_from(["docs", "py", "tests", "tools", "scripts", "rules"]),
    suffix=st.sampled_from([".md", ".py", ".sh", ".bzl"]),
)
def test_a_path_to_a_missing_file_is_reported_in_prose_and_ignored_in_code(tmp_path, name, root, suffix):
    checker = _repo(tmp_path, ["Title"])
    path = f"{root}/{name}_missing{suffix}"
    comment = list(checker.check_text("py/x.py", f"x = 1  # built by {path}\n"))
    docstring = list(checker.check_text("py/x.py", f'"""Reads {path}."""\n'))
    markdown = list(checker.check_text(f"{DOCS}/x.md", f"Run `{path}` first.\n"))
    assert [len(comment), len(docstring), len(markdown)] == [1, 1, 1]
    assert all("no such file" in p.text for p in comment + docstring + markdown)
    in_code = list(checker.check_text("py/x.py", f'OUTPUT = "{path}"\n'))
    assert len(in_code) == (1 if suffix == ".md" else 0), in_code  # a .md path is a citation anywhere
    (tmp_path / root).mkdir(exist_ok=True)
    (tmp_path / path).write_text("present\n", encoding="utf-8")
    assert list(checker.check_text("py/x.py", f"x = 1  # built by {path}\n")) == []


@_SETTINGS
@given(
    section=st.integers(1, 9),
    sub=st.integers(1, 9),
    number=st.integers(1, 99),
    form=st.sampled_from(
        [
            "spec \u00a7{s}.{t}",
            "(\u00a7{s})",
            "DESIGN" + ".md",  # split: the checker scans this file too
            "contract {n}",
            "build contract {n}",
            "issue {n}",
            "Issue #{n}",
            "../sha" + "red/x.md",
            "shared" + "/bazel-offline.md",
            "aosp-ota-" + "reference.md",
        ]
    ),
    kind=st.sampled_from(["py/x.py", "rules/x.bzl", f"{DOCS}/x.md", "tests/x.sh"]),
)
def test_a_citation_of_something_outside_the_repository_is_reported(tmp_path, section, sub, number, form, kind):
    checker = _repo(tmp_path, ["Title"])
    citation = form.format(s=section, t=sub, n=number)
    line = f"# the cut point ({citation}) matters\n" if not kind.endswith(".md") else f"The cut point ({citation}).\n"
    problems = list(checker.check_text(kind, line))
    assert problems and all(p.line == 1 and p.file == kind for p in problems), (citation, problems)


def test_links_resolve_relative_to_the_linking_file_and_skip_urls(tmp_path):
    checker = _repo(tmp_path, ["Title"])
    (tmp_path / "docs" / "sub").mkdir()
    good = "[a](../page.md#title) [b](https://example.com/x.md#y) [c](mailto:a@b.c) [d](../../py)\n"
    assert list(checker.check_text(f"{DOCS}/sub/x.md", good)) == []
    bad = list(checker.check_text(f"{DOCS}/sub/x.md", "[a](page.md#title) and [b](../page.md#nope)\n"))
    assert [p.text.split(":")[0] for p in bad] == ["link (page.md#title)", "link (../page.md#nope)"]


def test_a_glob_resolves_when_some_file_matches(tmp_path):
    checker = _repo(tmp_path, ["Title"])
    (tmp_path / "py" / "test_alpha.py").write_text("", encoding="utf-8")
    assert list(checker.check_text(f"{DOCS}/x.md", "See `py/test_*.py`.\n")) == []
    assert len(list(checker.check_text(f"{DOCS}/x.md", "See `py/bench_*.py`.\n"))) == 1
