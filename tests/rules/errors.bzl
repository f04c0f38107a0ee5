"""Analysis-failure tests: one deliberately broken target (tagged manual) per bad attribute, and
a test that its analysis fails with the expected message (skylib's analysistest, expect_failure)."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:defs.bzl", "ota_boot_image", "ota_build", "ota_package", "ota_ramdisk", "ota_system_image")

def _analysis_failure_test_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.expect_failure(env, ctx.attr.message)
    return analysistest.end(env)

analysis_failure_test = analysistest.make(
    _analysis_failure_test_impl,
    expect_failure = True,
    attrs = {"message": attr.string(mandatory = True, doc = "A substring of the expected error.")},
)

# name -> (expected error substring, rule, attributes of the broken target)
_BROKEN = {
    "conflict": ("install path \"etc/x\" has two sources: tests/rules/testdata/new.txt (from files: //tests/rules:testdata/new.txt) and tests/rules/testdata/same.txt (from files: //tests/rules:testdata/same.txt)", "ota_system_image", {"files": {"testdata/new.txt": "etc/x", "testdata/same.txt": "/etc/x"}}),
    "symlink_conflict": ("install path \"bin/sh\" has two sources", "ota_system_image", {"files": {"testdata/new.txt": "bin/sh"}, "symlinks": {"bin/sh": "toybox"}}),
    "below_file": ("\"etc/x/y\" (dirs entry \"etc/x/y\") is below \"etc/x\", which is a file", "ota_system_image", {"dirs": ["etc/x/y"], "files": {"testdata/new.txt": "etc/x"}}),
    "dotdot": ("files[//tests/rules:testdata/new.txt]: install path \"etc/../x\": a '..' component is not allowed", "ota_system_image", {"files": {"testdata/new.txt": "etc/../x"}}),
    "dot": ("symlinks: install path \"./x\": a '.' component is not allowed", "ota_system_image", {"symlinks": {"./x": "y"}}),
    "empty_component": ("dirs: install path \"a//b\": an empty component ('//') is not allowed", "ota_system_image", {"dirs": ["a//b"]}),
    "nul": ("files[//tests/rules:testdata/new.txt]: install path \"etc/a\\000b\": a NUL byte is not allowed in a file name", "ota_system_image", {"files": {"testdata/new.txt": "etc/a\000b"}}),
    "nul_target": ("symlinks: \"x\": a NUL byte is not allowed in a link target", "ota_system_image", {"symlinks": {"x": "a\000b"}}),
    "reserved_scratch": ("install path \"/.ota-scratch/x\": '.ota-scratch' at the top of the tree is reserved for the updater's scratch files", "ota_system_image", {"files": {"testdata/new.txt": "/.ota-scratch/x"}}),
    "reserved_scratch_dir": ("install path \".ota-scratch\": '.ota-scratch' at the top of the tree is reserved", "ota_system_image", {"dirs": [".ota-scratch"]}),
    "unmatched_mode": ("modes: key \"etc/nope\" matches no entry of the tree", "ota_system_image", {"files": {"testdata/new.txt": "etc/x"}, "modes": {"etc/nope": "0600"}}),
    "bad_mode": ("modes[\"etc/x\"]: '0998' is not an octal mode", "ota_system_image", {"files": {"testdata/new.txt": "etc/x"}, "modes": {"etc/x": "0998"}}),
    "bad_owner": ("owners[\"etc/x\"]: 'root:0' is not \"uid:gid\"", "ota_ramdisk", {"files": {"testdata/new.txt": "etc/x"}, "owners": {"etc/x": "root:0"}}),
    "header_version": ("header_version = 5: supported versions are 0 to 4", "ota_boot_image", {"header_version": 5, "kernel": "testdata/kernel.txt"}),
    "dtb_v0": ("dtb needs header_version 2, not 0", "ota_boot_image", {"dtb": "testdata/odm.img", "kernel": "testdata/kernel.txt"}),
    "src_and_kernel": ("src (a prebuilt image) excludes kernel", "ota_boot_image", {"kernel": "testdata/kernel.txt", "src": "testdata/odm.img"}),
    "no_kernel": ("set either src (a prebuilt image) or kernel", "ota_boot_image", {}),
    "v3_page_size": ("page_size = 2048: header v3 always uses 4096", "ota_boot_image", {"header_version": 3, "kernel": "testdata/kernel.txt", "page_size": 2048}),
    "v3_base": ("base: not stored in a v3 header", "ota_boot_image", {"base": "0x80000000", "header_version": 3, "kernel": "testdata/kernel.txt"}),
    "bad_base": ("base = '80000000': expected a 32-bit hex number", "ota_boot_image", {"base": "80000000", "kernel": "testdata/kernel.txt"}),
    "threshold": ("patch_threshold = '1.5': expected a decimal number in (0, 1]", "ota_package", {"patch_threshold": "1.5", "target": ":tgt_build"}),
    "max_diff_size": ("max_diff_size = -2: expected a size in bytes (0 or more), or -1 for the tool's default", "ota_package", {"max_diff_size": -2, "target": ":tgt_build"}),
    "method": ("patch_methods[.gz] = 'xdelta': expected one of", "ota_package", {"patch_methods": {".gz": "xdelta"}, "target": ":tgt_build"}),
    "older_target": ("target timestamp 1000 is older than source timestamp 2000; set downgrade = True", "ota_package", {"source": ":tgt_build", "target": ":src_build"}),
    "full_downgrade": ("downgrade applies to incremental packages only", "ota_package", {"downgrade": True, "target": ":tgt_build"}),
    "prod_key": ("signing_key tests/rules/testdata/release_key.pem: only a test key (a file named TEST_ONLY_*) may sign in a Bazel action, whose inputs a remote cache or executor receives. Build the package unsigned and sign it on the signing host with `bazel run //tools:ota_sign -- --key KEY --in UNSIGNED.zip --out SIGNED.zip` (docs/security.md)", "ota_package", {"signing_key": "testdata/release_key.pem", "target": ":tgt_build"}),
    "tar_and_files": ("ota_system_image //tests/rules:broken_tar_and_files: tar and files exclude each other (the archive is the whole tree)", "ota_system_image", {"files": {"testdata/new.txt": "etc/x"}, "tar": "testdata/data.gz"}),
    "tar_limits": ("ota_ramdisk //tests/rules:broken_tar_limits: tar_max_entries must be positive and tar_max_size_mb not negative", "ota_ramdisk", {"tar": "testdata/data.gz", "tar_max_entries": 0}),
    "boot_partition": ("partitions: 'boot' is not allowed", "ota_build", {"boot": ":tgt_boot", "device": "d", "fingerprint": "f", "partitions": {"testdata/odm.img": "boot"}, "system": ":tgt_system", "timestamp": 1}),
}

_RULES = {
    "ota_boot_image": ota_boot_image,
    "ota_build": ota_build,
    "ota_package": ota_package,
    "ota_ramdisk": ota_ramdisk,
    "ota_system_image": ota_system_image,
}

def error_tests(name):
    """Declares broken_<row> (manual) and error_<row>_test for every row of _BROKEN.

    Args:
      name: name of a test_suite holding all of them.
    """
    tests = []
    for row, (message, kind, attrs) in _BROKEN.items():
        _RULES[kind](
            name = "broken_" + row,
            tags = ["manual"],
            **attrs
        )
        analysis_failure_test(
            name = "error_%s_test" % row,
            size = "small",
            message = message,
            target_under_test = ":broken_" + row,
        )
        tests.append(":error_%s_test" % row)
    native.test_suite(
        name = name,
        tests = tests,
    )
