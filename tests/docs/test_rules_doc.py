"""docs/rules.md's attribute tables equal a fresh generation from the rules' doc strings, and the
generator reads every form of attribute definition the rule files use (generated rule files)."""

from __future__ import annotations

import pathlib
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rules_doc

ROOT = pathlib.Path(__file__).absolute().parents[2]  # not resolve(): runfiles are symlinks
DOC = ROOT / "docs" / "rules.md"
_SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_documented_tables_equal_a_fresh_generation():
    documented = DOC.read_text(encoding="utf-8")
    assert rules_doc.update(documented, rules_doc.tables(ROOT)) == documented, (
        "docs/rules.md is stale: python3 tests/docs/rules_doc.py --write docs/rules.md"
    )


@pytest.mark.parametrize(
    ("rule", "bzl", "tag"),
    [
        ("ota_tree_repository", "rules/private/tree_repository.bzl", "_directory"),
        ("ota_release_archive", "rules/private/release_archive_repo.bzl", "_archive"),
    ],
)
def test_module_extension_tags_pass_every_attribute_of_their_repository_rule(rule, bzl, tag):
    """Under bzlmod a repository rule's attributes reach it only through its tag (bazel/extensions.bzl):
    a tag that lacks one, or does not pass it on, hides that attribute from every bzlmod user."""
    modules: dict = {}
    wanted = {attribute.name for attribute in rules_doc.rule_attributes(rules_doc._Module(ROOT / bzl, modules), rule)}
    extensions = rules_doc._Module(ROOT / "bazel" / "extensions.bzl", modules)
    keywords = {keyword.arg: keyword.value for keyword in extensions.assigned[tag].keywords}
    assert set(extensions.literal(keywords["attrs"])) == wanted | {"name"}
    text = (ROOT / "bazel" / "extensions.bzl").read_text(encoding="utf-8")
    call = text[text.index(f"            {rule}(") :]
    call = call[: call.index(")\n")]
    assert {name for name in wanted | {"name"} if f" {name} = tag.{name}," in call} == wanted | {"name"}


def test_every_public_rule_and_attribute_is_documented():
    fresh = rules_doc.tables(ROOT)
    assert set(fresh) == {
        "ota_boot_image",
        "ota_build",
        "ota_build_archive",
        "ota_package",
        "ota_release_archive",
        "ota_test",
        "ota_tree_repository",
        "ota_ramdisk",
        "ota_system_image",
    }
    assert "| `signing_key` | label | — |" in fresh["ota_package"]
    assert "| `interrupt` | bool | `False` |" in fresh["ota_test"]
    assert "_file_patch" not in fresh["ota_package"]  # private attributes stay private


# --- generated rule files ---------------------------------------------------------------------

_TYPES = {
    "string": ('"{v}"', "string"),
    "int": ("{n}", "int"),
    "bool": ("True", "bool"),
    "string_list": ('["{v}"]', "string list"),
    "string_dict": ('{{"{v}": "x"}}', "string → string"),
    "label": (None, "label"),
    "label_keyed_string_dict": (None, "label → string"),
}
_IDENT = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=10).filter(
    lambda s: s[0] != "_" and s not in ("name", "dict", "attr", "rule", "load", "True", "False", "None")
)
_DOC_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,:;()-`'|", min_size=1, max_size=40).filter(
    lambda s: s.strip()
)
_ATTR = st.tuples(
    _IDENT,
    st.sampled_from(sorted(_TYPES)),
    _DOC_TEXT,
    st.sampled_from(["plain", "concat", "percent", "constant"]),
    st.sampled_from(["none", "default", "mandatory"]),
    st.integers(0, 99),
)


def _doc_source(text: str, form: str, constants: list[str]) -> str:
    """`text` as a Starlark expression in one of the forms the rule files use."""
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    if form == "concat":
        half = len(quoted) // 2  # the alphabet has no backslash: no escape to cut in two
        return f'"{quoted[:half]}" +\n              "{quoted[half:]}"'
    if form == "percent":  # the alphabet has no "%" of its own
        return f'"%s" % ("{quoted}",)'
    if form == "constant":
        name = f"_DOC_{len(constants)}"
        constants.append(f'{name} = "{quoted}"')
        return name
    return f'"{quoted}"'


def _write_rules(tmp_path: pathlib.Path, attrs: list[tuple], split: int, undocumented: str = "") -> None:
    """A defs.bzl exporting `thing` from a private thing.bzl, whose attrs are a dict
    merge of BASE (loaded from a sibling file) and a literal, as tree.bzl's users do."""
    private = tmp_path / "rules" / "private"
    private.mkdir(parents=True)
    constants: list[str] = []
    entries = []
    for name, kind, text, form, default, number in attrs:
        args = [] if name == undocumented else [f"doc = {_doc_source(text, form, constants)}"]
        literal = _TYPES[kind][0]
        if default == "default" and literal is not None:
            args.insert(0, "default = " + literal.format(v="x", n=number))
        if default == "mandatory":
            args.insert(0, "mandatory = True")
        entries.append(f'    "{name}": attr.{kind}({", ".join(args)}),')
    base, local = entries[:split], entries[split:]
    (private / "base.bzl").write_text(
        "\n".join(constants) + "\nBASE = {\n" + "\n".join(base) + "\n}\n", encoding="utf-8"
    )
    (private / "thing.bzl").write_text(
        'load(":base.bzl", "BASE")\n\n'
        + "\n".join(f"{c.split(' = ')[0]} = {c.split(' = ', 1)[1]}" for c in constants)
        + "\n"
        + 'thing = rule(\n    implementation = _impl,\n    doc = "A thing.",\n'
        + "    attrs = dict(BASE, **{\n"
        + "\n".join(local)
        + '\n        "_tool": attr.label(default = "//x:y", executable = True, cfg = "exec"),\n    }),\n)\n',
        encoding="utf-8",
    )
    (tmp_path / "rules" / "defs.bzl").write_text(
        'load("//rules/private:thing.bzl", _thing = "thing")\n\nthing = _thing\n', encoding="utf-8"
    )


@_SETTINGS
@given(attrs=st.lists(_ATTR, min_size=1, max_size=8, unique_by=lambda a: a[0]), data=st.data())
def test_every_attribute_form_is_read_with_its_doc_type_and_default(tmp_path_factory, attrs, data):
    tmp_path = tmp_path_factory.mktemp("rules")
    _write_rules(tmp_path, attrs, data.draw(st.integers(0, len(attrs))))
    table = rules_doc.tables(tmp_path)["thing"]
    rows = table.splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [a[0] for a in attrs]  # declaration order, no `_tool`
    for row, (_name, kind, text, _form, default, number) in zip(rows, attrs, strict=False):
        cells = row.replace("\\|", "\x00").split("|")
        assert cells[2].strip() == _TYPES[kind][1]
        assert cells[4].strip().replace("\x00", "|") == " ".join(text.split())
        if default == "mandatory":
            assert cells[3].strip() == "mandatory"
        elif default == "default" and _TYPES[kind][0] is not None:
            assert cells[3].strip() in (f"`{number}`", '`"x"`', "`True`", '`["x"]`', '`{"x": "x"}`')


@_SETTINGS
@given(attrs=st.lists(_ATTR, min_size=1, max_size=5, unique_by=lambda a: a[0]), missing=st.integers(0, 4))
def test_an_attribute_without_a_doc_is_an_error_naming_it(tmp_path_factory, attrs, missing):
    tmp_path = tmp_path_factory.mktemp("rules")
    name = attrs[missing % len(attrs)][0]
    _write_rules(tmp_path, attrs, missing % (len(attrs) + 1), undocumented=name)
    with pytest.raises(rules_doc.DocError, match=f"thing.{name}: attribute has no doc string"):
        rules_doc.tables(tmp_path)


def test_update_refuses_a_missing_an_unknown_or_a_repeated_block():
    fresh = {"a": "| t |\n", "b": "| u |\n"}

    def block(name: str, body: str = "old\n") -> str:
        return f"{rules_doc._BEGIN.format(name=name)}\n{body}{rules_doc._END.format(name=name)}\n"

    assert rules_doc.update("x\n" + block("a") + "y\n" + block("b"), fresh) == "x\n" + block(
        "a", "| t |\n"
    ) + "y\n" + block("b", "| u |\n")
    for markdown, why in (
        (block("a"), "missing for \\['b'\\]"),
        (block("a") + block("b") + block("c"), "c, which"),
        (block("a") + block("a") + block("b"), "repeated for \\['a'\\]"),
    ):
        with pytest.raises(rules_doc.DocError, match=why):
            rules_doc.update(markdown, fresh)
