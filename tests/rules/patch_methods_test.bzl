"""Unit tests of method_for (rules/private/patch_methods.bzl) on skylib's unittest.

Every test runs over the same generated paths: each directory below joined with each name, so
dots in directory names and at the start of a basename are covered in every position.
"""

load("@bazel_skylib//lib:unittest.bzl", "asserts", "unittest")

# buildifier: disable=bzl-visibility
load("//rules/private:patch_methods.bzl", "method_for")  # a unit test of a private helper

_DIRS = ["", "etc/", "lib.d/", "a/b.c/"]

# Name -> its extension as os.path.splitext gives it, which file_patch's `auto` uses
# (py/ota/actions/file_patch.py); a patch_methods extension key must select exactly these files.
_NAMES = {
    ".cache.gz": ".gz",
    ".profile": "",
    "README": "",
    "boot.img": ".img",
    "data.tar.gz": ".gz",
    "fonts.bin": ".bin",
    "trail.": ".",
}

# Every extension above, and keys that must select nothing: the directories' ".d" and ".c", an
# inner suffix (".tar") and a dot-file's whole name (".profile").
_KEYS = [".gz", ".img", ".bin", ".", ".d", ".c", ".tar", ".profile"]

def _cases():
    """(path, its extension) for every directory and name."""
    return [(d + name, ext) for d in _DIRS for name, ext in _NAMES.items()]

def _no_key_is_auto_test_impl(ctx):
    env = unittest.begin(ctx)
    for path, _ in _cases():
        asserts.equals(env, "auto", method_for({}, path), path)
    return unittest.end(env)

def _extension_key_test_impl(ctx):
    env = unittest.begin(ctx)
    for path, ext in _cases():
        for key in _KEYS:
            want = "bsdiff" if key in (ext, path) else "auto"  # the path ".profile" is its own key
            asserts.equals(env, want, method_for({key: "bsdiff"}, path), "%s with {%s: bsdiff}" % (path, key))
    return unittest.end(env)

def _exact_path_beats_extension_test_impl(ctx):
    env = unittest.begin(ctx)
    for path, ext in _cases():
        methods = {key: "bsdiff" for key in _KEYS}
        methods[path] = "imgdiff_zip"
        asserts.equals(env, "imgdiff_zip", method_for(methods, path), path)

        # The same name in another directory: the exact key is not its key, its extension's is.
        elsewhere = "elsewhere/" + path
        asserts.equals(env, "bsdiff" if ext else "auto", method_for(methods, elsewhere), elsewhere)
    return unittest.end(env)

_no_key_is_auto_test = unittest.make(_no_key_is_auto_test_impl)
_extension_key_test = unittest.make(_extension_key_test_impl)
_exact_path_beats_extension_test = unittest.make(_exact_path_beats_extension_test_impl)

def patch_methods_test_suite(name):
    """Declares the tests above and a test_suite `name` holding them.

    Args:
      name: the test_suite's name, and the prefix of the tests' names.
    """
    unittest.suite(
        name,
        _no_key_is_auto_test,
        _extension_key_test,
        _exact_path_beats_extension_test,
    )
