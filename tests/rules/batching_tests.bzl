"""Analysis tests: which changed paths an ota_package batches, over generated pairs of trees.

The class: a changed path is diffed in an OtaFilePatchShard bucket exactly when both builds know
its size at analysis time and the two sizes add up to less than `batch_max_bytes`, whatever kind
of tree knows them: an imported directory (ota_imported_tree), per-file labels with `contents`
(what ota_release_archive generates from an archive's system manifest) or neither (per-file
labels alone: no size, so one OtaFilePatch action each). Every pair of kinds is tried on trees
drawn from a seeded generator: sizes on both sides of the limit and on it, equal digests
(no action), paths only in the target (whole files) or only in the source.

Recorded sizes and digests steer the analysis only, so the generated files are empty and the
packages are never built (tagged manual); the bytes of a batched package are checked by
//tests/rules:nested_import_test, where an archive source and a directory source give the same
package.
"""

load("//rules:defs.bzl", "ota_build", "ota_package", "ota_system_image")
load("//rules:repositories.bzl", "ota_imported_tree")
load(":analysis.bzl", "package_actions_test")
load(":errors.bzl", "analysis_failure_test")

_SEEDS = [10, 23, 36, 41]
_PATHS_PER_TREE = 14

# Sizes a generated file may have: empty, tiny, around the limits below, large.
_SIZES = [0, 1, 99, 100, 101, 511, 512, 513, 1000, 4095, 4096, 65536, 1048575, 1048576, 5000000]

# How each side's tree is written: an imported directory, labels with `contents`, labels alone.
_KINDS = ["imported", "contents", "labels"]

def _next(state):
    """One step of a 31-bit linear congruential generator (seeded, so every run declares the same)."""
    return (state * 1103515245 + 12345) % 2147483648

def _pick(state, count):
    """A number in [0, count) from the generator's high bits (its low bits repeat quickly)."""
    return (state // 65536) % count

def _hex(state, digits):
    """`digits` lowercase hex digits drawn from the generator; returns (text, new state)."""
    out = ""
    for _ in range(digits):
        state = _next(state)
        out += "0123456789abcdef"[_pick(state, 16)]
    return out, state

def _content(state):
    """A generated file content: [sha256, size, sha1] as `contents` takes it, and the new state."""
    sha256, state = _hex(state, 64)
    state = _next(state)
    size = _SIZES[_pick(state, len(_SIZES))]
    sha1, state = _hex(state, 40)
    return [sha256, str(size), sha1], state

def _pair(seed):
    """A generated source and target: dicts path -> content, and the batch limit to test with.

    A path is in both trees (changed, or with equal contents), or only in one. The limit is the
    summed sizes of one changed path (that path is not batched: the sum must be below it), plus
    the seed's parity (then it is, when odd).
    """
    state = seed
    source, target = {}, {}
    for i in range(_PATHS_PER_TREE):
        path = "d%d/f%d" % (i % 3, 10 + i)
        old, state = _content(state)
        state = _next(state)
        fate = _pick(state, 8)
        if fate == 0:
            target[path] = old  # added
        elif fate == 1:
            source[path] = old  # removed
        elif fate == 2:
            source[path], target[path] = old, old  # unchanged
        else:
            new, state = _content(state)
            source[path], target[path] = old, new
    changed = sorted([p for p in target if p in source and source[p] != target[p]])
    state = _next(state)
    pivot = changed[_pick(state, len(changed))] if changed else None
    limit = (int(source[pivot][1]) + int(target[pivot][1]) if pivot else 4096) + seed % 2
    return source, target, limit

def _tree(name, kind, contents):
    """Declares the ota_system_image `name` holding `contents` as a tree of `kind`."""
    files = "%s_files" % name
    native.genrule(
        name = files,
        outs = ["%s/%s" % (files, c[0]) for c in contents.values()],
        cmd = "touch $(OUTS)",
        tags = ["manual"],
    )
    if kind == "imported":
        entries = {d: ["dir", "0755", "0", "0"] for d in ("d0", "d1", "d2")}
        for path, c in contents.items():
            entries[path] = ["file", "0644", "0", "0"] + c
        ota_imported_tree(name = name + "_tree", srcs = [":" + files], entries = entries, tags = ["manual"])
        ota_system_image(name = name, tree = ":%s_tree" % name, tags = ["manual"])
        return
    labels = {":%s/%s" % (files, c[0]): path for path, c in contents.items()}
    known = dict(contents) if kind == "contents" else {}
    ota_system_image(name = name, files = labels, contents = known, tags = ["manual"])

def _expected(source, target, source_kind, target_kind, limit):
    """What the package must do with each path: (patched, batched, unchanged, whole), each sorted."""
    patched, batched, unchanged = [], [], []
    both_sized = source_kind != "labels" and target_kind != "labels"
    for path in sorted(target.keys()):
        old, new = source.get(path), target[path]
        if old == None:
            continue
        if both_sized and old[0] == new[0]:
            unchanged.append(path)
        elif both_sized and int(old[1]) + int(new[1]) < limit:
            batched.append(path)
        else:
            patched.append(path)
    whole = sorted([p for p in target if p not in source])
    return patched, batched, unchanged, whole

def _build(name, system, boot, timestamp):
    ota_build(name = name, boot = boot, device = "fixture", fingerprint = "fixture/" + name, system = system, timestamp = timestamp, tags = ["manual"])

# A bad `contents` value: name -> (attributes of the broken ota_system_image, message after
# "ota_system_image //tests/rules:broken_contents_<name>: ").
_SHA256 = "2b2928c454c0909c63813f16282a73b18687af366b8865eabf5c3c38b3f3c04d"  # testdata/same.txt
_SHA1 = "2ae24966d9af9f3f1115ffaef3aae196763df816"
_FILES = {"testdata/same.txt": "etc/same.txt"}

def _bad(value, path = "etc/same.txt"):
    return {"contents": {path: value}, "dirs": ["etc/d"], "files": _FILES}

_BAD_CONTENTS = {
    "size_word": (_bad([_SHA256, "big", _SHA1]), "contents[\"etc/same.txt\"]: size 'big' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "size_negative": (_bad([_SHA256, "-1", _SHA1]), "contents[\"etc/same.txt\"]: size '-1' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "size_empty": (_bad([_SHA256, "", _SHA1]), "contents[\"etc/same.txt\"]: size '' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "size_float": (_bad([_SHA256, "5.5", _SHA1]), "contents[\"etc/same.txt\"]: size '5.5' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "size_too_large": (_bad([_SHA256, "9223372036854775808", _SHA1]), "contents[\"etc/same.txt\"]: size '9223372036854775808' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "size_newline": (_bad([_SHA256, "5\n", _SHA1]), "contents[\"etc/same.txt\"]: size '5\\012' is not a number of bytes (decimal, 0 to 2^63-1)"),
    "sha256_upper": (_bad([_SHA256.upper(), "551", _SHA1]), "contents[\"etc/same.txt\"]: '%s' is not a lowercase hex SHA-256" % _SHA256.upper()),
    "sha1_short": (_bad([_SHA256, "551", _SHA1[1:]]), "contents[\"etc/same.txt\"]: '%s' is not a lowercase hex SHA-1" % _SHA1[1:]),
    "two_values": (_bad([_SHA256, "551"]), "contents[\"etc/same.txt\"]: expected [sha256, size, sha1], got 2 values"),
    "not_in_files": (_bad([_SHA256, "551", _SHA1], path = "etc/other"), "contents: \"etc/other\" is not a regular file of the tree"),
    "a_directory": (_bad([_SHA256, "551", _SHA1], path = "etc/d"), "contents: \"etc/d\" is not a regular file of the tree"),
    "bad_path": (_bad([_SHA256, "551", _SHA1], path = "etc/../x"), "contents: install path \"etc/../x\": a '..' component is not allowed"),
    "sha256s_disagree": (
        dict(_bad([_SHA256, "551", _SHA1]), sha256s = {"etc/same.txt": "0" * 64}),
        "contents[\"etc/same.txt\"]: sha256 %s, but sha256s records %s" % (_SHA256, "0" * 64),
    ),
}

def _error_tests():
    tests = []
    for row, (attrs, message) in _BAD_CONTENTS.items():
        name = "broken_contents_" + row
        ota_system_image(name = name, tags = ["manual"], **attrs)
        analysis_failure_test(
            name = name + "_test",
            size = "small",
            message = "ota_system_image //tests/rules:%s: %s" % (name, message),
            target_under_test = ":" + name,
        )
        tests.append(name + "_test")
    return tests

def batching_tests(name):
    """Declares the generated trees, their packages and tests; `name` is a test_suite of the tests.

    Args:
      name: the test_suite's name.
    """
    tests = []
    for seed in _SEEDS:
        source, target, limit = _pair(seed)
        for kind in _KINDS:
            _tree("batch_%d_src_%s" % (seed, kind), kind, source)
            _tree("batch_%d_tgt_%s" % (seed, kind), kind, target)
            _build("batch_%d_src_%s_build" % (seed, kind), ":batch_%d_src_%s" % (seed, kind), ":src_boot", 1000)
            _build("batch_%d_tgt_%s_build" % (seed, kind), ":batch_%d_tgt_%s" % (seed, kind), ":tgt_boot", 2000)
        for source_kind in _KINDS:
            for target_kind in _KINDS:
                package = "batch_%d_%s_to_%s" % (seed, source_kind, target_kind)
                ota_package(
                    name = package,
                    source = ":batch_%d_src_%s_build" % (seed, source_kind),
                    target = ":batch_%d_tgt_%s_build" % (seed, target_kind),
                    batch_max_bytes = limit,
                    tags = ["manual"],
                )
                patched, batched, unchanged, whole = _expected(source, target, source_kind, target_kind, limit)
                package_actions_test(
                    name = package + "_test",
                    size = "small",
                    mnemonic_counts = {"OtaFilePatch": str(len(patched)), "OtaFilePatchShard": "32" if batched else "0"},
                    patched = patched,
                    batched = batched,
                    target_under_test = ":" + package,
                    type = "INCREMENTAL",
                    unchanged = unchanged,
                    whole = whole,
                )
                tests.append(package + "_test")
    tests += _error_tests()
    native.test_suite(name = name, tests = tests)
