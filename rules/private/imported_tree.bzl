"""ota_imported_tree: the target an ota_tree_repository generates (`@<name>//:tree`).

It turns the scan's recorded entries (a file's size, SHA-256 and SHA-1 included;
py/ota/actions/tree_scan.py writes them into the generated BUILD.bazel) into OtaImportedTreeInfo,
the value of ota_system_image's and ota_ramdisk's `tree` attribute, already in the shape those
rules need: sorted tree entries, the path -> File, SHA-256 and content tables, and the scan's
system manifest file. Every entry is checked here, once: its fields, its path (a legal install
path in normal form) and its parent. An image whose only input is the tree then uses all of it
as it is (rules/private/tree.bzl), so re-analysing a re-fetched tree walks its entries once.
"""

load(":names.bzl", "NUL", "all_install_paths", "escape", "install_path_problem", "is_install_path")
load(":providers.bzl", "OtaImportedTreeInfo")
load(":tree.bzl", "SYMLINK_MODE")

_MAX_ID = 4294967295  # 2^32 - 1, as docs/contracts.md#1-tree-description allows
_MAX_SIZE = 9223372036854775807  # 2^63 - 1: what a file size may be on Linux

# The number of fields of each kind of entry.
_FIELDS = {"dir": 4, "file": 7, "symlink": 5}

_HEX = "0123456789abcdef"

def _where(ctx, path):
    return "ota_imported_tree %s: \"%s\"" % (ctx.label, escape(path))

def _fail_number(ctx, path, text, base, upper, what):
    """Fails naming field `what` of `path` when `text` is not a number in [0, upper] of `base`.

    Only reached when the loop's combined test refused one of an entry's numbers: this finds which.
    A Starlark string's characters are bytes, so isdigit means 0-9 only. The text is shown
    `escape`d, so the message stays one line whatever the BUILD file holds.
    """
    ok = text.isdigit() and (base == 10 or ("8" not in text and "9" not in text))
    if not ok or int(text, base) > upper:
        fail("%s: %s '%s' is not valid" % (_where(ctx, path), what, escape(text)))

def _fail_numbers(ctx, path, fields):
    """Fails with the message of the first bad number of an entry (mode, uid, gid, then size)."""
    _fail_number(ctx, path, fields[1], 8, 4095, "mode")
    _fail_number(ctx, path, fields[2], 10, _MAX_ID, "uid")
    _fail_number(ctx, path, fields[3], 10, _MAX_ID, "gid")
    if fields[0] == "file":
        _fail_number(ctx, path, fields[5], 10, _MAX_SIZE, "size")
    fail("%s: the fields %s were refused, but no single one is wrong" % (_where(ctx, path), fields))

def _fail_paths(ctx, paths):
    """Fails naming the first of `paths` (sorted) that is not an install path in normal form."""
    for path in paths:
        if not is_install_path(path):
            fail("ota_imported_tree %s: %s" % (ctx.label, install_path_problem(path, path)))

def _ota_imported_tree_impl(ctx):
    by_digest = {f.basename: f for f in ctx.files.srcs}
    recorded = ctx.attr.entries
    paths = sorted(recorded.keys())
    if not all_install_paths(paths):
        _fail_paths(ctx, paths)

    # One pass in path order, so a parent comes before its children. No helper is called for an
    # entry that passes: a tree has thousands, and Bazel re-analyses all of them on a re-fetch.
    entries = []
    kinds = {}
    files = {}
    sha256s = {}
    contents = {}
    complete = True  # every entry's parent directory is an entry too
    for path in paths:
        fields = recorded[path]
        kind = fields[0] if fields else ""
        if _FIELDS.get(kind) != len(fields):
            fail("%s: expected [kind, mode, uid, gid] plus a file's sha256, size and sha1 or a symlink's target, got %s" % (_where(ctx, path), fields))
        cut = path.rfind("/")
        if cut > 0:
            parent = kinds.get(path[:cut])
            if parent != "dir":
                if parent != None:
                    fail("%s is below \"%s\", which is a %s" % (_where(ctx, path), escape(path[:cut]), parent))
                complete = False
        kinds[path] = kind
        mode, uid, gid = fields[1], fields[2], fields[3]
        size = fields[5] if kind == "file" else "0"
        if not ((mode + uid + gid + size).isdigit() and mode and uid and gid and size and "8" not in mode and "9" not in mode):
            _fail_numbers(ctx, path, fields)
        mode, uid, gid, size = int(mode, 8), int(uid), int(gid), int(size)
        if mode > 4095 or uid > _MAX_ID or gid > _MAX_ID or size > _MAX_SIZE:
            _fail_numbers(ctx, path, fields)

        # Keys in sorted order, as rules/private/tree.bzl builds a tree entry.
        if kind == "file":
            digest, sha1 = fields[4], fields[6]
            file = by_digest.get(digest)
            if file == None:
                fail("%s: no file of srcs is named %s" % (_where(ctx, path), digest))
            if len(sha1) != 40 or sha1.lstrip(_HEX):
                fail("%s: sha1 '%s' is not 40 lowercase hex digits" % (_where(ctx, path), escape(sha1)))
            entries.append({"file": file, "gid": gid, "kind": kind, "mode": mode, "path": path, "uid": uid})
            files[path] = file
            sha256s[path] = digest
            contents[path] = {"sha1": sha1, "sha256": digest, "size": size}
        elif kind == "dir":
            entries.append({"gid": gid, "kind": kind, "mode": mode, "path": path, "uid": uid})
        else:
            target = fields[4]
            if not target:
                fail("%s: empty symlink target" % _where(ctx, path))
            if NUL in target:
                fail("%s: a NUL byte is not allowed in a link target" % _where(ctx, path))
            entries.append({"gid": gid, "kind": kind, "mode": SYMLINK_MODE, "path": path, "target": target, "uid": uid})

    return [
        DefaultInfo(files = depset(ctx.files.srcs)),
        OtaImportedTreeInfo(
            entries = entries,
            complete = complete,
            files = files,
            files_depset = depset(files.values()),
            sha256s = sha256s,
            contents = contents,
            manifest = ctx.file.manifest,
        ),
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
        "manifest": attr.label(
            allow_single_file = [".json"],
            doc = "The system manifest of the tree as `entries` records it " +
                  "(docs/contracts.md#2-system-manifest), written by the scan: the manifest of " +
                  "an ota_system_image whose only input is this tree. Unset: that image writes " +
                  "it from `entries`.",
        ),
    },
)
