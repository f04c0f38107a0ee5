"""ota_test: apply an OTA package to a device made from the source build; expect the target build.

    ota_test(
        name = "incremental_ota_test",
        source = ":v1",              # ota_build
        target = ":v2",              # ota_build
        package = ":incremental_ota",  # ota_package (or any single .zip)
        interrupt = True,            # also cut power at I/O points and check every rerun
        power_cut = "lossy",         # each cut also loses what was not fsync'ed (default "process")
        trusted_keys = ["//release/keys:TEST_ONLY_ota_ed25519.pub.pem"],  # signature required
    )

The test (//py:ota's ota.testing.ota_test_main) materializes a device in the test's temp dir from
the source build (system tree with modes, owners and symlinks; each partition an image file or a
NAND simulator; a cache), runs ota_apply, and compares every file's bytes, mode, uid/gid, every
symlink, every directory and every partition with the target build; a rerun must change nothing.
With `interrupt`, it cuts the apply at crash points of the clean run (before each I/O operation
and half way through each tearable one), reruns, and checks the same end state, printing
`interruptions: N, recovered: N`. With `power_cut = "lossy"` each cut is a real power cut: every
write since the last fsync of its file and every directory change since the last fsync of its
directory is lost (worst case; docs/applypatch.md, "Power-loss model"); the default "process"
cut only stops the process. A sweep costs one whole apply per point, so `max_interruptions`
spreads at most that many points evenly over the run (0: every point). With `trusted_keys` the
device trusts those public keys and requires a signature, as a production device does; without,
it is a development device that does not check signatures.
"""

load("@rules_python//python:py_test.bzl", "py_test")
load("//tools:python_main.bzl", "python_main")
load(":providers.bzl", "OtaBuildInfo", "OtaPackageInfo")

def _build_doc(build):
    info = build[OtaBuildInfo]
    tree = info.system.tree
    return {
        "build_json": info.build_json.short_path,
        "files": {path: f.short_path for path, f in tree.files.items()},
        # A tar-backed tree's file entries name exec paths inside these directories.
        "file_dirs": {d.path: d.short_path for d in (getattr(tree, "tar_shards", None) or [])},
        "partitions": {name: f.short_path for name, f in info.partitions.items()},
        "tree_json": tree.tree_json.short_path,
    }

def _build_files(build):
    info = build[OtaBuildInfo]
    tree = info.system.tree
    return [info.build_json, tree.tree_json] + info.partitions.values()

def _ota_test_spec_impl(ctx):
    if OtaPackageInfo in ctx.attr.package:
        package = ctx.attr.package[OtaPackageInfo].package
    else:
        files = ctx.attr.package.files.to_list()
        if len(files) != 1:
            fail("ota_test %s: package %s gives %d files, expected one zip" % (ctx.label, ctx.attr.package.label, len(files)))
        package = files[0]
    for name in ctx.attr.mtd_partitions:
        if name not in ctx.attr.target[OtaBuildInfo].partitions:
            fail("ota_test %s: mtd_partitions: %s is not a partition of the target build" % (ctx.label, name))
    spec = ctx.actions.declare_file(ctx.label.name + ".json")
    ctx.actions.write(spec, json.encode({
        "cache_limit": ctx.attr.cache_limit,
        "interrupt": ctx.attr.interrupt,
        "max_interruptions": ctx.attr.max_interruptions,
        "mtd": sorted(ctx.attr.mtd_partitions),
        "package": package.short_path,
        "power_cut": ctx.attr.power_cut,
        "source": _build_doc(ctx.attr.source),
        "target": _build_doc(ctx.attr.target),
        "trusted_keys": [f.short_path for f in ctx.files.trusted_keys],
    }) + "\n")
    trees = [b[OtaBuildInfo].system.tree.files_depset for b in (ctx.attr.source, ctx.attr.target)]
    runfiles = ctx.runfiles(
        files = [spec, package] + ctx.files.trusted_keys + _build_files(ctx.attr.source) +
                _build_files(ctx.attr.target),
        transitive_files = depset(transitive = trees),
    )
    return [DefaultInfo(files = depset([spec]), runfiles = runfiles)]

_ota_test_spec = rule(
    implementation = _ota_test_spec_impl,
    doc = "Writes the ota_test description JSON and carries every file it names as runfiles.",
    attrs = {
        "cache_limit": attr.int(default = 0),
        "interrupt": attr.bool(default = False),
        "max_interruptions": attr.int(default = 0),
        "mtd_partitions": attr.string_list(),
        "package": attr.label(mandatory = True, allow_files = [".zip"]),
        "power_cut": attr.string(default = "process", values = ["process", "lossy"]),
        "source": attr.label(mandatory = True, providers = [OtaBuildInfo]),
        "target": attr.label(mandatory = True, providers = [OtaBuildInfo]),
        "trusted_keys": attr.label_list(allow_files = [".pem"]),
    },
)

def ota_test(
        name,
        source,
        target,
        package,
        interrupt = False,
        max_interruptions = 0,
        power_cut = "process",
        mtd_partitions = [],
        cache_limit = 0,
        trusted_keys = [],
        size = "large",
        **kwargs):
    """Declares a py_test that applies `package` to a `source` device and expects `target`.

    Args:
      name: test name.
      source: the ota_build the device starts from.
      target: the ota_build the device must end as.
      package: the ota_package (or a single .zip) to apply.
      interrupt: also cut power during the apply and check that every rerun recovers.
      max_interruptions: with `interrupt`, at most this many crash points, spread evenly over the
        run; 0 means every crash point (one whole apply each: fine for small builds only).
      power_cut: with `interrupt`, "process" (the process stops; what it wrote stays) or "lossy"
        (a real power cut: every change not yet fsync'ed is lost).
      mtd_partitions: partition names to back with the NAND simulator instead of an image file.
      cache_limit: byte budget of the device's cache directory; 0 means the filesystem's space.
      trusted_keys: public key PEMs the device trusts; it then requires a signature by one of
        them. Empty: a development device that does not check signatures.
      size: the test size; a sweep is many applies.
      **kwargs: passed to py_test (tags, timeout, shard_count...). The test is always tagged
        "no-sandbox": it chowns device files to several owners, which needs a real root.
    """
    spec = name + "_spec"
    _ota_test_spec(
        name = spec,
        source = source,
        target = target,
        package = package,
        interrupt = interrupt,
        max_interruptions = max_interruptions,
        power_cut = power_cut,
        mtd_partitions = mtd_partitions,
        cache_limit = cache_limit,
        trusted_keys = trusted_keys,
        testonly = True,
        visibility = ["//visibility:private"],
    )
    main = "_%s_main.py" % name
    python_main(
        name = "_%s_main" % name,
        out = main,
        module = "ota.testing.ota_test_main",
        testonly = True,
        visibility = ["//visibility:private"],
    )

    # Unsandboxed: the device holds files of several owners, and Bazel's linux-sandbox maps only
    # one uid/gid into its user namespace (chown to any other id fails there).
    tags = kwargs.pop("tags", [])
    py_test(
        name = name,
        tags = tags + ([] if "no-sandbox" in tags else ["no-sandbox"]),
        srcs = [main],
        main = main,
        deps = [Label("//py:ota")],
        data = [":" + spec],
        args = ["--spec=$(rootpath :%s)" % spec],
        size = size,
        **kwargs
    )
