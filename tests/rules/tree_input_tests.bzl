"""Analysis tests of imported trees (ota_system_image's `tree`) and known digests (`sha256s`).

The imported trees are ota_imported_tree targets written here the way ota_tree_repository's
generated BUILD file writes them (files named by their real SHA-256), so these run without a
repository rule; //tests/rules:nested_tree_import_test covers the repository rule itself.
"""

load("//rules:defs.bzl", "ota_build", "ota_package", "ota_system_image")
load("//rules:repositories.bzl", "ota_imported_tree")
load(":analysis.bzl", "package_actions_test")
load(":errors.bzl", "analysis_failure_test")

# sha256 of tests/rules/testdata/{same.txt,tool.v1,tool.v2}.
SHA_SAME = "2b2928c454c0909c63813f16282a73b18687af366b8865eabf5c3c38b3f3c04d"
SHA_TOOL_V1 = "a08d490a283f74f02f1dd68a425d457238b0f17c9926f46bb69279b7a6f3d7da"
SHA_TOOL_V2 = "34db2ed1e417c113d8162f54721997f9bbf32e9f1d606e805b6e1321e48190c4"

# What the scan records next to each digest: size and sha1.
_RECORDED = {
    SHA_SAME: ["551", "2ae24966d9af9f3f1115ffaef3aae196763df816"],
    SHA_TOOL_V1: ["3376", "5875b4e9285e3f25d1104e07fa8c415755350a2c"],
    SHA_TOOL_V2: ["3371", "d09e9f9c811820fa03613f916a5176f91674b604"],
}

def _by_digest(name, src, digest):
    """A copy of `src` named `<name>/<digest>`: another File than any other copy, equal bytes."""
    native.genrule(
        name = "%s_%s" % (name, digest[:8]),
        srcs = [src],
        outs = ["%s/%s" % (name, digest)],
        cmd = "cp $< $@",
    )
    return ":%s_%s" % (name, digest[:8])

def _imported(name, tool, tool_digest, extra_entries = {}, tags = []):
    ota_imported_tree(
        name = name,
        tags = tags,
        srcs = [
            _by_digest(name, "testdata/same.txt", SHA_SAME),
            _by_digest(name, tool, tool_digest),
        ],
        entries = dict({
            "bin": ["dir", "0755", "0", "2000"],
            "bin/sh": ["symlink", "0777", "0", "0", "tool"],
            "bin/tool": ["file", "4750", "0", "2000", tool_digest] + _RECORDED[tool_digest],
            "empty": ["dir", "0700", "1000", "1000"],
            "etc": ["dir", "0755", "0", "0"],
            "etc/same.txt": ["file", "0640", "0", "1001", SHA_SAME] + _RECORDED[SHA_SAME],
        }, **extra_entries),
    )

# Hostile or malformed entries of a generated BUILD file: name -> (entries, expected message after
# "ota_imported_tree //tests/rules:hostile_<name>: "). Each is refused by ota_imported_tree itself,
# naming the tree and the path. `digest` stands for a file of srcs.
_SHA1 = _RECORDED[SHA_SAME][1]
_DIR = ["dir", "0755", "0", "0"]

def _file(mode = "0644", uid = "0", gid = "0", digest = SHA_SAME, size = "551", sha1 = _SHA1):
    return ["file", mode, uid, gid, digest, size, sha1]

_BAD_PATHS = {
    "empty": ("", "empty install path"),
    "leading_slash": ("/x", "install path \"/x\": an empty component ('//') is not allowed"),
    "trailing_slash": ("x/", "install path \"x/\": an empty component ('//') is not allowed"),
    "double_slash": ("a//b", "install path \"a//b\": an empty component ('//') is not allowed"),
    "dot": (".", "install path \".\": a '.' component is not allowed"),
    "dotdot": ("..", "install path \"..\": a '..' component is not allowed"),
    "dot_last": ("a/.", "install path \"a/.\": a '.' component is not allowed"),
    "dot_first": ("./a", "install path \"./a\": a '.' component is not allowed"),
    "dotdot_inside": ("a/../b", "install path \"a/../b\": a '..' component is not allowed"),
    "scratch": (".ota-scratch", "install path \".ota-scratch\": '.ota-scratch' at the top of the tree is reserved"),
    "scratch_below": (".ota-scratch/x", "install path \".ota-scratch/x\": '.ota-scratch' at the top of the tree is reserved"),
    "nul": ("a\000b", "install path \"a\\000b\": a NUL byte is not allowed in a file name"),
    "nul_last": ("a/b\000", "install path \"a/b\\000\": a NUL byte is not allowed in a file name"),
}

_HOSTILE = {
    "mode_not_octal": ({"x": ["dir", "0999", "0", "0"]}, "\"x\": mode '0999' is not valid"),
    "mode_too_large": ({"x": ["dir", "10000", "0", "0"]}, "\"x\": mode '10000' is not valid"),
    "mode_empty": ({"x": ["dir", "", "0", "0"]}, "\"x\": mode '' is not valid"),
    "mode_negative": ({"x": _file(mode = "-644")}, "\"x\": mode '-644' is not valid"),
    "mode_spaced": ({"x": _file(mode = " 644")}, "\"x\": mode ' 644' is not valid"),
    "uid_negative": ({"x": ["dir", "0755", "-1", "0"]}, "\"x\": uid '-1' is not valid"),
    "uid_too_large": ({"x": _file(uid = "4294967296")}, "\"x\": uid '4294967296' is not valid"),
    "uid_hex": ({"x": ["symlink", "0777", "0x10", "0", "t"]}, "\"x\": uid '0x10' is not valid"),
    "uid_non_ascii_digit": ({"x": _file(uid = "\331\243")}, "\"x\": uid '\\331\\243' is not valid"),
    "gid_newline": ({"x": _file(gid = "1\n2")}, "\"x\": gid '1\\0122' is not valid"),
    "gid_empty": ({"x": _file(gid = "")}, "\"x\": gid '' is not valid"),
    "gid_too_large": ({"x": ["dir", "0755", "0", "99999999999999999999999"]}, "\"x\": gid '99999999999999999999999' is not valid"),
    "size_negative": ({"x": _file(size = "-1")}, "\"x\": size '-1' is not valid"),
    "size_too_large": ({"x": _file(size = "9223372036854775808")}, "\"x\": size '9223372036854775808' is not valid"),
    "size_float": ({"x": _file(size = "5.5")}, "\"x\": size '5.5' is not valid"),
    "sha1_upper": ({"x": _file(sha1 = _SHA1.upper())}, "\"x\": sha1 '%s' is not 40 lowercase hex digits" % _SHA1.upper()),
    "sha1_short": ({"x": _file(sha1 = _SHA1[1:])}, "\"x\": sha1 '%s' is not 40 lowercase hex digits" % _SHA1[1:]),
    "digest_unknown": ({"x": _file(digest = SHA_TOOL_V1)}, "\"x\": no file of srcs is named " + SHA_TOOL_V1),
    "file_fields_short": ({"x": ["file", "0644", "0", "0", SHA_SAME, "551"]}, "\"x\": expected [kind, mode, uid, gid]"),
    "dir_fields_long": ({"x": ["dir", "0755", "0", "0", "extra"]}, "\"x\": expected [kind, mode, uid, gid]"),
    "symlink_no_target": ({"x": ["symlink", "0777", "0", "0"]}, "\"x\": expected [kind, mode, uid, gid]"),
    "kind_fifo": ({"x": ["fifo", "0644", "0", "0"]}, "\"x\": expected [kind, mode, uid, gid]"),
    "no_fields": ({"x": []}, "\"x\": expected [kind, mode, uid, gid]"),
    "target_empty": ({"x": ["symlink", "0777", "0", "0", ""]}, "\"x\": empty symlink target"),
    "target_nul": ({"x": ["symlink", "0777", "0", "0", "a\000b"]}, "\"x\": a NUL byte is not allowed in a link target"),
    "below_file": ({"a": _file(), "a/b": _DIR}, "\"a/b\" is below \"a\", which is a file"),
    "below_symlink": ({"l": ["symlink", "0777", "0", "0", "a"], "l/x": _file()}, "\"l/x\" is below \"l\", which is a symlink"),
    "below_escaped": ({"d\377": _file(), "d\377/\n": _DIR}, "\"d\\377/\\012\" is below \"d\\377\", which is a file"),
}

def _hostile_tests():
    """One broken ota_imported_tree and analysis_failure_test per entry of _BAD_PATHS and _HOSTILE."""
    tests = []
    cases = dict(_HOSTILE)
    for row, (path, problem) in _BAD_PATHS.items():
        # A legal entry next to it: the bad one is found among others, in any kind of entry.
        cases["path_" + row] = ({"etc": _DIR, path: _file() if len(row) % 2 else _DIR}, problem)
    for row, (entries, message) in cases.items():
        name = "hostile_" + row
        ota_imported_tree(
            name = name,
            srcs = [_by_digest(name, "testdata/same.txt", SHA_SAME)],
            entries = entries,
            tags = ["manual"],
        )
        analysis_failure_test(
            name = name + "_test",
            size = "small",
            message = "ota_imported_tree //tests/rules:%s: %s" % (name, message),
            target_under_test = ":" + name,
        )
        tests.append(name + "_test")
    return tests

# Legal names that look like illegal ones, and bytes Starlark must carry as they are.
_TRICKY = {
    "...": _DIR,
    "..a": _file(mode = "4755", uid = "1000", gid = "4294967295"),
    ".ota-scratchy": _file(),
    "a\\b": ["dir", "1777", "0", "0"],
    "a\\b/.ota-scratch": _file(),
    "a\\b/..b": ["symlink", "0777", "0", "0", ".."],
    "sp ace": ["symlink", "0777", "5", "6", "/abs\377olute"],
    "\377\376": _file(size = "551"),
    "x.": ["dir", "0000", "0", "0"],
}

def _image_fixtures():
    """Declares the images of imported trees that //tests/rules:imported_images_test reads.

    One image takes a tree as it is, one the same tree with an override that changes nothing
    (so the image walks it), one a tree missing parent directories.
    """
    ota_imported_tree(
        name = "imported_tricky",
        srcs = [_by_digest("imported_tricky", "testdata/same.txt", SHA_SAME)],
        entries = _TRICKY,
    )
    ota_system_image(name = "imported_tricky_system", tree = ":imported_tricky")
    ota_system_image(name = "imported_tricky_walked_system", tree = ":imported_tricky", owners = {"sp ace": "5:6"})
    ota_imported_tree(
        name = "imported_incomplete",
        srcs = [_by_digest("imported_incomplete", "testdata/same.txt", SHA_SAME)],
        entries = {"a/b/c": _file(), "a/b/l": ["symlink", "0777", "0", "0", "c"], "d": _DIR},
    )
    ota_system_image(name = "imported_incomplete_system", tree = ":imported_incomplete", dir_mode = "0750", gid = 8, uid = 7)

def _build(name, system, boot):
    ota_build(
        name = name,
        boot = boot,
        device = "fixture",
        fingerprint = "fixture/" + name,
        system = system,
        timestamp = 1000 if boot == ":src_boot" else 2000,
    )

def tree_input_tests(name):
    """Declares the fixtures and tests; `name` is a test_suite of all of them.

    Args:
      name: the test_suite's name.
    """
    _imported("imported_v1", "testdata/tool.v1", SHA_TOOL_V1)
    _imported("imported_v2", "testdata/tool.v2", SHA_TOOL_V2)
    _imported("imported_bad_path", "testdata/tool.v1", SHA_TOOL_V1, {"etc/../x": ["dir", "0755", "0", "0"]}, tags = ["manual"])
    ota_imported_tree(name = "imported_bad_digest", entries = {"x": ["file", "0644", "0", "0", SHA_SAME] + _RECORDED[SHA_SAME]}, tags = ["manual"])
    ota_imported_tree(name = "imported_bad_sha1", srcs = [_by_digest("imported_bad_sha1", "testdata/same.txt", SHA_SAME)], entries = {"x": ["file", "0644", "0", "0", SHA_SAME, "551", "XYZ"]}, tags = ["manual"])
    ota_imported_tree(name = "imported_bad_size", srcs = [_by_digest("imported_bad_size", "testdata/same.txt", SHA_SAME)], entries = {"x": ["file", "0644", "0", "0", SHA_SAME, "-1", _RECORDED[SHA_SAME][1]]}, tags = ["manual"])
    ota_imported_tree(name = "imported_bad_mode", entries = {"x": ["dir", "0999", "0", "0"]}, tags = ["manual"])
    ota_imported_tree(name = "imported_bad_kind", entries = {"x": ["fifo", "0644", "0", "0"]}, tags = ["manual"])

    ota_system_image(name = "imported_v1_system", tree = ":imported_v1")
    ota_system_image(name = "imported_v2_system", tree = ":imported_v2")
    labels = {"testdata/same.txt": "etc/same.txt", "testdata/tool.v2": "bin/tool"}
    ota_system_image(name = "labels_v2_system", files = labels)
    ota_system_image(name = "labels_v2_known_system", files = labels, sha256s = {"etc/same.txt": SHA_SAME})
    _build("imported_v1_build", ":imported_v1_system", ":src_boot")
    _build("imported_v2_build", ":imported_v2_system", ":tgt_boot")
    _build("labels_v2_build", ":labels_v2_system", ":tgt_boot")
    _build("labels_v2_known_build", ":labels_v2_known_system", ":tgt_boot")

    tests = []
    for target, patched, batched, unchanged, batch_max_bytes in [
        # Both trees imported: only the changed file is diffed, in its bucket (sizes recorded).
        ("imported_v2_build", [], ["bin/tool"], ["etc/same.txt"], 1048576),
        # The same without batching (batch_max_bytes = 0), or with a limit below its two sizes.
        ("imported_v2_build", ["bin/tool"], [], ["etc/same.txt"], 0),
        ("imported_v2_build", ["bin/tool"], [], ["etc/same.txt"], 3376 + 3371),
        # The target's digests unknown (labels): every path present in both gets one.
        ("labels_v2_build", ["bin/tool", "etc/same.txt"], [], [], 1048576),
        # Hand-written target that states a digest: known on both sides again, sizes not.
        ("labels_v2_known_build", ["bin/tool"], [], ["etc/same.txt"], 1048576),
    ]:
        package = "imported_to_%s_%d" % (target, batch_max_bytes)
        ota_package(name = package, source = ":imported_v1_build", target = ":" + target, batch_max_bytes = batch_max_bytes)
        package_actions_test(
            name = package + "_actions_test",
            size = "small",
            mnemonic_counts = {"OtaFilePatch": str(len(patched)), "OtaFilePatchShard": "32" if batched else "0"},
            patched = patched,
            batched = batched,
            target_under_test = ":" + package,
            type = "INCREMENTAL",
            unchanged = unchanged,
        )
        tests.append(package + "_actions_test")

    broken = {
        "tree_conflict": ("install path \"etc/same.txt\" has two sources: \"etc/same.txt\" of tree //tests/rules:imported_v1 and tests/rules/testdata/new.txt (from files: //tests/rules:testdata/new.txt)", {"files": {"testdata/new.txt": "etc/same.txt"}, "tree": ":imported_v1"}),
        "tree_below_symlink": ("\"bin/sh/x\" (dirs entry \"bin/sh/x\") is below \"bin/sh\", which is a symlink (\"bin/sh\" of tree //tests/rules:imported_v1)", {"dirs": ["bin/sh/x"], "tree": ":imported_v1"}),
        "tree_bad_path": ("tree //tests/rules:imported_bad_path: install path \"etc/../x\": a '..' component is not allowed", {"tree": ":imported_bad_path"}),
        "tree_bad_digest": ("ota_imported_tree //tests/rules:imported_bad_digest: \"x\": no file of srcs is named " + SHA_SAME, {"tree": ":imported_bad_digest"}),
        "tree_bad_mode": ("ota_imported_tree //tests/rules:imported_bad_mode: \"x\": mode '0999' is not valid", {"tree": ":imported_bad_mode"}),
        "tree_bad_sha1": ("ota_imported_tree //tests/rules:imported_bad_sha1: \"x\": sha1 'XYZ' is not 40 lowercase hex digits", {"tree": ":imported_bad_sha1"}),
        "tree_bad_size": ("ota_imported_tree //tests/rules:imported_bad_size: \"x\": size '-1' is not valid", {"tree": ":imported_bad_size"}),
        "tree_bad_kind": ("ota_imported_tree //tests/rules:imported_bad_kind: \"x\": expected [kind, mode, uid, gid]", {"tree": ":imported_bad_kind"}),
        "sha256s_not_a_file": ("sha256s: \"etc\" is not a regular file of the tree", {"sha256s": {"etc": SHA_SAME}, "tree": ":imported_v1"}),
        "sha256s_not_hex": ("sha256s[\"etc/x\"]: 'ABC' is not a lowercase hex SHA-256", {"files": {"testdata/new.txt": "etc/x"}, "sha256s": {"etc/x": "ABC"}}),
        "sha256s_disagree": ("sha256s[\"etc/same.txt\"]: %s, but \"etc/same.txt\" of tree //tests/rules:imported_v1 records %s" % (SHA_TOOL_V1, SHA_SAME), {"sha256s": {"etc/same.txt": SHA_TOOL_V1}, "tree": ":imported_v1"}),
    }
    for row, (message, attrs) in broken.items():
        ota_system_image(name = "broken_" + row, tags = ["manual"], **attrs)
        analysis_failure_test(
            name = "error_%s_test" % row,
            size = "small",
            message = message,
            target_under_test = ":broken_" + row,
        )
        tests.append("error_%s_test" % row)

    tests += _hostile_tests()
    _image_fixtures()
    native.test_suite(name = name, tests = tests)
