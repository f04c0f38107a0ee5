"""The file-tree model shared by ota_system_image and ota_ramdisk: attributes, validation, entries.

A tree is computed entirely at analysis time from labels, strings and an imported directory
(`tree`, rules/private/imported_tree.bzl), so every regular file is a known File: consumers decide
"unchanged" by comparing Files, or the SHA-256s an import recorded, without running anything.
"""

load(":names.bzl", "NUL", "escape", "install_path_problem", "is_install_path")
load(":providers.bzl", "OtaImportedTreeInfo", "OtaTreeInfo")
load(":toolchain_identity.bzl", "TOOLCHAIN_IDENTITY_ATTRS", "add_toolchain_identity")

SYMLINK_MODE = 511  # 0o777, what lstat reports for a symlink on Linux

TREE_ATTRS = dict(TOOLCHAIN_IDENTITY_ATTRS, **{
    "files": attr.label_keyed_string_dict(
        allow_files = True,
        doc = "Single files and their install paths: `{label: \"bin/sh\"}`. Each label must " +
              "give exactly one file. An install path (here and in every attribute below) may " +
              "hold any byte but NUL: write others as octal escapes, e.g. " +
              "`\"lib/systemd/system/system-systemd\\134x2dcryptsetup.slice\"`.",
    ),
    "trees": attr.label_keyed_string_dict(
        allow_files = True,
        doc = "Whole trees: `{label: \"install/dir\"}` installs every file of the label at " +
              "`install/dir/<path of the file relative to its package>` (minus `strip_prefix`). " +
              "Use \"\" or \".\" for the root. Directory (tree) artifacts are refused: their " +
              "contents are unknown at analysis time.",
    ),
    "strip_prefix": attr.string(
        doc = "Removed from the package-relative path of every `trees` file that starts with " +
              "it (a directory path, e.g. \"generated/v1\").",
    ),
    "dirs": attr.string_list(
        doc = "Directories to create (parents of files are created anyway).",
    ),
    "symlinks": attr.string_dict(
        doc = "Symlinks: `{\"bin/ls\": \"toolbox\"}` (link path -> link target, stored as given).",
    ),
    "modes": attr.string_dict(
        doc = "Octal mode per path: `{\"bin/su\": \"4750\"}`. A key ending in \"/\" applies to " +
              "every entry below that directory; an exact path beats a prefix, a longer prefix " +
              "beats a shorter one. Symlinks always have mode 0777. Every key must match an " +
              "entry (typos are errors).",
    ),
    "owners": attr.string_dict(
        doc = "\"uid:gid\" per path, with the same key rules as `modes`: `{\"bin/\": \"0:2000\"}`.",
    ),
    "tree": attr.label(
        providers = [OtaImportedTreeInfo],
        doc = "A directory imported by ota_tree_repository (`@<name>//:tree`), installed at the " +
              "root with the modes, owners, symlinks and empty directories recorded on the host. " +
              "Merged with the other attributes: one path from two sources is an error; `modes` " +
              "and `owners` keys override recorded values; the defaults below do not apply to it.",
    ),
    "sha256s": attr.string_dict(
        doc = "Known SHA-256 (lowercase hex) per regular file path, as ota_release_archive " +
              "generates it. ota_package decides \"unchanged\" from equal known digests without an " +
              "action; the package assembler checks them against the manifests.",
    ),
    "contents": attr.string_list_dict(
        doc = "Known contents per regular file path: `{\"bin/sh\": [sha256, size, sha1]}` " +
              "(lowercase hex SHA-256, size in bytes as a decimal string, lowercase hex SHA-1), " +
              "as ota_release_archive generates it from the archive's system manifest. A SHA-256 " +
              "counts as in `sha256s`; ota_package batches a changed path whose sizes both builds " +
              "know (`batch_max_bytes`); when every file's contents are known, the manifest is " +
              "written while Bazel analyzes (no OtaSystemManifest action). Trusted as recorded, " +
              "like `sha256s`: the assembler checks every patched and added file against them.",
    ),
    "file_mode": attr.string(default = "0644", doc = "Default octal mode of regular files."),
    "dir_mode": attr.string(default = "0755", doc = "Default octal mode of directories."),
    "uid": attr.int(default = 0, doc = "Default owner of every entry."),
    "gid": attr.int(default = 0, doc = "Default group of every entry."),
})

def _where(ctx):
    return "%s %s" % (ctx.attr._kind, ctx.label)

def _check_path(ctx, path, what):
    """Validates and normalizes an install path (strips one leading '/', a trailing '/').

    Any byte but NUL is legal in a component ('\\', spaces, newlines, bytes >= 0x80: a path is
    data, never a label or a file name; docs/contracts.md, "File names"). What stays illegal gets
    its own message (install_path_problem in rules/private/names.bzl).
    """
    p = path
    if p.startswith("/"):
        p = p[1:]
    if p.endswith("/"):
        p = p[:-1]
    if not is_install_path(p):
        fail("%s: %s: %s" % (_where(ctx), what, install_path_problem(path, p)))
    return p

def _join(base, rel):
    b = base
    if b in ("", ".", "/"):
        return rel
    if b.endswith("/"):
        b = b[:-1]
    return b + "/" + rel

def _octal(ctx, text, what):
    if not text or len(text) > 6:
        fail("%s: %s: '%s' is not an octal mode" % (_where(ctx), what, text))
    for c in text.elems():
        if c not in "01234567":
            fail("%s: %s: '%s' is not an octal mode" % (_where(ctx), what, text))
    value = int(text, 8)
    if value > 4095:
        fail("%s: %s: mode %s has bits above 07777" % (_where(ctx), what, text))
    return value

def _owner(ctx, text, what):
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
        fail("%s: %s: '%s' is not \"uid:gid\" (decimal numbers)" % (_where(ctx), what, text))
    return int(parts[0]), int(parts[1])

def _repo_relative(f):
    """Path of a File relative to its repository's root, the same for source and generated files."""
    p = f.path
    if f.root.path:
        p = p[len(f.root.path) + 1:]
    ws = f.owner.workspace_root
    if ws and p.startswith(ws + "/"):
        p = p[len(ws) + 1:]
    return p

def _tree_relative(ctx, f):
    p = _repo_relative(f)
    pkg = f.owner.package
    if pkg:
        if not p.startswith(pkg + "/"):
            fail("%s: trees: %s is not inside its package %s" % (_where(ctx), f.path, pkg))
        p = p[len(pkg) + 1:]
    strip = ctx.attr.strip_prefix
    if strip.endswith("/"):
        strip = strip[:-1]
    if strip and p.startswith(strip + "/"):
        p = p[len(strip) + 1:]
    return p

def _rule_key(table, path):
    """The most specific key of `table` that applies to path, or None.

    That is the exact path, else the longest "dir/" prefix strictly above it (a "dir/" key never
    applies to dir itself).
    """
    if path in table:
        return path
    parts = path.split("/")
    for n in range(len(parts) - 1, 0, -1):
        key = "/".join(parts[:n]) + "/"
        if key in table:
            return key
    return None

def _origin_text(origin):
    """The text of an origin: a string, or (before, name, after) whose name is escaped only now.

    Entries of an imported tree and implicit parents, most of a large tree, keep the tuple: the
    text is needed only when a message names the entry.
    """
    if type(origin) == "tuple":
        return origin[0] + escape(origin[1]) + origin[2]
    return origin

def _add(ctx, state, path, kind, origin, file = None, target = None):
    if path in state.kinds:
        if kind == "dir" and state.kinds[path] == "dir":
            return
        fail("%s: install path \"%s\" has two sources: %s and %s" % (
            _where(ctx),
            escape(path),
            _origin_text(state.origins[path]),
            _origin_text(origin),
        ))
    state.kinds[path] = kind
    state.origins[path] = origin
    if file != None:
        state.files[path] = file
    if target != None:
        state.targets[path] = target

def _add_imported_tree(ctx, state, imported):
    """Adds the entries of `tree` with their recorded mode, owner and digest.

    ota_imported_tree checked every path already (a legal install path in normal form, no two
    alike), so only conflicts with the image's other inputs are left to find.
    """
    after = "\" of tree %s" % ctx.attr.tree.label
    for entry in imported.entries:
        path = entry["path"]
        _add(ctx, state, path, entry["kind"], ("\"", path, after), file = entry.get("file"), target = entry.get("target"))
        state.recorded[path] = (entry["mode"], entry["uid"], entry["gid"])
    state.sha256s.update(imported.sha256s)
    state.contents.update(imported.contents)

def _add_known_sha256s(ctx, state):
    """Adds `sha256s`: each key must be a regular file; a digest the tree also knows must agree."""
    for key, digest in ctx.attr.sha256s.items():
        path = _check_path(ctx, key, "sha256s")
        if state.kinds.get(path) != "file":
            fail("%s: sha256s: \"%s\" is not a regular file of the tree" % (_where(ctx), escape(key)))
        if len(digest) != 64 or digest.lstrip("0123456789abcdef") != "":
            fail("%s: sha256s[\"%s\"]: '%s' is not a lowercase hex SHA-256" % (_where(ctx), escape(key), digest))
        if state.sha256s.get(path, digest) != digest:
            fail("%s: sha256s[\"%s\"]: %s, but %s records %s" % (_where(ctx), escape(key), digest, _origin_text(state.origins[path]), state.sha256s[path]))
        state.sha256s[path] = digest

_HEX = "0123456789abcdef"
_MAX_SIZE = 9223372036854775807  # 2^63 - 1: what a file size may be on Linux

def _is_hex(text, length):
    return len(text) == length and text.lstrip(_HEX) == ""

def _contents_where(ctx, key):
    return "%s: contents[\"%s\"]" % (_where(ctx), escape(key))

def _add_known_contents(ctx, state):
    """Adds `contents`: each key a regular file, each value [sha256, size, sha1] well formed.

    A digest or size the tree already knows (an imported tree, `sha256s`) must agree: one path
    has one content.
    """
    for key, fields in ctx.attr.contents.items():
        path = _check_path(ctx, key, "contents")
        if state.kinds.get(path) != "file":
            fail("%s: contents: \"%s\" is not a regular file of the tree" % (_where(ctx), escape(key)))
        if len(fields) != 3:
            fail("%s: expected [sha256, size, sha1], got %d values" % (_contents_where(ctx, key), len(fields)))
        digest, size, sha1 = fields
        if not _is_hex(digest, 64):
            fail("%s: '%s' is not a lowercase hex SHA-256" % (_contents_where(ctx, key), escape(digest)))
        if not size.isdigit() or len(size) > 19 or int(size) > _MAX_SIZE:
            fail("%s: size '%s' is not a number of bytes (decimal, 0 to 2^63-1)" % (_contents_where(ctx, key), escape(size)))
        if not _is_hex(sha1, 40):
            fail("%s: '%s' is not a lowercase hex SHA-1" % (_contents_where(ctx, key), escape(sha1)))
        recorded = {"sha1": sha1, "sha256": digest, "size": int(size)}
        known = state.contents.get(path)
        if known == None and path in state.sha256s:
            known = {"sha256": state.sha256s[path]}  # from `sha256s`: a tree's file has contents
        for field in ("sha256", "size", "sha1"):
            if known != None and field in known and known[field] != recorded[field]:
                by = _origin_text(state.origins[path]) if path in state.contents else "sha256s"
                fail("%s: %s %s, but %s records %s" % (_contents_where(ctx, key), field, recorded[field], by, known[field]))
        state.sha256s[path] = digest
        state.contents[path] = recorded

def _add_files(ctx, state):
    """Adds `files` (one File per label) and `trees` (every File of a label, below `dest`)."""
    for label, dest in ctx.attr.files.items():
        srcs = label.files.to_list()
        if len(srcs) != 1:
            fail("%s: files: %s gives %d files, expected exactly one (use `trees` for many)" % (
                _where(ctx),
                label.label,
                len(srcs),
            ))
        f = srcs[0]
        if f.is_directory:
            fail("%s: files: %s is a directory artifact; its contents are unknown at analysis time" % (_where(ctx), f.path))
        path = _check_path(ctx, dest, "files[%s]" % label.label)
        _add(ctx, state, path, "file", "%s (from files: %s)" % (f.short_path, label.label), file = f)

    for label, dest in ctx.attr.trees.items():
        for f in label.files.to_list():
            if f.is_directory:
                fail("%s: trees: %s is a directory artifact; its contents are unknown at analysis time" % (_where(ctx), f.path))
            path = _check_path(ctx, _join(dest, _tree_relative(ctx, f)), "trees[%s]" % label.label)
            _add(ctx, state, path, "file", "%s (from trees: %s)" % (f.short_path, label.label), file = f)

def _add_dirs_and_symlinks(ctx, state):
    """Adds `dirs` and `symlinks` (a link target may hold any byte but NUL, and is never empty)."""
    for d in ctx.attr.dirs:
        _add(ctx, state, _check_path(ctx, d, "dirs"), "dir", "dirs entry \"%s\"" % escape(d))

    for link, target in ctx.attr.symlinks.items():
        if not target:
            fail("%s: symlinks: \"%s\" has an empty target" % (_where(ctx), escape(link)))
        if NUL in target:
            fail("%s: symlinks: \"%s\": a NUL byte is not allowed in a link target" % (_where(ctx), escape(link)))
        _add(ctx, state, _check_path(ctx, link, "symlinks"), "symlink", "symlinks entry \"%s\"" % escape(link), target = target)

def _add_parents(ctx, state):
    """Adds the implicit parent directories; no entry may sit below a file or a symlink.

    Each path walks up only to its nearest ancestor that is already a directory: that one's own
    ancestors are checked where it was added, or when the walk reaches it (every entry is walked).
    One entry below a file or symlink redoes the check in full, in entry order from the top, so
    the message is the one the first offending entry gets.
    """
    kinds, origins = state.kinds, state.origins
    paths = list(kinds.keys())
    for path in paths:
        parent = path
        for _ in range(len(path)):
            cut = parent.rfind("/")
            if cut < 0:
                break
            parent = parent[:cut]
            kind = kinds.get(parent)
            if kind == "dir":
                break
            if kind != None:
                _fail_below_non_dir(ctx, state, paths)
            kinds[parent] = "dir"
            origins[parent] = ("parent of \"", path, "\"")

def _fail_below_non_dir(ctx, state, paths):
    """Fails naming the first of `paths` (entry order) below a file or a symlink, and its topmost such ancestor."""
    kinds, origins = state.kinds, state.origins
    for path in paths:
        parts = path.split("/")
        for n in range(1, len(parts)):
            parent = "/".join(parts[:n])
            if parent in kinds and kinds[parent] != "dir":
                fail("%s: \"%s\" (%s) is below \"%s\", which is a %s (%s)" % (
                    _where(ctx),
                    escape(path),
                    _origin_text(origins[path]),
                    escape(parent),
                    kinds[parent],
                    _origin_text(origins[parent]),
                ))

def _metadata_rules(ctx):
    """The parsed `modes` and `owners` tables and the default file and directory modes."""
    modes = {}
    for key, value in ctx.attr.modes.items():
        modes[key] = _octal(ctx, value, "modes[\"%s\"]" % escape(key))
    owners = {}
    for key, value in ctx.attr.owners.items():
        owners[key] = _owner(ctx, value, "owners[\"%s\"]" % escape(key))
    return struct(
        modes = modes,
        owners = owners,
        file_mode = _octal(ctx, ctx.attr.file_mode, "file_mode"),
        dir_mode = _octal(ctx, ctx.attr.dir_mode, "dir_mode"),
    )

def _entries(ctx, state):
    """The sorted entries of `state`, each with its mode and owner.

    A recorded (imported) value, else the default, then the most specific `modes`/`owners` key
    decides; a key that matched no entry fails.
    """
    rules = _metadata_rules(ctx)
    used = {}
    entries = []
    kinds, recorded = state.kinds, state.recorded
    default_uid, default_gid = ctx.attr.uid, ctx.attr.gid
    for path in sorted(kinds.keys()):
        kind = kinds[path]
        owner = recorded.get(path)
        if owner != None:
            mode, uid, gid = owner
        else:
            mode = rules.dir_mode if kind == "dir" else rules.file_mode
            uid, gid = default_uid, default_gid
        if rules.modes:
            mkey = _rule_key(rules.modes, path)
            if mkey != None:
                used["modes:" + mkey] = True
                mode = rules.modes[mkey]
        if rules.owners:
            okey = _rule_key(rules.owners, path)
            if okey != None:
                used["owners:" + okey] = True
                uid, gid = rules.owners[okey]

        # Keys in sorted order, so write_tree and the manifests encode an entry without sorting.
        if kind == "file":
            entry = {"file": state.files[path], "gid": gid, "kind": kind, "mode": mode, "path": path, "uid": uid}
        elif kind == "symlink":
            entry = {"gid": gid, "kind": kind, "mode": SYMLINK_MODE, "path": path, "target": state.targets[path], "uid": uid}
        else:
            entry = {"gid": gid, "kind": kind, "mode": mode, "path": path, "uid": uid}
        entries.append(entry)

    for table, name in ((rules.modes, "modes"), (rules.owners, "owners")):
        for key in table:
            if name + ":" + key not in used:
                fail("%s: %s: key \"%s\" matches no entry of the tree" % (_where(ctx), name, escape(key)))
    return entries

def _only_imported(ctx, imported):
    """True when the tree is `imported` exactly: no other input, no override, no implicit parent."""
    a = ctx.attr
    return imported.complete and not (a.files or a.trees or a.dirs or a.symlinks or a.modes or a.owners or a.sha256s or a.contents)

def collect_tree(ctx):
    """Computes the tree of a rule with TREE_ATTRS.

    Fails at analysis time on bad paths, conflicts (naming both sources), unmatched
    modes/owners keys and directory artifacts. A tree that is an imported one exactly is that
    one's (checked by ota_imported_tree): nothing is walked again.

    Args:
      ctx: the rule context (attributes TREE_ATTRS and a private `_kind` string).

    Returns:
      struct(entries = sorted list of dicts (file entries hold a File under "file"),
             files = dict path -> File, files_depset = its Files in path order,
             sha256s = dict path -> known SHA-256,
             contents = dict path -> {"sha1", "sha256", "size"} known in full,
             manifest = the scan's system manifest File when the tree is an imported one
             exactly, else None).
    """
    imported = ctx.attr.tree[OtaImportedTreeInfo] if ctx.attr.tree else None
    if imported and _only_imported(ctx, imported):
        _metadata_rules(ctx)  # the defaults are still checked, though no entry takes them
        return struct(
            entries = imported.entries,
            files = imported.files,
            files_depset = imported.files_depset,
            sha256s = imported.sha256s,
            contents = imported.contents,
            manifest = imported.manifest,
        )
    state = struct(
        kinds = {},  # path -> "file" | "dir" | "symlink"
        origins = {},  # path -> human description of where the entry comes from
        files = {},
        targets = {},
        recorded = {},  # path -> (mode, uid, gid) of an imported entry
        sha256s = {},  # path -> known digest of a regular file
        contents = {},  # path -> known size, sha256 and sha1 of a regular file (`tree`, `contents`)
    )
    if imported:
        _add_imported_tree(ctx, state, imported)
    _add_files(ctx, state)
    _add_dirs_and_symlinks(ctx, state)
    _add_known_sha256s(ctx, state)
    _add_known_contents(ctx, state)
    _add_parents(ctx, state)
    return struct(
        entries = _entries(ctx, state),
        files = state.files,
        files_depset = depset([state.files[p] for p in sorted(state.files.keys())]),
        sha256s = state.sha256s,
        contents = state.contents,
        manifest = None,
    )

def _json_entry(entry):
    """One contract-1 entry as JSON text: the file as its exec path (keys are already sorted)."""
    if "file" not in entry:
        return json.encode(entry)
    out = dict(entry)
    out["file"] = entry["file"].path
    return json.encode(out)

def write_tree(ctx, tree, out):
    """Writes `tree` (from collect_tree) as contract-1 JSON to `out` and returns OtaTreeInfo.

    The JSON text is made when `out` is built, not while Bazel analyzes (`map_each` of an Args
    content, written byte for byte as a string would be): an ota_package needs only the
    manifest, so rebuilding one after a re-fetch never encodes the tree.

    Args:
      ctx: the rule context.
      tree: the struct collect_tree returns.
      out: the declared `<name>.tree.json`.

    Returns:
      OtaTreeInfo of the tree.
    """
    content = ctx.actions.args()
    content.set_param_file_format("multiline")  # one line: the JSON, then "\n"
    content.add_joined(
        tree.entries,
        join_with = ",",
        map_each = _json_entry,
        format_joined = "{\"entries\":[%s]}",
        omit_if_empty = False,
    )
    ctx.actions.write(output = out, content = content)
    return OtaTreeInfo(
        tree_json = out,
        entries = tree.entries,
        files = tree.files,
        files_depset = tree.files_depset,
        sha256s = tree.sha256s,
        contents = tree.contents,
    )

def run_tree_tool(ctx, tree, tool, out, mnemonic, progress_message):
    """Runs `tool --tree <tree_json> --out <out>`, with every file of the tree as an input.

    Args:
      ctx: the rule context.
      tree: OtaTreeInfo from write_tree.
      tool: the executable (a private cfg = "exec" attribute).
      out: the declared output File.
      mnemonic: the action's mnemonic.
      progress_message: the action's progress message.
    """
    args = ctx.actions.args()
    args.add("--tree", tree.tree_json)
    args.add("--out", out)
    identity = add_toolchain_identity(ctx, args)
    ctx.actions.run(
        executable = tool,
        arguments = [args],
        inputs = depset([tree.tree_json, identity], transitive = [tree.files_depset]),
        outputs = [out],
        mnemonic = mnemonic,
        progress_message = progress_message,
    )
