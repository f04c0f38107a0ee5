"""ota_imported_tree: the target an ota_tree_repository generates (`@<name>//:tree`).

It turns the scan's recorded entries (a file's size, SHA-256 and SHA-1 included) (py/ota/actions/tree_scan.py writes them into the generated
BUILD.bazel) into OtaImportedTreeInfo, the value of ota_system_image's and ota_ramdisk's `tree`
attribute. Paths are checked where the tree is used (rules/private/tree.bzl), with every other
input of that image, so conflicts name both sources.
"""

load(":names.bzl", "escape")
load(":providers.bzl", "OtaImportedTreeInfo")

_MAX_ID = 4294967295  # 2^32 - 1, as docs/contracts.md#1-tree-description allows
_MAX_SIZE = 9223372036854775807  # 2^63 - 1: what a file size may be on Linux

# The number of fields of each kind of entry.
_FIELDS = {"dir": 4, "file": 7, "symlink": 5}

def _number(ctx, path, text, base, upper, what):
    # isdigit and substring tests, not a loop over characters: a tree has tens of thousands of
    # numbers to check. A Starlark string's characters are bytes, so isdigit means 0-9 only.
    ok = len(text) <= 19 and text.isdigit() and (base == 10 or ("8" not in text and "9" not in text))
    if not ok or int(text, base) > upper:
        fail("ota_imported_tree %s: \"%s\": %s '%s' is not valid" % (ctx.label, escape(path), what, text))
    return int(text, base)

def _entry(ctx, path, fields, by_digest):
    kind = fields[0] if fields else ""
    expected = _FIELDS.get(kind)
    if expected == None or len(fields) != expected:
        fail("ota_imported_tree %s: \"%s\": expected [kind, mode, uid, gid] plus a file's sha256, size and sha1 or a symlink's target, got %s" % (ctx.label, escape(path), fields))
    entry = {
        "gid": _number(ctx, path, fields[3], 10, _MAX_ID, "gid"),
        "kind": kind,
        "mode": _number(ctx, path, fields[1], 8, 4095, "mode"),
        "path": path,
        "uid": _number(ctx, path, fields[2], 10, _MAX_ID, "uid"),
    }
    if kind == "file":
        digest = fields[4]
        if digest not in by_digest:
            fail("ota_imported_tree %s: \"%s\": no file of srcs is named %s" % (ctx.label, escape(path), digest))
        sha1 = fields[6]
        if len(sha1) != 40 or sha1.lstrip("0123456789abcdef") != "":
            fail("ota_imported_tree %s: \"%s\": sha1 '%s' is not 40 lowercase hex digits" % (ctx.label, escape(path), sha1))
        entry["file"] = by_digest[digest]
        entry["sha256"] = digest
        entry["size"] = _number(ctx, path, fields[5], 10, _MAX_SIZE, "size")
        entry["sha1"] = sha1
    elif kind == "symlink":
        if not fields[4]:
            fail("ota_imported_tree %s: \"%s\": empty symlink target" % (ctx.label, escape(path)))
        entry["target"] = fields[4]
    return entry

def _ota_imported_tree_impl(ctx):
    by_digest = {f.basename: f for f in ctx.files.srcs}
    entries = [_entry(ctx, path, fields, by_digest) for path, fields in ctx.attr.entries.items()]
    files = depset(ctx.files.srcs)
    return [
        DefaultInfo(files = files),
        OtaImportedTreeInfo(entries = entries, files = files),
    ]

ota_imported_tree = rule(
    implementation = _ota_imported_tree_impl,
    doc = """A directory tree recorded by ota_tree_repository; use it as ota_system_image's or
ramdisk's `tree`. Generated, not hand-written.""",
    attrs = {
        "srcs": attr.label_list(
            allow_files = True,
            doc = "Every distinct file content, each named by its SHA-256 (`files/<sha256>`).",
        ),
        "entries": attr.string_list_dict(
            doc = "Install path -> [kind, octal mode, uid, gid] plus a file's SHA-256 (naming " +
                  "its `srcs` file), size in bytes and SHA-1, or the target of a symlink.",
        ),
    },
)
